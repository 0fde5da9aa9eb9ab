import Domain
import Foundation
import Scheduler
import Testing

/// Fixed times and ids, so every case is a plain value.
private let now = Date(timeIntervalSince1970: 1_800_000_000)

private func ago(_ seconds: Double) -> Date { now.addingTimeInterval(-seconds) }

private func id(_ n: Int) -> JobID {
    JobID(uuid: UUID(uuidString: "00000000-0000-0000-0000-\(String(format: "%012d", n))")!)
}

private let env = ReconcileEnvironment(id: "env", maxJobs: 0, lastSeen: now)

private func queued(_ n: Int, created: Double = 0, admitted: Bool = false) -> ReconcileJob {
    ReconcileJob(id: id(n), environment: "env", createdAt: ago(created), admitted: admitted)
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

private func object(
    _ n: Int, attempt: Int = 1, step: ClusterObject.Step? = .algorithm, kind: ClusterObject.Kind = .job,
    phase: ClusterObject.Phase? = .running, exitCode: Int? = nil, oom: Bool = false, reason: String? = nil,
    age: Double = 600, deleting: Bool = false
) -> ClusterObject {
    ClusterObject(
        kind: kind, jobID: id(n), attempt: attempt, step: step, phase: phase, exitCode: exitCode, oomKilled: oom,
        reason: reason, createdAt: ago(age), deleting: deleting)
}

private func ref(_ n: Int, attempt: Int = 1, step: ClusterObject.Step? = .algorithm, kind: ClusterObject.Kind = .job)
    -> ClusterObject.Reference
{
    object(n, attempt: attempt, step: step, kind: kind).reference
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
        name: "4 unknown job's object 59 s old: wait", cluster: .available([object(9, age: 59)]), expected: []),
    PlannerCase(
        name: "4 unknown job's object 60 s old: delete", cluster: .available([object(9, age: 60)]),
        expected: [.deleteOrphan(ref(9), reason: .unknownJob)]),
    PlannerCase(
        name: "4 finished job's objects: delete", jobs: [finished(1, finished: 30)],
        cluster: .available([object(1, step: nil, kind: .secret, phase: nil)]),
        expected: [.deleteOrphan(ref(1, step: nil, kind: .secret), reason: .jobTerminal)]),
    PlannerCase(
        name: "4 superseded attempt deleted, current kept", jobs: [running(1, attempt: 2)],
        cluster: .available([object(1, attempt: 1), object(1, attempt: 2)]),
        expected: [.deleteOrphan(ref(1, attempt: 1), reason: .attemptSuperseded)]),
    PlannerCase(
        name: "4 object being deleted is left alone", cluster: .available([object(9, deleting: true)]), expected: []),
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
    // Duty 6: finalize from finished objects once no worker holds the job.
    PlannerCase(
        name: "6 algorithm exit 3", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([
            object(1, phase: .failed), object(1, kind: .pod, phase: .failed, exitCode: 3, reason: "Error"),
        ]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: Finalization(
                    status: .algorithmFailed, outcome: .failed, failureReason: "algorithm failed: Error", exitCode: 3),
                objects: [ref(1), ref(1, kind: .pod)])
        ]),
    PlannerCase(
        name: "6 OOM killed", jobs: [running(1, worker: nil, leaseEnds: -100)],
        cluster: .available([object(1, kind: .pod, phase: .failed, exitCode: 137, oom: true, reason: "OOMKilled")]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: Finalization(
                    status: .algorithmFailed, outcome: .failed, failureReason: "oom", exitCode: 137, oomKilled: true),
                objects: [ref(1, kind: .pod)])
        ]),
    PlannerCase(
        name: "6 deadline exceeded is a timeout", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([object(1, phase: .failed, reason: "DeadlineExceeded")]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: Finalization(
                    status: .finished, outcome: .timedOut, failureReason: "timed out", stopRequest: 2),
                objects: [ref(1)])
        ]),
    PlannerCase(
        name: "6 publish succeeded", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([
            object(1, step: .configure, phase: .succeeded), object(1, phase: .succeeded),
            object(1, step: .publish, phase: .succeeded),
        ]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1, result: Finalization(status: .finished, outcome: .succeeded, exitCode: 0),
                objects: [ref(1), ref(1, step: .configure), ref(1, step: .publish)])
        ]),
    PlannerCase(
        name: "6 configure failed", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([object(1, step: .configure, phase: .failed, reason: "BackoffLimitExceeded")]),
        expected: [
            .finalizeFromCluster(
                jobID: id(1), attempt: 1,
                result: Finalization(
                    status: .dataProvisioningFailed, outcome: .failed,
                    failureReason: "configure step failed: BackoffLimitExceeded"),
                objects: [ref(1, step: .configure)])
        ]),
    PlannerCase(
        name: "6 live worker finalizes itself", jobs: [running(1, leaseEnds: -9)],
        cluster: .available([object(1, phase: .failed)]), expected: []),
    PlannerCase(
        name: "6 still running: nothing", jobs: [running(1, leaseEnds: -10)],
        cluster: .available([object(1, phase: .running)]), kinds: [.finalizeFromCluster], expected: []),
    // Duty 7: time out after the limit (60 s) plus the timeout grace (30 s).
    PlannerCase(
        name: "7 ran 89 s of 60 + 30: wait", jobs: [running(1, started: 89, maxDuration: .seconds(60))],
        cluster: .available([object(1)]), expected: []),
    PlannerCase(
        name: "7 ran 90 s of 60 + 30: time out", jobs: [running(1, started: 90, maxDuration: .seconds(60))],
        cluster: .available([object(1)]), expected: [.timeOut(jobID: id(1), attempt: 1, objects: [ref(1)])]),
    PlannerCase(
        name: "7 a retried attempt's limit counts from its own start",
        jobs: [running(1, attempt: 2, started: 900, attemptStarted: 89, maxDuration: .seconds(60))],
        cluster: .available([object(1, attempt: 2)]), expected: []),
    // Duty 8: stop requested.
    PlannerCase(
        name: "8 stop, worker gone: finalize and delete", jobs: [running(1, leaseEnds: -10, stop: 1)],
        cluster: .available([object(1, step: .configure), object(1, step: nil, kind: .secret, phase: nil)]),
        expected: [
            .finalizeStop(
                jobID: id(1), attempt: 1,
                objects: [ref(1, step: nil, kind: .secret), ref(1, step: .configure)])
        ]),
    PlannerCase(
        name: "8 stop, live worker stops it", jobs: [running(1, stop: 1)], cluster: .available([object(1)]),
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
                now: now, jobs: [running(1), running(2)], cluster: .available([object(2)]), environments: [env]))
        #expect(first.nextState.firstSeenMissing == [.init(jobID: id(1), attempt: 1): now])
        // Remembered from the first pass, not reset by the second.
        let later = now.addingTimeInterval(30)
        let second = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: later, jobs: [running(1), running(2)], cluster: .available([object(2)]), environments: [env]),
            state: first.nextState)
        #expect(second.nextState.firstSeenMissing == [.init(jobID: id(1), attempt: 1): now])
        // Objects back: forgotten.
        let third = ReconcilePlanner.plan(
            ReconcileSnapshot(
                now: later, jobs: [running(1)], cluster: .available([object(1)]), environments: [env]),
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
        let objects = (1...present).map { object($0) } + [object(99)]
        let state = ReconcilePlanner.State(
            firstSeenMissing: Dictionary(
                uniqueKeysWithValues: (1...10).map { (.init(jobID: id($0), attempt: 1), ago(900)) }))
        let plan = ReconcilePlanner.plan(
            ReconcileSnapshot(now: now, jobs: jobs, cluster: .available(objects), environments: [env]), state: state)
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
        #expect(
            ClusterObject.name(jobID: id(7), attempt: 2, step: .publish)
                == "c2d-00000000000000000000000000000007-2-publish")
        #expect(ClusterObject.name(jobID: id(7), attempt: 2, step: nil) == "c2d-00000000000000000000000000000007-2")
    }
}
