import Domain
import Foundation
import Kubernetes
import Persistence
import Scheduler
import Testing

/// Fixed times and ids, so every case is a plain value.
private let now = Date(timeIntervalSince1970: 1_800_000_000)

private func ago(_ seconds: Double) -> Date { now.addingTimeInterval(-seconds) }

private func id(_ n: Int) -> JobID {
    JobID(uuid: UUID(uuidString: "00000000-0000-0000-0000-\(String(format: "%012d", n))")!)
}

private let env = ReconcileEnvironment(id: "env", maxJobs: 0, lastSeen: now)

private func queued(_ n: Int, created: Double = 0, admitted: Bool = false, maxQueueWait: Duration? = nil)
    -> ReconcileJob
{
    ReconcileJob(id: id(n), environment: "env", createdAt: ago(created), maxQueueWait: maxQueueWait, admitted: admitted)
}

/// A job a worker claimed (attempt `attempt`, status 40) with a lease ending `leaseEnds` seconds from now; its first
/// attempt started `started` seconds ago, the current one `attemptStarted` seconds ago (default: the same).
private func running(
    _ n: Int, attempt: Int = 1, worker: String? = "w1", leaseEnds: Double = 30, started: Double = 10,
    attemptStarted: Double? = nil, stop: Int = 0, maxDuration: Duration? = nil, lapses: Int = 0
) -> ReconcileJob {
    ReconcileJob(
        id: id(n), environment: "env", status: .runningAlgorithm, attempt: attempt, workerID: worker,
        leaseUntil: now.addingTimeInterval(leaseEnds), createdAt: ago(started + 5), startedAt: ago(started),
        attemptStartedAt: ago(attemptStarted ?? started), stopRequest: stop, maxDuration: maxDuration,
        lapses: lapses)
}

private func finished(_ n: Int, finished: Double, removed: Bool = false) -> ReconcileJob {
    ReconcileJob(
        id: id(n), environment: "env", status: .finished, attempt: 1, createdAt: ago(finished + 100),
        startedAt: ago(finished + 50), finishedAt: ago(finished), removed: removed)
}

private func key(_ n: Int, attempt: Int = 1) -> AttemptKey { AttemptKey(jobID: id(n), attempt: attempt) }

private func exited(_ code: Int, _ reason: String? = nil, message: String? = nil) -> ContainerObservation {
    .terminated(
        ContainerTermination(
            exitCode: code, reason: reason ?? (code == 0 ? "Completed" : "Error"), message: message,
            startedAt: ago(20), finishedAt: ago(15)))
}

private let runningPod = PodObservation(presence: .present, phase: "Running")
private let succeededPod = PodObservation(presence: .present, phase: "Succeeded")
private let failedPod = PodObservation(presence: .present, phase: "Failed")

/// An attempt as the informer folds it: by default its algorithm runs, configure done, publish waiting.
private func attempt(
    _ n: Int, attempt: Int = 1, age: Double = 600, root: PodObservation.Presence = .present,
    configure: ContainerObservation = exited(0), algorithm: ContainerObservation = .running(startedAt: ago(5)),
    publish: ContainerObservation = .waiting(reason: "PodInitializing", message: nil, since: nil),
    ioPod: PodObservation = runningPod, algorithmPod: PodObservation = runningPod
) -> ObservedAttempt {
    ObservedAttempt(
        key: key(n, attempt: attempt),
        observation: AttemptObservation(
            root: root, ioPod: ioPod, algorithmPod: algorithmPod, configure: configure, algorithm: algorithm,
            publish: publish, algorithmImage: "python", algorithmMemoryLimit: "1Gi", stepImage: "c2d"),
        createdAt: ago(age), ioPodName: "c2d-io")
}

/// An attempt that ended: the algorithm as given, publish done.
private func ended(
    _ n: Int, algorithm: ContainerObservation, publish: ContainerObservation = exited(0)
) -> ObservedAttempt {
    attempt(
        n, algorithm: algorithm, publish: publish, ioPod: succeededPod,
        algorithmPod: algorithm.termination?.exitCode == 0 ? succeededPod : failedPod)
}

private func verdict(
    _ status: JobStatus, _ outcome: JobOutcome, _ reason: String? = nil, exitCode: Int? = nil, oom: Bool = false,
    stop: Int? = nil, logsOnly: Bool = false
) -> Finalization {
    Finalization(
        AttemptOutcome.Verdict(
            status: status, outcome: outcome, failureReason: reason, exitCode: exitCode, oomKilled: oom,
            stopRequest: stop, logsOnly: logsOnly))
}

/// One table row: a snapshot (and planner state), and the actions expected of the kinds the row is about.
struct PlannerCase: Sendable, CustomTestStringConvertible {
    var name: String
    var jobs: [ReconcileJob] = []
    var cluster: ClusterSnapshot = .available([])
    var environments: [ReconcileEnvironment] = [env]
    var state = ReconcilePlanner.State()
    /// Only actions of these kinds are compared (nil: all).
    var kinds: Set<ReconcileAction.Kind>?
    var expected: [ReconcileAction]
    var failSafe: Bool = false

    var testDescription: String { name }

    var plan: ReconcilePlan {
        ReconcilePlanner.plan(
            ReconcileSnapshot(now: now, jobs: jobs, cluster: cluster, environments: environments), state: state)
    }
}

let plannerCases: [PlannerCase] = [
    // Duty 2 (republishing) is the dispatcher's: the planner leaves waiting and handed-back jobs alone.
    PlannerCase(name: "2 waiting long: left to the dispatcher", jobs: [queued(1, created: 900)], expected: []),
    PlannerCase(
        name: "2 handed back: left to the dispatcher", jobs: [running(1, worker: nil, leaseEnds: -100)],
        cluster: .notConfigured, expected: []),
    // Duty 3: hand over after the lease grace (10 s); fail as poison once workers were lost 5 times.
    PlannerCase(
        name: "3 lease expired 9 s: wait", jobs: [running(1, leaseEnds: -9)], cluster: .notConfigured, expected: []),
    PlannerCase(
        name: "3 lease expired 10 s: hand over", jobs: [running(1, leaseEnds: -10)], cluster: .notConfigured,
        expected: [.handOver(jobID: id(1), environment: "env", attempt: 1, workerID: "w1")]),
    PlannerCase(
        name: "3 fourth lost worker: hand over", jobs: [running(1, attempt: 4, leaseEnds: -10, lapses: 3)],
        cluster: .notConfigured, expected: [.handOver(jobID: id(1), environment: "env", attempt: 4, workerID: "w1")]),
    PlannerCase(
        name: "3 fifth lost worker: poison", jobs: [running(1, attempt: 5, leaseEnds: -10, lapses: 4)],
        cluster: .notConfigured, expected: [.failPoison(jobID: id(1), attempt: 5, lapses: 5)]),
    // Duty 4: orphans older than the orphan grace (60 s).
    PlannerCase(
        name: "4 unknown job's attempt 59 s old: wait", cluster: .available([attempt(9, age: 59)]), expected: []),
    PlannerCase(
        name: "4 unknown job's attempt 60 s old: delete", cluster: .available([attempt(9, age: 60)]),
        expected: [.deleteOrphan(key(9), reason: .unknownJob)]),
    PlannerCase(
        name: "4 finished job's attempt: delete", jobs: [finished(1, finished: 30)],
        cluster: .available([attempt(1)]), expected: [.deleteOrphan(key(1), reason: .jobTerminal)]),
    PlannerCase(
        name: "4 superseded attempt deleted, current kept", jobs: [running(1, attempt: 2)],
        cluster: .available([attempt(1, attempt: 1), attempt(1, attempt: 2)]),
        expected: [.deleteOrphan(key(1, attempt: 1), reason: .attemptSuperseded)]),
    PlannerCase(
        name: "4 an attempt being deleted is left alone",
        cluster: .available([
            attempt(
                9, root: .gone, ioPod: PodObservation(presence: .present, phase: "Running", deleting: true),
                algorithmPod: PodObservation(presence: .gone))
        ]), expected: []),
    // Duty 5: objects gone past the missing grace (120 s), counted from the first pass that saw them gone.
    PlannerCase(
        name: "5 first seen missing: only remembered", jobs: [running(1)], kinds: [.retryLost, .failLost],
        expected: []),
    PlannerCase(
        name: "5 missing 119 s: wait", jobs: [running(1)],
        state: .init(firstSeenMissing: [.init(jobID: id(1), attempt: 1): ago(119)]), kinds: [.retryLost, .failLost],
        expected: []),
    PlannerCase(
        name: "5 missing 120 s: retry", jobs: [running(1)],
        state: .init(firstSeenMissing: [.init(jobID: id(1), attempt: 1): ago(120)]),
        expected: [.retryLost(jobID: id(1), environment: "env", attempt: 1)]),
    PlannerCase(
        name: "5 missing on the last attempt: fail lost", jobs: [running(1, attempt: 3)],
        state: .init(firstSeenMissing: [.init(jobID: id(1), attempt: 3): ago(500)]),
        expected: [.failLost(jobID: id(1), attempt: 3)]),
    PlannerCase(
        name: "5 no cluster: nothing is missing", jobs: [running(1)], cluster: .notConfigured,
        state: .init(firstSeenMissing: [.init(jobID: id(1), attempt: 1): ago(500)]), expected: []),
    // Duty 6: finalize from the cluster, read as the worker reads it, once no worker holds the job.
    PlannerCase(
        name: "6 algorithm exit 3 is 70, failed, code 3 (as the worker records it)",
        jobs: [running(1, leaseEnds: -10)], cluster: .available([ended(1, algorithm: exited(3))]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: verdict(.finished, .failed, "algorithm exited with code 3", exitCode: 3),
                observed: ended(1, algorithm: exited(3)))
        ]),
    PlannerCase(
        name: "6 OOM killed", jobs: [running(1, worker: nil, leaseEnds: -100)],
        cluster: .available([ended(1, algorithm: exited(137, "OOMKilled"))]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: verdict(
                    .finished, .failed, "the algorithm ran out of memory (limit 1Gi)", exitCode: 137, oom: true),
                observed: ended(1, algorithm: exited(137, "OOMKilled")))
        ]),
    PlannerCase(
        name: "6 publish succeeded", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([ended(1, algorithm: exited(0))]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1, result: verdict(.finished, .succeeded, exitCode: 0),
                observed: ended(1, algorithm: exited(0)))
        ]),
    PlannerCase(
        name: "6 configure exit 32 is 32 with its message", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([
            attempt(
                1, configure: exited(32, message: "algorithm: 404"), algorithm: .pending, publish: .pending,
                ioPod: failedPod, algorithmPod: failedPod)
        ]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: verdict(.algorithmProvisioningFailed, .failed, "algorithm: 404", exitCode: 32),
                observed: attempt(
                    1, configure: exited(32, message: "algorithm: 404"), algorithm: .pending, publish: .pending,
                    ioPod: failedPod, algorithmPod: failedPod))
        ]),
    PlannerCase(
        name: "6 live worker finalizes itself", jobs: [running(1, leaseEnds: -9)],
        cluster: .available([ended(1, algorithm: exited(3))]), expected: []),
    PlannerCase(
        name: "6 still running: nothing", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([attempt(1)]), kinds: [.finalizeFromCluster, .intervene], expected: []),
    PlannerCase(
        name: "6 decided but publishing: wait for the logs", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([attempt(1, algorithm: exited(0), publish: .running(startedAt: ago(1)))]),
        kinds: [.finalizeFromCluster, .intervene], expected: []),
    PlannerCase(
        name: "6 an image that never pulls: stop the attempt", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([
            attempt(1, algorithm: .waiting(reason: "ImagePullBackOff", message: nil, since: ago(301)))
        ]),
        expected: [.intervene(key(1), .deleteAttempt)]),
    // Duty 7: time out after the limit (60 s) plus the timeout grace (30 s).
    PlannerCase(
        name: "7 ran 89 s of 60 + 30: wait", jobs: [running(1, started: 89, maxDuration: .seconds(60))],
        cluster: .available([attempt(1, algorithm: .running(startedAt: ago(50)))]), expected: []),
    PlannerCase(
        name: "7 ran 90 s of 60 + 30: time out", jobs: [running(1, started: 90, maxDuration: .seconds(60))],
        cluster: .available([attempt(1, algorithm: .running(startedAt: ago(50)))]),
        expected: [.timeOut(jobID: id(1), attempt: 1, deleteObjects: true)]),
    PlannerCase(
        name: "7 a retried attempt's limit counts from its own start",
        jobs: [running(1, attempt: 2, started: 900, attemptStarted: 89, maxDuration: .seconds(60))],
        cluster: .available([attempt(1, attempt: 2, algorithm: .running(startedAt: ago(50)))]), expected: []),
    // Duty 8: stop requested.
    PlannerCase(
        name: "8 stop, worker gone: the attempt is deleted first", jobs: [running(1, leaseEnds: -10, stop: 1)],
        cluster: .available([attempt(1)]), expected: [.intervene(key(1), .deleteAttempt)]),
    PlannerCase(
        name: "8 stop, worker gone, pods gone: finalize as stopped with the logs",
        jobs: [running(1, leaseEnds: -10, stop: 1)],
        cluster: .available([
            attempt(
                1, root: .gone, publish: exited(0), ioPod: PodObservation(presence: .gone),
                algorithmPod: PodObservation(presence: .gone))
        ]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: verdict(.finished, .stopped, "the job was stopped on request", stop: 1, logsOnly: true),
                observed: attempt(
                    1, root: .gone, publish: exited(0), ioPod: PodObservation(presence: .gone),
                    algorithmPod: PodObservation(presence: .gone)))
        ]),
    PlannerCase(
        name: "8 stop, worker gone, no objects: finalize", jobs: [running(1, leaseEnds: -10, stop: 1)],
        expected: [.finalizeStop(jobID: id(1), attempt: 1, deleteObjects: false)]),
    PlannerCase(
        name: "8 stop, live worker stops it", jobs: [running(1, stop: 1)], cluster: .available([attempt(1)]),
        expected: []),
    // Duty 9: expire in queue after the environment's wait (300 s).
    PlannerCase(
        name: "9 waited 299 s: stays", jobs: [queued(1, created: 299)],
        environments: [ReconcileEnvironment(id: "env", maxJobs: 0, maxQueueWait: .seconds(300), lastSeen: now)],
        expected: []),
    PlannerCase(
        name: "9 waited 300 s: expired", jobs: [queued(1, created: 300)],
        environments: [ReconcileEnvironment(id: "env", maxJobs: 0, maxQueueWait: .seconds(300), lastSeen: now)],
        expected: [.expireInQueue(jobID: id(1))]),
    PlannerCase(
        name: "9 the job's own wait (ocean-node's queueMaxWaitTime) ends first: expired",
        jobs: [queued(1, created: 60, maxQueueWait: .seconds(60)), queued(2, created: 59, maxQueueWait: .seconds(60))],
        environments: [ReconcileEnvironment(id: "env", maxJobs: 0, maxQueueWait: .seconds(300), lastSeen: now)],
        expected: [.expireInQueue(jobID: id(1))]),
    PlannerCase(
        name: "9 the environment's wait ends before the job's own: expired",
        jobs: [queued(1, created: 300, maxQueueWait: .seconds(900))],
        environments: [ReconcileEnvironment(id: "env", maxJobs: 0, maxQueueWait: .seconds(300), lastSeen: now)],
        expected: [.expireInQueue(jobID: id(1))]),
    PlannerCase(
        name: "9 the job's own wait without an environment's",
        jobs: [queued(1, created: 30, maxQueueWait: .seconds(30))],
        expected: [.expireInQueue(jobID: id(1))]),
    PlannerCase(
        name: "9 claimed jobs never expire in queue", jobs: [running(1, started: 900)], cluster: .notConfigured,
        environments: [ReconcileEnvironment(id: "env", maxJobs: 0, maxQueueWait: .seconds(300), lastSeen: now)],
        expected: []),
    // Duty 10 is reported, not acted on: admission is the dispatcher's.
    PlannerCase(
        name: "10 waiting jobs: no action",
        jobs: [running(1), queued(2, created: 100), queued(3, created: 200), queued(4, created: 150)],
        cluster: .notConfigured, environments: [ReconcileEnvironment(id: "env", maxJobs: 2, lastSeen: now)],
        expected: []),
    // Duty 11: results removed once the storage expiry (3600 s) has passed.
    PlannerCase(
        name: "11 finished 3599 s ago: kept", jobs: [finished(1, finished: 3599)],
        environments: [ReconcileEnvironment(id: "env", maxJobs: 0, storageExpiry: .seconds(3600), lastSeen: now)],
        expected: []),
    PlannerCase(
        name: "11 finished 3600 s ago: removed", jobs: [finished(1, finished: 3600)],
        environments: [ReconcileEnvironment(id: "env", maxJobs: 0, storageExpiry: .seconds(3600), lastSeen: now)],
        expected: [.removeResults(jobID: id(1))]),
    PlannerCase(
        name: "11 already removed, or no expiry",
        jobs: [finished(1, finished: 9000, removed: true), finished(2, finished: 9000)], expected: []),
    // Duty 12: environments not seen for 600 s are hidden, and shown again when seen.
    PlannerCase(
        name: "12 stale and fresh environments",
        environments: [
            ReconcileEnvironment(id: "a", maxJobs: 1, lastSeen: ago(599)),
            ReconcileEnvironment(id: "b", maxJobs: 1, lastSeen: ago(600)),
            ReconcileEnvironment(id: "c", maxJobs: 1, lastSeen: ago(1), hidden: true),
            ReconcileEnvironment(id: "d", maxJobs: 1, lastSeen: ago(900), hidden: true),
        ],
        expected: [.hideEnvironment(id: "b"), .showEnvironment(id: "c")]),
]

@Suite("Reconcile planner")
struct ReconcilePlannerTests {
    @Test(arguments: plannerCases)
    func duty(_ row: PlannerCase) {
        let plan = row.plan
        let actions = row.kinds.map { kinds in plan.actions.filter { kinds.contains($0.kind) } } ?? plan.actions
        #expect(actions == row.expected)
        #expect((plan.failSafe != nil) == row.failSafe)
    }

    @Test func missingTimeIsCarriedAndDropped() {
        let first = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: now, jobs: [running(1), running(2)], cluster: .available([attempt(2)]), environments: [env]))
        #expect(first.nextState.firstSeenMissing == [.init(jobID: id(1), attempt: 1): now])
        // Remembered from the first pass, not reset by the second.
        let later = now.addingTimeInterval(30)
        let second = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: later, jobs: [running(1), running(2)], cluster: .available([attempt(2)]), environments: [env]),
            state: first.nextState)
        #expect(second.nextState.firstSeenMissing == [.init(jobID: id(1), attempt: 1): now])
        // Objects back: forgotten.
        let third = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: later, jobs: [running(1)], cluster: .available([attempt(1)]), environments: [env]),
            state: second.nextState)
        #expect(third.nextState.firstSeenMissing.isEmpty)
    }

    @Test func capacityReportsRunningAdmittedAndWaitingInQueueOrder() {
        let plan = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: now,
                jobs: [
                    running(1), queued(2, created: 100), queued(3, created: 200, admitted: true),
                    queued(4, created: 150), queued(5, created: 300),
                ],
                cluster: .notConfigured, environments: [ReconcileEnvironment(id: "env", maxJobs: 2, lastSeen: now)]))
        #expect(
            plan.capacity["env"]
                == EnvironmentCapacity(
                    environment: "env", maxJobs: 2, running: 1, admitted: [id(3)], waiting: [id(5), id(4), id(2)]))
        // A job finished by the same pass no longer counts.
        let freed = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: now, jobs: [running(1, leaseEnds: -10, stop: 1), queued(2, created: 10)],
                cluster: .notConfigured, environments: [ReconcileEnvironment(id: "env", maxJobs: 1, lastSeen: now)]))
        #expect(freed.capacity["env"]?.running == 0)
        #expect(freed.capacity["env"]?.waiting == [id(2)])
        // No limit: reported as none.
        let unlimited = ReconcilePlanner.plan(
            ReconcileSnapshot(now: now, jobs: [queued(2)], cluster: .notConfigured, environments: [env]))
        #expect(unlimited.capacity["env"]?.maxJobs == nil)
    }

    @Test func failSafeWhenClusterUnavailable() {
        let plan = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: now,
                jobs: [running(1), running(2, leaseEnds: -10, stop: 1), queued(3, created: 400)],
                cluster: .unavailable(reason: "connection refused"),
                environments: [ReconcileEnvironment(id: "env", maxJobs: 0, maxQueueWait: .seconds(300), lastSeen: now)]
            ),
            state: .init(firstSeenMissing: [.init(jobID: id(1), attempt: 1): ago(900)]))
        #expect(plan.failSafe == .clusterUnavailable("connection refused"))
        #expect(!plan.actions.contains { $0.kind.isDestructive })
        // Postgres-only duties go on.
        #expect(plan.counts == [.finalizeStop: 1, .expireInQueue: 1])
        // The missing clock restarts once the cluster is back.
        #expect(plan.nextState.firstSeenMissing.isEmpty)
    }

    @Test(arguments: [(1, true), (2, false)])
    func failSafeWhenClusterNearlyEmpty(present: Int, tripped: Bool) {
        // Ten launched jobs, `present` of them with objects, one orphan, all missing long enough to be lost.
        let jobs = (1...10).map { running($0) }
        let objects = (1...present).map { attempt($0) } + [attempt(99)]
        let state = ReconcilePlanner.State(
            firstSeenMissing: Dictionary(
                uniqueKeysWithValues: (1...10).map { (.init(jobID: id($0), attempt: 1), ago(900)) }))
        let snapshot = ReconcileSnapshot(
            now: now, jobs: jobs, cluster: .available(ObservedAttempts(objects)), environments: [env])
        let plan = ReconcilePlanner.plan(snapshot, state: state)
        if tripped {
            #expect(plan.failSafe == .clusterNearlyEmpty(expected: 10, present: 1))
            #expect(plan.counts.isEmpty)
        } else {
            #expect(plan.failSafe == nil)
            #expect(plan.counts == [.retryLost: 10 - present, .deleteOrphan: 1])
        }
    }

    @Test func fewLaunchedJobsNeverTripTheFailSafe() {
        let jobs = (1...9).map { running($0) }
        let state = ReconcilePlanner.State(
            firstSeenMissing: Dictionary(
                uniqueKeysWithValues: (1...9).map { (.init(jobID: id($0), attempt: 1), ago(900)) }))
        let plan = ReconcilePlanner.plan(
            ReconcileSnapshot(now: now, jobs: jobs, cluster: .available([]), environments: [env]), state: state)
        #expect(plan.failSafe == nil)
        #expect(plan.count(.retryLost) == 9)
    }

    @Test func objectNamesAreDeterministic() {
        #expect(ClusterNaming.attemptName(jobID: id(7), attempt: 2) == "c2d-00000000000000000000000000000007-2")
        #expect(
            ClusterNaming.algorithmPodName(jobID: id(7), attempt: 2)
                == "c2d-00000000000000000000000000000007-2-algorithm")
        #expect(
            ClusterNaming.dataClaimName(jobID: id(7), attempt: 2)
                == "c2d-00000000000000000000000000000007-2-algorithm-data")
    }

    @Test func aStopThatNeverSettlesIsRecordedAfterTheSettleTimeout() {
        let stuck = attempt(1)
        let snapshot = ReconcileSnapshot(
            now: now, jobs: [running(1, leaseEnds: -10, stop: 1)], cluster: .available([stuck]), environments: [env])
        let first = ReconcilePlanner.plan(snapshot)
        #expect(first.actions == [.intervene(key(1), .deleteAttempt)])
        #expect(first.nextState.firstDecided == [.init(jobID: id(1), attempt: 1): now])
        let later = ReconcileSnapshot(
            now: now.addingTimeInterval(150), jobs: snapshot.jobs, cluster: snapshot.cluster, environments: [env])
        let second = ReconcilePlanner.plan(later, state: first.nextState)
        #expect(second.count(.finalizeFromCluster) == 1)
    }
}
