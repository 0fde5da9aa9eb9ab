import Domain
import Foundation
import Kubernetes
import Persistence

/// The reconciler's decisions as a pure function over values: no I/O, no clock, so every rule is table-tested.
///
/// Per unfinished job, the first matching rule wins, so a job gets at most one action per pass:
/// 1. no worker holds it and its attempt's end is settled in the cluster (read with `AttemptOutcome`, as the worker
///    reads it; a stop request counts) → ``ReconcileAction/finalizeFromCluster(jobID:attempt:result:observed:)``; not
///    settled yet but something must be stopped (a stop request, a start that will never happen) →
///    ``ReconcileAction/intervene(_:_:)``; a stop with no objects to stop → ``ReconcileAction/finalizeStop(jobID:attempt:deleteObjects:)``
/// 2. running past its limit plus the timeout grace → ``ReconcileAction/timeOut(jobID:attempt:deleteObjects:)``
/// 3. launched, objects gone for the missing-object grace → retry as a new attempt, or fail `lost`
/// 4. worker lease expired past the lease grace → ``ReconcileAction/handOver(jobID:environment:attempt:workerID:)``,
///    or ``ReconcileAction/failPoison(jobID:attempt:lapses:)`` once workers were lost holding it `poisonAttempts` times
/// 5. never claimed: expire after the environment's queue wait.
///
/// Admission, publishing and republishing job messages are the dispatcher's (``Dispatcher``), not the planner's; the
/// plan only reports each environment's running, admitted and waiting jobs (duty 10).
///
/// Then objects with no live job are orphans (duty 4), finished jobs past their storage expiry lose their results
/// (duty 11), and stale environments are hidden (duty 12).
///
/// ``plan(_:configuration:state:focus:changes:)`` gives the same plan from the jobs and objects that can have changed
/// only (``ReconcileFocus``), which keeps a pass over 1,000 changes among 100,000 jobs from walking them all.
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
        /// Image pull and container creation problems end an attempt after this long (the worker's setting).
        /// Default 300 s.
        package var startTimeout: Duration = .seconds(300)
        /// A decided attempt whose logs never arrive (its pods will not stop) is recorded anyway after this long.
        /// Default 150 s.
        package var settleTimeout: Duration = .seconds(150)

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
        /// When each attempt the scheduler finalizes was first seen decided but not settled.
        package var firstDecided: [Attempt: Date]

        package init(firstSeenMissing: [Attempt: Date] = [:], firstDecided: [Attempt: Date] = [:]) {
            self.firstSeenMissing = firstSeenMissing
            self.firstDecided = firstDecided
        }
    }

    package static func plan(
        _ snapshot: ReconcileSnapshot, configuration: Configuration = Configuration(), state: State = State()
    ) -> ReconcilePlan {
        var planning = Planning(snapshot: snapshot, configuration: configuration, previous: state)
        return planning.run()
    }

    /// As ``plan(_:configuration:state:)``, keeping `focus` for the next pass. With `changes` (what changed since
    /// the pass that last updated `focus`) and a focus that is sure, only the jobs and objects that can have changed
    /// are planned (``ReconcileFocus``); otherwise every job is walked, which also rebuilds the focus. Either way the
    /// plan is the one ``plan(_:configuration:state:)`` returns, up to the order of the actions.
    package static func plan(
        _ snapshot: ReconcileSnapshot, configuration: Configuration = Configuration(), state: State = State(),
        focus: inout ReconcileFocus, changes: ReconcileChanges?
    ) -> ReconcilePlan {
        if let changes {
            var planning = Planning(snapshot: snapshot, configuration: configuration, previous: state)
            // A focused plan that finds it cannot decide (the fail-safe trips) leaves the focus to the full walk,
            // which rebuilds it.
            if let plan = planning.runFocused(&focus, changes: changes) { return plan }
        }
        focus = ReconcileFocus()
        var planning = Planning(snapshot: snapshot, configuration: configuration, previous: state)
        return planning.run(building: &focus)
    }
}

/// One pass's working data.
struct Planning {
    typealias Configuration = ReconcilePlanner.Configuration
    typealias Attempt = ReconcilePlanner.State.Attempt

    let snapshot: ReconcileSnapshot
    let configuration: Configuration
    let previous: ReconcilePlanner.State
    var now: Date { snapshot.now }

    /// Every attempt the cluster shows (tombstones included); nil without a usable cluster listing.
    var objects: ObservedAttempts?
    var failSafe: FailSafeReason?
    var actions: [ReconcileAction] = []
    var nextState = ReconcilePlanner.State()
    /// Jobs this plan finishes: they no longer take capacity.
    var finishing: Set<JobID> = []
    /// The current attempt of every unfinished job: objects of these attempts are never orphans, which settles most
    /// objects with a look-up in a small set instead of in the job rows.
    var currentAttempts: Set<AttemptKey> = []
    /// When the assessment of the job planned last may change by time alone (``AttemptOutcome/Assessment/reassessAt``).
    var reassessAt: Date?

    init(snapshot: ReconcileSnapshot, configuration: Configuration, previous: ReconcilePlanner.State) {
        self.snapshot = snapshot
        self.configuration = configuration
        self.previous = previous
    }

    /// One walk over the jobs does the per-job duties (a walk over 100,000 rows costs more than the rules it applies),
    /// then the duties over objects and environments follow.
    mutating func run() -> ReconcilePlan {
        var unused: ReconcileFocus?
        return walk(building: &unused)
    }

    /// The full walk, rebuilding `focus` from it.
    mutating func run(building focus: inout ReconcileFocus) -> ReconcilePlan {
        var building: ReconcileFocus? = ReconcileFocus()
        let plan = walk(building: &building)
        focus = building ?? ReconcileFocus()
        return plan
    }

    mutating func walk(building focus: inout ReconcileFocus?) -> ReconcilePlan {
        assessCluster()
        let environments = Dictionary(snapshot.environments.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var capacity = CapacityTally(environments: environments)
        var expired: [JobID] = []
        currentAttempts.reserveCapacity(snapshot.jobs.count)
        focus?.reserve(snapshot.jobs.unfinished.count)
        let others = snapshot.jobs.others
        for job in snapshot.jobs {
            let fromTable = others.isEmpty || others[job.id] == nil
            let actionsBefore = actions.count
            guard !job.isTerminal else {
                let expiredNow = storageExpired(job, environments: environments)
                if expiredNow { expired.append(job.id) }
                if fromTable && focus != nil {
                    focus?.record(job, due: storageDue(job, environments: environments), present: false)
                    if expiredNow { focus?.carriedJobs.insert(job.id) }
                }
                continue
            }
            planUnfinished(job, environment: environments[job.environment])
            currentAttempts.insert(AttemptKey(jobID: job.id, attempt: job.attempt))
            if !finishing.contains(job.id) { capacity.count(job) }
            if focus != nil {
                if fromTable {
                    let present = job.isLaunched && live(AttemptKey(jobID: job.id, attempt: job.attempt))
                    focus?.record(job, due: due(job, environment: environments[job.environment]), present: present)
                    if actions.count > actionsBefore { focus?.carriedJobs.insert(job.id) }
                } else {
                    // Planned from a row read for this pass alone: its object is looked at again next pass, which
                    // reads the row again.
                    focus?.carriedObjects.insert(AttemptKey(jobID: job.id, attempt: job.attempt))
                }
            }
        }
        planOrphans(focus: &focus)
        for id in expired { actions.append(.removeResults(jobID: id)) }
        planEnvironments()
        if failSafe != nil || objects == nil && snapshot.cluster != .notConfigured {
            focus = nil
        } else if focus != nil {
            // Rows that replace the table's for this pass are planned again next pass.
            for id in others.keys where snapshot.jobs.unfinished[id] != nil { focus?.carriedJobs.insert(id) }
            focus?.settle(configuration: configuration, environments: snapshot.environments)
        }
        return ReconcilePlan(actions: actions, failSafe: failSafe, capacity: capacity.report(), nextState: nextState)
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
            objects = list
            // Counted in place: copying 100,000 rows into filtered arrays cost more than the test itself.
            var launched = 0
            var present = 0
            for job in snapshot.jobs where job.isLaunched {
                launched += 1
                if live(AttemptKey(jobID: job.id, attempt: job.attempt)) { present += 1 }
            }
            if launched >= configuration.failSafeMinimumExpected,
                Double(present) <= Double(launched) * configuration.failSafeMaximumPresentShare
            {
                failSafe = .clusterNearlyEmpty(expected: launched, present: present)
            }
        }
    }

    /// Whether some object of the attempt exists and is not being deleted.
    func live(_ key: AttemptKey) -> Bool { objects?.isLive(key) ?? false }

    // MARK: Unfinished jobs

    mutating func planUnfinished(_ job: ReconcileJob, environment: ReconcileEnvironment?) {
        let key = Attempt(jobID: job.id, attempt: job.attempt)
        let attemptKey = AttemptKey(jobID: job.id, attempt: job.attempt)
        let live = self.live(attemptKey)
        // Nobody holds the job: no worker, or its lease lapsed past the grace (a slow renewal is not a death).
        let workerGone =
            job.workerID == nil || job.leaseUntil.map { $0.plus(configuration.leaseGrace) <= now } ?? true
        // The attempt's whole record is read only where a rule needs more than its liveness: reading it for every
        // job was most of a large pass (random reads of records far larger than a cache line).
        let observed = workerGone || (job.isLaunched && !live) ? objects?[attemptKey] : nil
        // Assessed once, and only where some rule reads it: reading every observed attempt's outcome would dominate
        // a large pass.
        let assessment = observed.map { assess(job, $0) }
        reassessAt = assessment?.reassessAt

        if workerGone, let observed, let assessment, job.attempt > 0 {
            if planFromCluster(job, key: key, observed: observed, assessment: assessment) { return }
        }
        if job.stopRequest == 1 && workerGone && (objects == nil || !live) {
            finish(job, .finalizeStop(jobID: job.id, attempt: job.attempt, deleteObjects: false))
            return
        }
        if let started = job.attemptStartedAt, let limit = job.maxDuration,
            started.plus(limit).plus(configuration.timeoutGrace) <= now
        {
            finish(job, .timeOut(jobID: job.id, attempt: job.attempt, deleteObjects: live))
            return
        }
        if job.isLaunched, objects != nil, !live, assessment?.verdict == nil {
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
        // The job's own wait (ocean-node's queueMaxWaitTime) within the environment's, whichever ends first.
        if job.isQueued, let wait = Self.queueWait(job, environment), job.createdAt.plus(wait) <= now {
            finish(job, .expireInQueue(jobID: job.id))
        }
    }

    /// The attempt read as the worker reads it (`AttemptOutcome`).
    func assess(_ job: ReconcileJob, _ observed: ObservedAttempt) -> AttemptOutcome.Assessment {
        let limit = job.maxDuration.map { Int($0.components.seconds) } ?? Int.max / 2
        return AttemptOutcome.assess(
            observed.observation,
            AttemptOutcome.Context(
                now: now, stopRequested: job.stopRequest == 1, algorithmTimeLimit: limit,
                startTimeout: configuration.startTimeout / .seconds(1)))
    }

    /// Duties 6 and 8 for a job no worker holds: finalize a settled attempt, or stop what must be stopped. True when
    /// the job got its action.
    mutating func planFromCluster(
        _ job: ReconcileJob, key: Attempt, observed: ObservedAttempt, assessment: AttemptOutcome.Assessment
    ) -> Bool {
        guard let verdict = assessment.verdict else {
            if assessment.intervention != .none {
                actions.append(.intervene(AttemptKey(jobID: job.id, attempt: job.attempt), assessment.intervention))
                return true
            }
            return false
        }
        let since = previous.firstDecided[key] ?? now
        if assessment.settled || since.plus(configuration.settleTimeout) <= now {
            finish(
                job,
                .finalizeFromCluster(
                    jobID: job.id, attempt: job.attempt, result: Finalization(verdict), observed: observed))
            return true
        }
        nextState.firstDecided[key] = since
        if assessment.intervention != .none {
            actions.append(.intervene(AttemptKey(jobID: job.id, attempt: job.attempt), assessment.intervention))
        }
        return true
    }

    mutating func finish(_ job: ReconcileJob, _ action: ReconcileAction) {
        finishing.insert(job.id)
        actions.append(action)
    }

    // MARK: Duty 10: capacity, as reported

    /// Per environment with unfinished jobs: jobs running (claimed), admitted but not yet claimed, and waiting for
    /// admission, after this plan's finalizations. The dispatcher decides admission; this is what `/metrics` shows.
    struct CapacityTally {
        let environments: [String: ReconcileEnvironment]
        var capacity: [String: EnvironmentCapacity] = [:]
        /// Only jobs not yet running are listed, in creation order; running ones are only counted, so a pass over
        /// many running jobs sorts nothing.
        var notRunning: [(createdAt: Date, id: JobID, environment: String, admitted: Bool)] = []

        init(environments: [String: ReconcileEnvironment]) {
            self.environments = environments
        }

        mutating func count(_ job: ReconcileJob) {
            if capacity[job.environment] == nil {
                capacity[job.environment] = EnvironmentCapacity(
                    environment: job.environment, maxJobs: environments[job.environment]?.maxJobs.positive,
                    running: 0, admitted: [], waiting: [])
            }
            if job.workerID != nil || job.isLaunched {
                capacity[job.environment]?.running += 1
            } else {
                notRunning.append((job.createdAt, job.id, job.environment, job.admitted))
            }
        }

        func report() -> [String: EnvironmentCapacity] {
            var capacity = self.capacity
            // Ids compared as bytes order as their texts do (lowercase hex), without formatting each.
            let ordered = notRunning.sorted { a, b in
                a.createdAt != b.createdAt ? a.createdAt < b.createdAt : a.id.precedes(b.id)
            }
            for job in ordered {
                if job.admitted {
                    capacity[job.environment]?.admitted.append(job.id)
                } else {
                    capacity[job.environment]?.waiting.append(job.id)
                }
            }
            return capacity
        }
    }

    // MARK: Duty 4: orphans

    mutating func planOrphans(focus: inout ReconcileFocus?) {
        guard failSafe == nil, let objects else { return }
        var orphans: [(AttemptKey, OrphanReason)] = []
        for key in objects.live where !currentAttempts.contains(key) {
            switch orphanReading(key, objects: objects) {
            case .young(let until): focus?.objectsDue.push(until, key)
            case .kept: focus?.carriedObjects.insert(key)
            case .orphan(let reason):
                focus?.carriedObjects.insert(key)
                orphans.append((key, reason))
            }
        }
        appendOrphans(orphans)
    }

    enum OrphanReading {
        /// Too young to judge until then.
        case young(until: Date)
        /// Not an orphan now, though not its job's current attempt (a later attempt than its row's, say).
        case kept
        case orphan(OrphanReason)
    }

    /// A live object that is not the current attempt of an unfinished job, read as an orphan or not.
    func orphanReading(_ key: AttemptKey, objects: ObservedAttempts) -> OrphanReading {
        guard let attempt = objects[key] else { return .kept }
        let grown = (attempt.createdAt ?? .distantPast).plus(configuration.orphanGrace)
        guard grown <= now else { return .young(until: grown) }
        guard let job = snapshot.jobs[key.jobID] else { return .orphan(.unknownJob) }
        if job.isTerminal {
            // A job finished by this pass deletes its own objects as part of its action.
            return finishing.contains(job.id) ? .kept : .orphan(.jobTerminal)
        }
        return key.attempt < job.attempt ? .orphan(.attemptSuperseded) : .kept
    }

    mutating func appendOrphans(_ unordered: [(AttemptKey, OrphanReason)]) {
        var orphans = unordered
        // In a stable order, sorting only the orphans (sorting every attempt would cost most of a large pass).
        orphans.sort { a, b in a.0.jobID != b.0.jobID ? a.0.jobID.precedes(b.0.jobID) : a.0.attempt < b.0.attempt }
        for (key, reason) in orphans { actions.append(.deleteOrphan(key, reason: reason)) }
    }

    // MARK: Duty 11 and 12

    /// A finished job whose results outlived its environment's storage expiry.
    func storageExpired(_ job: ReconcileJob, environments: [String: ReconcileEnvironment]) -> Bool {
        storageExpiry(job, environments: environments).map { $0 <= now } ?? false
    }

    /// When a finished job's results expire, if they are kept and expire at all.
    func storageExpiry(_ job: ReconcileJob, environments: [String: ReconcileEnvironment]) -> Date? {
        guard !job.removed, let finished = job.finishedAt, let expiry = environments[job.environment]?.storageExpiry,
            expiry > .zero
        else { return nil }
        return finished.plus(expiry)
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
    var positive: Int? { self > 0 ? self : nil }
}
