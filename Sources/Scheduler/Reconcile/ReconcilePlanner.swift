import Domain
import Foundation

/// The reconciler's decisions as a pure function over values (aesthetics §10.14): no I/O, no clock.
///
/// Per unfinished job, the first matching rule wins, so a job gets at most one action per pass:
/// 1. stop requested (stopreq 1) and no worker holds it → ``ReconcileAction/finalizeStop(jobID:attempt:objects:)``
/// 2. its attempt's objects finished and no worker holds it → ``ReconcileAction/finalizeFromCluster(jobID:attempt:result:objects:)``
/// 3. running past its limit plus the timeout grace → ``ReconcileAction/timeOut(jobID:attempt:objects:)``
/// 4. launched, objects gone for the missing-object grace → retry as a new attempt, or fail `lost`
/// 5. worker lease expired past the lease grace → ``ReconcileAction/handOver(jobID:environment:attempt:workerID:)``,
///    or ``ReconcileAction/failPoison(jobID:attempt:lapses:)`` once workers were lost holding it `poisonAttempts` times
/// 6. never claimed: expire after the environment's queue wait.
///
/// Admission, publishing and republishing job messages are the dispatcher's (``Dispatcher``), not the planner's; the
/// plan only reports each environment's running, admitted and waiting jobs (duty 10).
///
/// Then objects with no live job are orphans (duty 4), finished jobs past their storage expiry lose their results
/// (duty 11), and stale environments are hidden (duty 12).
///
/// Fail-safe: when the cluster cannot be listed, or shows objects for at most a small share of many launched jobs,
/// orphan deletion and lost-job handling are withheld and the missing-since clock restarts, while the Postgres-only
/// duties go on.
package enum ReconcilePlanner {
    package struct Configuration: Sendable, Hashable {
        /// A worker lease this long expired hands the job to another worker; also how long after expiry the
        /// scheduler acts instead of the worker on stops and finished objects. Default 10 s.
        package var leaseGrace: Duration
        /// A launched attempt with no objects this long is lost (Armada: 5 min; our leases are short). Default 2 min.
        package var missingObjectGrace: Duration
        /// Objects younger than this are never orphans: they may belong to a claim newer than the job rows read.
        /// Default 60 s.
        package var orphanGrace: Duration
        /// How long past its limit a job may run before the scheduler times it out; the worker's own timer and
        /// `activeDeadlineSeconds` act first. Default 30 s.
        package var timeoutGrace: Duration
        /// Attempts before a lost job fails instead of retrying. Default 3.
        package var maxAttempts: Int
        /// Workers lost while holding a job (leases lapsed) before the job fails as poison instead of being handed
        /// over again. Default 5.
        package var poisonAttempts: Int
        /// The near-empty fail-safe needs at least this many launched jobs. Default 10.
        package var failSafeMinimumExpected: Int
        /// ... and trips when at most this share of them have objects. Default 0.1.
        package var failSafeMaximumPresentShare: Double
        /// An environment not refreshed for this long is hidden. Default 10 min.
        package var environmentStaleAfter: Duration

        package init(
            leaseGrace: Duration = .seconds(10), missingObjectGrace: Duration = .seconds(120),
            orphanGrace: Duration = .seconds(60), timeoutGrace: Duration = .seconds(30), maxAttempts: Int = 3,
            poisonAttempts: Int = 5, failSafeMinimumExpected: Int = 10,
            failSafeMaximumPresentShare: Double = 0.1, environmentStaleAfter: Duration = .seconds(600)
        ) {
            self.leaseGrace = leaseGrace
            self.missingObjectGrace = missingObjectGrace
            self.orphanGrace = orphanGrace
            self.timeoutGrace = timeoutGrace
            self.maxAttempts = max(1, maxAttempts)
            self.poisonAttempts = max(1, poisonAttempts)
            self.failSafeMinimumExpected = max(1, failSafeMinimumExpected)
            self.failSafeMaximumPresentShare = failSafeMaximumPresentShare
            self.environmentStaleAfter = environmentStaleAfter
        }
    }

    /// What one pass hands to the next: when each launched attempt was first seen without objects.
    package struct State: Sendable, Hashable {
        package struct Attempt: Sendable, Hashable {
            package var jobID: JobID
            package var attempt: Int

            package init(jobID: JobID, attempt: Int) {
                self.jobID = jobID
                self.attempt = attempt
            }
        }

        package var firstSeenMissing: [Attempt: Date]

        package init(firstSeenMissing: [Attempt: Date] = [:]) {
            self.firstSeenMissing = firstSeenMissing
        }
    }

    package static func plan(
        _ snapshot: ReconcileSnapshot, configuration: Configuration = Configuration(), state: State = State()
    ) -> ReconcilePlan {
        var planning = Planning(snapshot: snapshot, configuration: configuration, previous: state)
        return planning.run()
    }
}

/// One pass's working data.
private struct Planning {
    typealias Configuration = ReconcilePlanner.Configuration
    typealias Attempt = ReconcilePlanner.State.Attempt

    let snapshot: ReconcileSnapshot
    let configuration: Configuration
    let previous: ReconcilePlanner.State
    var now: Date { snapshot.now }

    /// Live (not deleting) objects per attempt; nil without a usable cluster listing.
    var objects: [Attempt: [ClusterObject]]?
    var failSafe: FailSafeReason?
    var actions: [ReconcileAction] = []
    var nextState = ReconcilePlanner.State()
    /// Jobs this plan finishes: they no longer take capacity.
    var finishing: Set<JobID> = []

    init(snapshot: ReconcileSnapshot, configuration: Configuration, previous: ReconcilePlanner.State) {
        self.snapshot = snapshot
        self.configuration = configuration
        self.previous = previous
    }

    mutating func run() -> ReconcilePlan {
        assessCluster()
        let environments = Dictionary(snapshot.environments.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for job in snapshot.jobs where !job.isTerminal {
            planUnfinished(job, environment: environments[job.environment])
        }
        let capacity = reportCapacity(environments: environments)
        planOrphans()
        planStorageExpiry(environments: environments)
        planEnvironments()
        return ReconcilePlan(actions: actions, failSafe: failSafe, capacity: capacity, nextState: nextState)
    }

    // MARK: Cluster view and fail-safe

    mutating func assessCluster() {
        switch snapshot.cluster {
        case .notConfigured:
            objects = nil
        case .unavailable(let reason):
            objects = nil
            failSafe = .clusterUnavailable(reason)
        case .available(let list):
            var byAttempt: [Attempt: [ClusterObject]] = [:]
            for object in list where !object.deleting {
                byAttempt[Attempt(jobID: object.jobID, attempt: object.attempt), default: []].append(object)
            }
            objects = byAttempt
            let launched = snapshot.jobs.filter(\.isLaunched)
            let present = launched.filter { byAttempt[Attempt(jobID: $0.id, attempt: $0.attempt)] != nil }.count
            if launched.count >= configuration.failSafeMinimumExpected,
                Double(present) <= Double(launched.count) * configuration.failSafeMaximumPresentShare
            {
                failSafe = .clusterNearlyEmpty(expected: launched.count, present: present)
            }
        }
    }

    /// The objects of a job's current attempt, as handles for deletion.
    func references(_ job: ReconcileJob) -> [ClusterObject.Reference] {
        (objects?[Attempt(jobID: job.id, attempt: job.attempt)] ?? []).map(\.reference)
            .sorted { ($0.name, $0.kind.rawValue) < ($1.name, $1.kind.rawValue) }
    }

    // MARK: Unfinished jobs

    mutating func planUnfinished(_ job: ReconcileJob, environment: ReconcileEnvironment?) {
        let key = Attempt(jobID: job.id, attempt: job.attempt)
        let attemptObjects = objects?[key] ?? []
        // Nobody holds the job: no worker, or its lease lapsed past the grace (a slow renewal is not a death).
        let workerGone =
            job.workerID == nil || job.leaseUntil.map { $0.plus(configuration.leaseGrace) <= now } ?? true

        if job.stopRequest == 1 && workerGone {
            finish(job, .finalizeStop(jobID: job.id, attempt: job.attempt, objects: references(job)))
            return
        }
        if workerGone, let result = Self.finalization(of: attemptObjects) {
            finish(
                job, .finalizeFromCluster(jobID: job.id, attempt: job.attempt, result: result, objects: references(job))
            )
            return
        }
        if let started = job.attemptStartedAt, let limit = job.maxDuration,
            started.plus(limit).plus(configuration.timeoutGrace) <= now
        {
            finish(job, .timeOut(jobID: job.id, attempt: job.attempt, objects: references(job)))
            return
        }
        if job.isLaunched, objects != nil, attemptObjects.isEmpty {
            if failSafe == nil {
                let since = previous.firstSeenMissing[key] ?? now
                nextState.firstSeenMissing[key] = since
                if since.plus(configuration.missingObjectGrace) <= now {
                    if job.attempt < configuration.maxAttempts {
                        actions.append(.retryLost(jobID: job.id, environment: job.environment, attempt: job.attempt))
                    } else {
                        finish(job, .failLost(jobID: job.id, attempt: job.attempt))
                    }
                    return
                }
            }
        }
        if let worker = job.workerID {
            if workerGone {
                if job.lapses + 1 >= configuration.poisonAttempts {
                    finish(job, .failPoison(jobID: job.id, attempt: job.attempt, lapses: job.lapses + 1))
                } else {
                    actions.append(
                        .handOver(jobID: job.id, environment: job.environment, attempt: job.attempt, workerID: worker))
                }
            }
            return
        }
        if job.leaseUntil.map({ $0 > now }) ?? false { return }
        if job.isQueued, let wait = environment?.maxQueueWait, job.createdAt.plus(wait) <= now {
            finish(job, .expireInQueue(jobID: job.id))
        }
    }

    mutating func finish(_ job: ReconcileJob, _ action: ReconcileAction) {
        finishing.insert(job.id)
        actions.append(action)
    }

    /// Reads the attempt's outcome from its objects once it has one: a failed step (the first in step order wins,
    /// since later steps may run only to archive logs) or a succeeded publish. Nil while still in progress.
    static func finalization(of objects: [ClusterObject]) -> Finalization? {
        var phases: [ClusterObject.Step: ClusterObject.Phase] = [:]
        var failedPods: [ClusterObject.Step: ClusterObject] = [:]
        var jobReasons: [ClusterObject.Step: String] = [:]
        for object in objects {
            guard let step = object.step, let phase = object.phase else { continue }
            switch object.kind {
            case .job:
                phases[step] = phase
                if let reason = object.reason { jobReasons[step] = reason }
            case .pod:
                // The Job's own phase wins; a Pod speaks for its step only when the Job object is absent.
                if phases[step] == nil { phases[step] = phase }
                if phase == .failed || object.exitCode.map({ $0 != 0 }) ?? false || object.oomKilled {
                    failedPods[step] = object
                }
            case .secret:
                continue
            }
        }
        let failedStep = ClusterObject.Step.allCases.first { phases[$0] == .failed }
        guard let step = failedStep else {
            return phases[.publish] == .succeeded
                ? Finalization(status: .finished, outcome: .succeeded, exitCode: 0) : nil
        }
        let pod = failedPods[step]
        let reason = pod?.reason ?? jobReasons[step]
        switch step {
        case .configure:
            return Finalization(
                status: .dataProvisioningFailed, outcome: .failed,
                failureReason: "configure step failed" + (reason.map { ": \($0)" } ?? ""), exitCode: pod?.exitCode)
        case .algorithm:
            if pod?.oomKilled == true {
                return Finalization(
                    status: .algorithmFailed, outcome: .failed, failureReason: "oom", exitCode: pod?.exitCode,
                    oomKilled: true)
            }
            if reason == "DeadlineExceeded" {
                return Finalization(
                    status: .finished, outcome: .timedOut, failureReason: "timed out", exitCode: pod?.exitCode,
                    stopRequest: 2)
            }
            return Finalization(
                status: .algorithmFailed, outcome: .failed,
                failureReason: "algorithm failed" + (reason.map { ": \($0)" } ?? ""), exitCode: pod?.exitCode)
        case .publish:
            return Finalization(
                status: .resultsUploadFailed, outcome: .failed,
                failureReason: "publish step failed" + (reason.map { ": \($0)" } ?? ""), exitCode: pod?.exitCode)
        }
    }

    // MARK: Duty 10: capacity, as reported

    /// Per environment with unfinished jobs: jobs running (claimed), admitted but not yet claimed, and waiting for
    /// admission, after this plan's finalizations. The dispatcher decides admission; this is what `/metrics` shows.
    func reportCapacity(environments: [String: ReconcileEnvironment]) -> [String: EnvironmentCapacity] {
        var capacity: [String: EnvironmentCapacity] = [:]
        let unfinished = snapshot.jobs.filter { !$0.isTerminal && !finishing.contains($0.id) }
            .sorted { ($0.createdAt, $0.id.description) < ($1.createdAt, $1.id.description) }
        for job in unfinished {
            var entry =
                capacity[job.environment]
                ?? EnvironmentCapacity(
                    environment: job.environment, maxJobs: environments[job.environment]?.maxJobs.positive,
                    running: 0, admitted: [], waiting: [])
            if job.workerID != nil || job.isLaunched {
                entry.running += 1
            } else if job.admitted {
                entry.admitted.append(job.id)
            } else {
                entry.waiting.append(job.id)
            }
            capacity[job.environment] = entry
        }
        return capacity
    }

    // MARK: Duty 4: orphans

    mutating func planOrphans() {
        guard failSafe == nil, case .available(let list) = snapshot.cluster else { return }
        let jobs = Dictionary(snapshot.jobs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var orphans: [(ClusterObject, OrphanReason)] = []
        for object in list where !object.deleting {
            guard object.createdAt.plus(configuration.orphanGrace) <= now else { continue }
            let reason: OrphanReason
            if let job = jobs[object.jobID] {
                if job.isTerminal {
                    // A job finished by this pass deletes its own objects as part of its action.
                    guard !finishing.contains(job.id) else { continue }
                    reason = .jobTerminal
                } else if object.attempt < job.attempt {
                    reason = .attemptSuperseded
                } else {
                    continue
                }
            } else {
                reason = .unknownJob
            }
            orphans.append((object, reason))
        }
        // In name order, sorting only the orphans (sorting every object cost most of a 100,000-object pass).
        orphans.sort { ($0.0.name, $0.0.kind.rawValue) < ($1.0.name, $1.0.kind.rawValue) }
        for (object, reason) in orphans { actions.append(.deleteOrphan(object.reference, reason: reason)) }
    }

    // MARK: Duty 11 and 12

    mutating func planStorageExpiry(environments: [String: ReconcileEnvironment]) {
        for job in snapshot.jobs where job.isTerminal && !job.removed {
            guard let finished = job.finishedAt, let expiry = environments[job.environment]?.storageExpiry,
                expiry > .zero, finished.plus(expiry) <= now
            else { continue }
            actions.append(.removeResults(jobID: job.id))
        }
    }

    mutating func planEnvironments() {
        for environment in snapshot.environments.sorted(by: { $0.id < $1.id }) {
            let stale = environment.lastSeen.plus(configuration.environmentStaleAfter) <= now
            if stale && !environment.hidden {
                actions.append(.hideEnvironment(id: environment.id))
            } else if !stale && environment.hidden {
                actions.append(.showEnvironment(id: environment.id))
            }
        }
    }
}

extension Int {
    /// Nil for zero or less ("no limit").
    fileprivate var positive: Int? { self > 0 ? self : nil }
}
