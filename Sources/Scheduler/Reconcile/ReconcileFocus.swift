import Domain
import Foundation
import Kubernetes
import Persistence

/// What changed since the pass that last updated a ``ReconcileFocus``.
package struct ReconcileChanges: Sendable, Hashable {
    /// Jobs whose rows the cursor read: new, changed, or gone from the table of unfinished jobs.
    package var jobs: Set<JobID>
    /// Attempts the informer changed, or forgot.
    package var attempts: Set<AttemptKey>

    package init(jobs: Set<JobID> = [], attempts: Set<AttemptKey> = []) {
        self.jobs = jobs
        self.attempts = attempts
    }
}

/// What a focused plan carries from one pass to the next (docs/architecture.md, "Focused passes").
///
/// A rule can only change its answer for a job when the job's row changes (the cursor reads it), when its attempt
/// changes in the cluster (the informer reports it), when the planner's own state about it changes, or when the clock
/// passes one of the times the rule compares with. So a focused pass plans only:
/// - the jobs the cursor read and the jobs of the attempts the informer changed (``ReconcileChanges``);
/// - the jobs the last pass acted on or keeps state for (missing or decided attempts): an action that failed to apply
///   is decided again;
/// - the jobs whose next time-driven rule is due, from a min-heap of due times (``dueJobs``): lease expiry and lease
///   expiry plus grace, time limit plus grace, queue wait, storage expiry, and when an attempt's assessment may
///   change by time alone (a start time-out, the algorithm's time limit);
/// and looks for orphans only among the changed attempts, the attempts the changed jobs named before and now, the
/// objects it decided or left alone last pass although not current (``carriedObjects``), and young objects whose
/// grace ended (``objectsDue``).
///
/// The capacity report and the fail-safe's counts are counters over the table, updated for the planned jobs only;
/// they equal what the full walk counts. The focus is unsure (the next plan walks everything and rebuilds it) until
/// a full walk built it, after a pass in fail-safe, and when the configuration or an environment's waits changed.
package struct ReconcileFocus: Sendable {
    /// Where a job counts in the capacity report.
    enum Slot: UInt8, Sendable {
        case none, running, admitted, waiting
    }

    /// What the focus remembers of each row of the table: enough to take its counts back when the row changes.
    struct Memo: Sendable {
        var environment: String
        var createdAt: Date
        var attempt: Int
        var slot: Slot
        var launched: Bool
        var present: Bool
        var due: Date?
    }

    struct Count: Sendable, Hashable {
        var jobs = 0
        var running = 0

        mutating func add(_ slot: Slot, _ sign: Int) {
            jobs += sign
            if slot == .running { running += sign }
        }
    }

    /// The rules of an environment that the per-job rules read (its job limit is only reported).
    struct EnvironmentRules: Sendable, Hashable {
        var maxQueueWait: Duration?
        var storageExpiry: Duration?
    }

    private(set) var sure = false
    private var configuration: ReconcilePlanner.Configuration?
    private var environmentRules: [String: EnvironmentRules] = [:]
    private(set) var memos: [JobID: Memo] = [:]
    /// Per environment: the table's unfinished jobs and how many of them run.
    private(set) var counts: [String: Count] = [:]
    /// Jobs of the table admitted or waiting (listed in the report, in creation order).
    private(set) var notRunning: Set<JobID> = []
    private(set) var launched = 0
    private(set) var present = 0
    var dueJobs = DueHeap<JobID>()
    var objectsDue = DueHeap<AttemptKey>()
    /// Jobs to plan again next pass: the ones this pass acted on.
    var carriedJobs: Set<JobID> = []
    /// Live objects to look at again next pass: not their job's current attempt in the table and not young.
    var carriedObjects: Set<AttemptKey> = []

    package init() {}

    /// Whether a focused plan may be trusted with this configuration and these environments.
    func isSure(configuration: ReconcilePlanner.Configuration, environments: [ReconcileEnvironment]) -> Bool {
        sure && self.configuration == configuration && Self.rules(environments) == environmentRules
    }

    /// Marks the focus complete after a full walk (or a focused pass) under this configuration.
    mutating func settle(configuration: ReconcilePlanner.Configuration, environments: [ReconcileEnvironment]) {
        sure = true
        self.configuration = configuration
        environmentRules = Self.rules(environments)
    }

    static func rules(_ environments: [ReconcileEnvironment]) -> [String: EnvironmentRules] {
        Dictionary(
            environments.map {
                ($0.id, EnvironmentRules(maxQueueWait: $0.maxQueueWait, storageExpiry: $0.storageExpiry))
            },
            uniquingKeysWith: { a, _ in a })
    }

    mutating func reserve(_ count: Int) { memos.reserveCapacity(count) }

    /// The jobs the focused planning in this pass may find orphans among (``ReconcileFocus``); the reconciler reads
    /// the rows of their jobs that are not in its table. `jobs` may lack the rows read for the pass alone: their
    /// attempts are added by the planner, which has them.
    package func attemptsToExamine(_ changes: ReconcileChanges, jobs: ReconcileJobs, now: Date) -> Set<AttemptKey> {
        var keys = changes.attempts.union(carriedObjects)
        for key in objectsDue.peekDue(now) { keys.insert(key) }
        for id in changes.jobs.union(jobs.others.keys) {
            if let memo = memos[id] { keys.insert(AttemptKey(jobID: id, attempt: memo.attempt)) }
            if let row = jobs[id] { keys.insert(AttemptKey(jobID: id, attempt: row.attempt)) }
        }
        return keys
    }

    // MARK: Counts

    static func slot(_ job: ReconcileJob) -> Slot {
        guard !job.isTerminal else { return .none }
        if job.workerID != nil || job.isLaunched { return .running }
        return job.admitted ? .admitted : .waiting
    }

    /// The table's row of a job, as it is now (nil: gone from the table). Its due time is kept until ``setDue(_:_:)``.
    mutating func update(_ job: ReconcileJob?, id: JobID, present: Bool) {
        let due = forget(id)
        guard let job else { return }
        let memo = Memo(
            environment: job.environment, createdAt: job.createdAt, attempt: job.attempt, slot: Self.slot(job),
            launched: job.isLaunched, present: present, due: due)
        Self.add(memo, to: &counts, launched: &launched, present: &self.present)
        if memo.slot == .admitted || memo.slot == .waiting { notRunning.insert(id) }
        memos[id] = memo
    }

    /// A row of the table and its due time, while a full walk builds the focus (each row once).
    mutating func record(_ job: ReconcileJob, due: Date?, present: Bool) {
        let memo = Memo(
            environment: job.environment, createdAt: job.createdAt, attempt: job.attempt, slot: Self.slot(job),
            launched: job.isLaunched, present: present, due: due)
        Self.add(memo, to: &counts, launched: &launched, present: &self.present)
        if memo.slot == .admitted || memo.slot == .waiting { notRunning.insert(job.id) }
        if let due { dueJobs.push(due, job.id) }
        memos[job.id] = memo
    }

    mutating func setDue(_ id: JobID, _ due: Date?) {
        guard memos[id] != nil, memos[id]?.due != due else { return }
        memos[id]?.due = due
        // The entry with the old time stays in the heap: popping it only plans the job once more.
        if let due { dueJobs.push(due, id) }
    }

    /// Takes a row's counts back; returns its due time.
    @discardableResult
    private mutating func forget(_ id: JobID) -> Date? {
        guard let old = memos.removeValue(forKey: id) else { return nil }
        Self.remove(old, from: &counts, launched: &launched, present: &present)
        if old.slot == .admitted || old.slot == .waiting { notRunning.remove(id) }
        return old.due
    }

    static func add(_ memo: Memo, to counts: inout [String: Count], launched: inout Int, present: inout Int) {
        if memo.launched { launched += 1 }
        if memo.launched && memo.present { present += 1 }
        guard memo.slot != .none else { return }
        counts[memo.environment, default: Count()].add(memo.slot, 1)
    }

    static func remove(_ memo: Memo, from counts: inout [String: Count], launched: inout Int, present: inout Int) {
        if memo.launched { launched -= 1 }
        if memo.launched && memo.present { present -= 1 }
        guard memo.slot != .none else { return }
        counts[memo.environment, default: Count()].add(memo.slot, -1)
        if counts[memo.environment]?.jobs == 0 { counts[memo.environment] = nil }
    }
}

// MARK: Focused planning

extension Planning {
    /// The focused pass (``ReconcileFocus``); nil when it cannot be trusted, and the caller walks everything.
    mutating func runFocused(_ focus: inout ReconcileFocus, changes: ReconcileChanges) -> ReconcilePlan? {
        guard focus.isSure(configuration: configuration, environments: snapshot.environments) else { return nil }
        switch snapshot.cluster {
        case .available(let list): objects = list
        // The local executor: no objects, so no fail-safe and no orphans; the rules over rows and time remain.
        case .notConfigured: objects = nil
        case .unavailable: return nil
        }
        let table = snapshot.jobs.unfinished
        let others = snapshot.jobs.others
        let environments = Dictionary(snapshot.environments.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })

        // What to look at: computed before the table's rows are taken in, since it reads their former attempts.
        let examined = focus.attemptsToExamine(changes, jobs: snapshot.jobs, now: now)
        _ = focus.objectsDue.popDue(now)
        var planned = changes.jobs.union(focus.carriedJobs)
        for key in changes.attempts { planned.insert(key.jobID) }
        for key in previous.firstSeenMissing.keys { planned.insert(key.jobID) }
        for key in previous.firstDecided.keys { planned.insert(key.jobID) }
        for id in focus.dueJobs.popDue(now) { planned.insert(id) }
        for id in others.keys where table[id] != nil { planned.insert(id) }
        focus.carriedJobs = []
        focus.carriedObjects = []

        for id in planned {
            let job = table[id]
            let present = job.map { $0.isLaunched && live(AttemptKey(jobID: id, attempt: $0.attempt)) } ?? false
            focus.update(job, id: id, present: present)
        }

        // This pass's counts: the table's, with the rows read for this pass alone in place of the table's.
        var counts = focus.counts
        var launched = focus.launched
        var present = focus.present
        var replaced: Set<JobID> = []
        for row in others.values {
            if let memo = focus.memos[row.id] {
                ReconcileFocus.remove(memo, from: &counts, launched: &launched, present: &present)
                replaced.insert(row.id)
            }
            let livePresent = row.isLaunched && live(AttemptKey(jobID: row.id, attempt: row.attempt))
            ReconcileFocus.add(
                Self.memo(row, present: livePresent), to: &counts, launched: &launched, present: &present)
        }
        if objects != nil, launched >= configuration.failSafeMinimumExpected,
            Double(present) <= Double(launched) * configuration.failSafeMaximumPresentShare
        {
            // Worth no shortcut: the full walk decides what to withhold.
            return nil
        }

        var expired: [JobID] = []
        var finished: [ReconcileJob] = []
        for id in planned where others[id] == nil {
            guard let job = table[id] else { continue }
            let actionsBefore = actions.count
            if job.isTerminal {
                if storageExpired(job, environments: environments) {
                    expired.append(id)
                    focus.carriedJobs.insert(id)
                }
                focus.setDue(id, storageDue(job, environments: environments))
                continue
            }
            planUnfinished(job, environment: environments[job.environment])
            focus.setDue(id, due(job, environment: environments[job.environment]))
            if actions.count > actionsBefore { focus.carriedJobs.insert(id) }
            if finishing.contains(id) { finished.append(job) }
        }
        for row in others.values {
            guard !row.isTerminal else {
                if storageExpired(row, environments: environments) { expired.append(row.id) }
                continue
            }
            planUnfinished(row, environment: environments[row.environment])
            focus.carriedObjects.insert(AttemptKey(jobID: row.id, attempt: row.attempt))
            if finishing.contains(row.id) { finished.append(row) }
        }
        for job in finished {
            ReconcileFocus.remove(Self.memo(job, present: false), from: &counts, launched: &launched, present: &present)
        }

        var orphans: [(AttemptKey, OrphanReason)] = []
        for key in examined {
            guard let objects, objects.isLive(key) else { continue }
            if let job = snapshot.jobs[key.jobID], !job.isTerminal, job.attempt == key.attempt {
                if others[key.jobID] != nil { focus.carriedObjects.insert(key) }
                continue
            }
            switch orphanReading(key, objects: objects) {
            case .young(let until): focus.objectsDue.push(until, key)
            case .kept: focus.carriedObjects.insert(key)
            case .orphan(let reason):
                focus.carriedObjects.insert(key)
                orphans.append((key, reason))
            }
        }
        appendOrphans(orphans)
        for id in expired { actions.append(.removeResults(jobID: id)) }
        planEnvironments()
        for id in others.keys where table[id] != nil { focus.carriedJobs.insert(id) }
        focus.settle(configuration: configuration, environments: snapshot.environments)

        var capacity = CapacityTally(environments: environments)
        for (environment, count) in counts where count.jobs > 0 {
            capacity.capacity[environment] = EnvironmentCapacity(
                environment: environment, maxJobs: environments[environment]?.maxJobs.positive,
                running: count.running, admitted: [], waiting: [])
        }
        for id in focus.notRunning where !replaced.contains(id) && !finishing.contains(id) {
            guard let memo = focus.memos[id] else { continue }
            capacity.notRunning.append((memo.createdAt, id, memo.environment, memo.slot == .admitted))
        }
        for row in others.values where !finishing.contains(row.id) {
            let slot = ReconcileFocus.slot(row)
            guard slot == .admitted || slot == .waiting else { continue }
            capacity.notRunning.append((row.createdAt, row.id, row.environment, slot == .admitted))
        }
        return ReconcilePlan(
            actions: actions, failSafe: nil, capacity: capacity.report(), nextState: nextState, focused: true)
    }

    static func memo(_ job: ReconcileJob, present: Bool) -> ReconcileFocus.Memo {
        ReconcileFocus.Memo(
            environment: job.environment, createdAt: job.createdAt, attempt: job.attempt,
            slot: ReconcileFocus.slot(job), launched: job.isLaunched, present: present, due: nil)
    }

    // MARK: Due times

    /// The first time after `now` at which a rule about this unfinished job may answer differently with nothing else
    /// changed: every time ``planUnfinished(_:environment:)`` compares `now` with, whichever branch it took (a
    /// time that does not matter only costs one more look).
    func due(_ job: ReconcileJob, environment: ReconcileEnvironment?) -> Date? {
        var earliest: Date?
        func consider(_ date: Date) {
            if date > now, earliest.map({ date < $0 }) ?? true { earliest = date }
        }
        if let lease = job.leaseUntil {
            // Unheld: waits for its lease; held: handed over (or acted on from the cluster) after the grace.
            consider(lease)
            consider(lease.plus(configuration.leaseGrace))
        }
        if let started = job.attemptStartedAt, let limit = job.maxDuration {
            consider(started.plus(limit).plus(configuration.timeoutGrace))
        }
        if job.isQueued, let wait = Self.queueWait(job, environment) { consider(job.createdAt.plus(wait)) }
        if let reassessAt { consider(reassessAt) }
        return earliest
    }

    /// The shorter of the job's own queue wait and its environment's (as ``planUnfinished(_:environment:)`` reads it).
    static func queueWait(_ job: ReconcileJob, _ environment: ReconcileEnvironment?) -> Duration? {
        switch (job.maxQueueWait, environment?.maxQueueWait) {
        case (let own?, let shared?): min(own, shared)
        case (let own?, nil): own
        case (nil, let shared?): shared
        case (nil, nil): nil
        }
    }

    /// When a finished job's results expire, if later than now.
    func storageDue(_ job: ReconcileJob, environments: [String: ReconcileEnvironment]) -> Date? {
        storageExpiry(job, environments: environments).flatMap { $0 > now ? $0 : nil }
    }
}
