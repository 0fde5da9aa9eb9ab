import Domain
import Foundation
import Kubernetes
import Logging
import Persistence
import ServiceLifecycle
import Synchronization

/// The Kubernetes side of reconciling, implemented with the Kubernetes client (absent with the local executor).
package protocol ReconcileCluster: Sendable {
    /// c2d's attempts (label `app.kubernetes.io/managed-by=c2d`) as the shared informer folds them. Throwing puts
    /// the pass in fail-safe mode: nothing is inferred from the absence of objects.
    func listObjects() async throws -> ObservedAttempts
    /// As ``listObjects()``; `full` may ask for a fresh reading where the implementation can give one.
    func listObjects(full: Bool) async throws -> ObservedAttempts
    /// As ``listObjects(full:)`` (full when `start` is nil), with the attempts changed since the reading at `start`.
    func listObjects(changedSince start: AttemptChangePosition?) async throws -> ClusterReading
    /// Deletes the attempts' objects (their Jobs, which take the rest); already gone counts as deleted.
    func delete(_ attempts: [AttemptKey]) async throws
    /// Stops what an attempt runs (``AttemptOutcome/Intervention``).
    func intervene(_ attempt: AttemptKey, _ intervention: AttemptOutcome.Intervention) async throws
    /// Archives the step logs the attempt's publish step could not upload (read from the API) as the attempt's
    /// uploads, before its end is recorded. Must be idempotent.
    func archiveLogs(_ attempt: ObservedAttempt) async throws
}

extension ReconcileCluster {
    /// Implementations without a cache list the same way either way.
    package func listObjects(full: Bool) async throws -> ObservedAttempts { try await listObjects() }

    /// Implementations that cannot tell what changed make every pass plan over every job.
    package func listObjects(changedSince start: AttemptChangePosition?) async throws -> ClusterReading {
        ClusterReading(objects: try await listObjects(full: start == nil), position: nil, changed: nil)
    }
}

/// The cluster as one pass reads it, with what changed since the former reading.
package struct ClusterReading: Sendable {
    package var objects: ObservedAttempts
    /// Where this reading stands, to ask for the changes after it next pass; nil when changes cannot be told.
    package var position: AttemptChangePosition?
    /// The attempts changed since the position asked for; nil when they cannot be told (everything may have).
    package var changed: Set<AttemptKey>?

    package init(objects: ObservedAttempts, position: AttemptChangePosition?, changed: Set<AttemptKey>?) {
        self.objects = objects
        self.position = position
        self.changed = changed
    }
}

/// What one ``Reconciler/runOnce(epoch:)`` did.
package struct ReconcileResult: Sendable, Hashable {
    /// Actions the planner chose, per kind.
    package var planned: [ReconcileAction.Kind: Int] = [:]
    /// Actions that took effect (a conditional write that found the row moved on does not count), per kind.
    package var applied: [ReconcileAction.Kind: Int] = [:]
    /// Actions whose application failed (retried by a later pass).
    package var failed: Int = 0
    package var failSafe: FailSafeReason?
    /// Whether this pass re-read every unfinished job rather than the changes since the cursor.
    package var fullPass: Bool = false
    /// Whether this pass planned over what changed only (``ReconcileFocus``) rather than walking every job.
    package var focused: Bool = false
    package var jobsRead: Int = 0
    /// Per environment: running, admitted and waiting jobs (duty 10).
    package var capacity: [String: EnvironmentCapacity] = [:]
    /// Wall time of the pass, reading through applying (recording the state row excluded).
    package var duration: Duration = .zero
}

/// Keeps Postgres and the cluster in agreement (docs/architecture.md, "The scheduler"), as the leader only.
///
/// Each pass, under the leader's epoch:
/// 1. List the cluster (if any) first, so no object looks newer than its job's claim.
/// 2. Read the jobs: every unfinished one on a full pass (at leadership start and every
///    ``Configuration/fullPassInterval``), else those changed after the `change_seq` cursor, merged into the cached
///    set; plus the rows of jobs that objects name, finished jobs past storage expiry, and the environments.
/// 3. Plan with ``ReconcilePlanner`` (pure): on an incremental pass whose cluster reading tells what changed, over
///    the jobs and objects that can have changed only (``ReconcileFocus``); otherwise by walking every job, which
///    rebuilds the focus.
/// 4. Apply in batches, each in a fenced transaction; cluster effects go through ``ReconcileCluster`` (logs archived
///    before a terminal record, objects deleted after it).
///
/// Transactions commit out of change_seq order, so an incremental read can miss a row committed late below the
/// cursor; the periodic full pass bounds how long.
package final class Reconciler: Service, Sendable {
    package struct Configuration: Sendable {
        /// Time between passes. Default 2 s.
        package var interval: Duration
        /// Time between full passes. Default 60 s.
        package var fullPassInterval: Duration
        /// Jobs per incremental read and actions per transaction. Default 500.
        package var batchSize: Int
        package var planner: ReconcilePlanner.Configuration
        /// Whether each pass ends by writing the `scheduler_state` row (migration 0009) that `/metrics` serves.
        /// Default true.
        package var recordsState: Bool

        package init(
            interval: Duration = .seconds(2), fullPassInterval: Duration = .seconds(60), batchSize: Int = 500,
            planner: ReconcilePlanner.Configuration = .init(), recordsState: Bool = true
        ) {
            self.interval = interval
            self.fullPassInterval = fullPassInterval
            self.batchSize = max(1, batchSize)
            self.planner = planner
            self.recordsState = recordsState
        }
    }

    /// Between passes of one leadership term.
    private struct State: Sendable {
        var epoch: Int64?
        var cursor: Int64?
        var jobs: [JobID: ReconcileJob] = [:]
        var plannerState = ReconcilePlanner.State()
        var lastFullPass: ContinuousClock.Instant?
        /// What a focused plan carries between passes (``ReconcileFocus``); empty (unsure) after a failed pass.
        var focus = ReconcileFocus()
        /// Where the last planned reading of the cluster stood among the informer's changes.
        var clusterPosition: AttemptChangePosition?
    }

    /// One pass's reading, and what changed since the pass before.
    private struct Reading {
        var snapshot: ReconcileSnapshot
        /// Nil: plan over every job.
        var changes: ReconcileChanges?
        var clusterPosition: AttemptChangePosition?
    }

    let configuration: Configuration
    let store: PostgresReconcileStore
    let leadership: SchedulerLeadership
    let cluster: (any ReconcileCluster)?
    let removeFiles: @Sendable ([JobID]) async throws -> Void
    let logger: Logger
    private let state = Mutex(State())

    package init(
        configuration: Configuration = Configuration(), store: PostgresReconcileStore, leadership: SchedulerLeadership,
        cluster: (any ReconcileCluster)?, removeFiles: @escaping @Sendable ([JobID]) async throws -> Void,
        logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.leadership = leadership
        self.cluster = cluster
        self.removeFiles = removeFiles
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.leadership.whileLeader { epoch in
                while !Task.isCancelled {
                    do {
                        let result = try await self.runOnce(epoch: epoch)
                        if !result.planned.isEmpty || result.failSafe != nil {
                            self.logger.info(
                                "reconcile pass",
                                metadata: [
                                    "planned": "\(result.planned)", "applied": "\(result.applied)",
                                    "failed": "\(result.failed)",
                                    "failSafe": "\(result.failSafe.map(\.description) ?? "-")",
                                ])
                        }
                    } catch is LeadershipError {
                        return
                    } catch is CancellationError {
                        return  // shutting down
                    } catch {
                        self.logger.warning("reconcile pass failed", metadata: ["error": "\(error)"])
                    }
                    try await Task.sleep(for: self.configuration.interval)
                }
            }
        }
    }

    /// One pass as the leader of `epoch`. Throws ``LeadershipError`` once the epoch is fenced off.
    @discardableResult
    package func runOnce(epoch: Int64) async throws -> ReconcileResult {
        let started = ContinuousClock.now
        var result = ReconcileResult()
        // Taken out of the state for the pass (so it changes in place), and put back only once the pass planned: a
        // pass that fails before leaves it empty, and the next pass walks every job.
        var focus = state.withLock { state in
            if state.epoch != epoch { state = State(epoch: epoch) }
            defer { state.focus = ReconcileFocus() }
            return state.focus
        }
        let reading = try await readSnapshot(epoch: epoch, focus: focus, result: &result)
        let previous = state.withLock { $0.plannerState }
        let plan = ReconcilePlanner.plan(
            reading.snapshot, configuration: configuration.planner, state: previous, focus: &focus,
            changes: reading.changes)
        state.withLock { state in
            state.plannerState = plan.nextState
            state.focus = focus
            state.clusterPosition = reading.clusterPosition
        }
        result.planned = plan.counts
        result.focused = plan.focused
        result.failSafe = plan.failSafe
        result.capacity = plan.capacity
        try await apply(plan, epoch: epoch, result: &result)
        result.duration = ContinuousClock.now - started
        if configuration.recordsState { try await record(result, epoch: epoch) }
        return result
    }

    /// Leaves the pass in `scheduler_state` for `/metrics`; a failure other than fencing only costs the metrics.
    private func record(_ result: ReconcileResult, epoch: Int64) async throws {
        let record = PostgresReconcileStore.PassRecord(
            leaseName: leadership.configuration.leaseName, holder: leadership.configuration.holderID, epoch: epoch,
            planned: Dictionary(uniqueKeysWithValues: result.planned.map { ($0.key.rawValue, $0.value) }),
            applied: Dictionary(uniqueKeysWithValues: result.applied.map { ($0.key.rawValue, $0.value) }),
            failed: result.failed,
            failSafe: result.failSafe.map { reason in
                switch reason {
                case .clusterUnavailable: ("cluster_unavailable", reason.description)
                case .clusterNearlyEmpty: ("cluster_nearly_empty", reason.description)
                }
            }, fullPass: result.fullPass, jobsRead: result.jobsRead,
            capacity: result.capacity.mapValues { entry in
                .init(
                    running: entry.running, admitted: entry.admitted.count, waiting: entry.waiting.count,
                    maxJobs: entry.maxJobs)
            }, duration: result.duration)
        do {
            try await leadership.withFencedTransaction(epoch: epoch) { tx in
                try await self.store.recordPass(record, in: tx)
            }
        } catch let error as LeadershipError {
            throw error
        } catch let error as CancellationError {
            throw error  // shutting down
        } catch {
            logger.warning("recording the reconcile pass failed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Reading

    private func readSnapshot(
        epoch: Int64, focus: ReconcileFocus, result: inout ReconcileResult
    ) async throws -> Reading {
        let (cursor, full, position) = state.withLock { state -> (Int64?, Bool, AttemptChangePosition?) in
            if state.epoch != epoch {
                state = State(epoch: epoch)
            }
            let due = state.lastFullPass.map { ContinuousClock.now - $0 >= configuration.fullPassInterval } ?? true
            return (due ? nil : state.cursor, due, state.clusterPosition)
        }
        let cluster: ClusterSnapshot
        var clusterReading: ClusterReading?
        if let source = self.cluster {
            do {
                let reading = try await source.listObjects(changedSince: full ? nil : position)
                cluster = .available(reading.objects)
                clusterReading = reading
            } catch {
                cluster = .unavailable(reason: "\(error)")
            }
        } else {
            cluster = .notConfigured
        }
        var changedJobs = Set<JobID>()
        var jobs: [JobID: ReconcileJob]
        var now: Date
        var newCursor: Int64?
        var keptFullPass: ContinuousClock.Instant?
        if full {
            let start = try await store.currentChangeSeq()
            let read = try await store.jobs(changedAfter: nil, limit: 0)
            jobs = Dictionary(read.jobs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            now = read.now
            newCursor = start
            result.jobsRead += read.jobs.count
        } else {
            // Taken out of the state rather than shared, so the changes below apply in place (a shared table would be
            // copied whole first); until it is put back, the next pass must be a full one.
            (jobs, keptFullPass) = state.withLock { state in
                defer {
                    state.jobs = [:]
                    state.lastFullPass = nil
                }
                return (state.jobs, state.lastFullPass)
            }
            newCursor = cursor
            now = Date()
            while true {
                let read = try await store.jobs(changedAfter: newCursor, limit: configuration.batchSize)
                for job in read.jobs {
                    if job.isTerminal { jobs[job.id] = nil } else { jobs[job.id] = job }
                    changedJobs.insert(job.id)
                }
                now = read.now
                newCursor = read.cursor ?? newCursor
                result.jobsRead += read.jobs.count
                if read.jobs.count < configuration.batchSize { break }
            }
        }
        let cached = jobs
        state.withLock { state in
            state.jobs = cached
            state.cursor = newCursor
            state.lastFullPass = full ? .now : keptFullPass
        }
        result.fullPass = full
        // The cached table is shared with the snapshot, not copied; rows read for this pass alone are added apart.
        var snapshotJobs = ReconcileJobs(unfinished: cached)
        // A focused plan needs the changed jobs and attempts; without both it walks every job.
        var changes: ReconcileChanges?
        if !full, let changed = clusterReading?.changed {
            changes = ReconcileChanges(jobs: changedJobs, attempts: changed)
        } else if !full, self.cluster == nil {
            // The local executor: nothing changes but rows and the clock.
            changes = ReconcileChanges(jobs: changedJobs)
        }
        // Rows of jobs the cluster names that are not unfinished (finished, or unknown): of every live object for a
        // full walk, of the objects the focused plan looks at otherwise.
        if case .available(let objects) = cluster {
            var missing = Set<JobID>()
            if let changes {
                for key in focus.attemptsToExamine(changes, jobs: snapshotJobs, now: now)
                where objects.isLive(key) && cached[key.jobID] == nil {
                    missing.insert(key.jobID)
                }
            } else {
                for key in objects.live where cached[key.jobID] == nil { missing.insert(key.jobID) }
            }
            for job in try await store.jobs(ids: Array(missing)) { snapshotJobs.add(job) }
        }
        for job in try await store.expiredResults(limit: configuration.batchSize) { snapshotJobs.add(job) }
        let snapshot = ReconcileSnapshot(
            now: now, jobs: snapshotJobs, cluster: cluster, environments: try await store.environments())
        return Reading(snapshot: snapshot, changes: changes, clusterPosition: clusterReading?.position)
    }

    // MARK: Applying

    private func apply(_ plan: ReconcilePlan, epoch: Int64, result: inout ReconcileResult) async throws {
        let batches = ReconcileBatches(plan.actions)
        try await requeue(batches, epoch: epoch, result: &result)
        // Terminal records: missing step logs archived first, the record (with the attempt's uploads as results)
        // committed, then the objects deleted.
        for chunk in batches.terminations.chunked(configuration.batchSize) {
            try await terminate(chunk, epoch: epoch, result: &result)
        }
        await stopAndDelete(batches, result: &result)
        try await removeAndHide(batches, epoch: epoch, result: &result)
    }

    /// Hand-overs and retries: the job goes back to the dispatcher.
    private func requeue(_ batches: ReconcileBatches, epoch: Int64, result: inout ReconcileResult) async throws {
        for (kind, items, how, reason) in [
            (
                ReconcileAction.Kind.handOver, batches.handOver, PostgresReconcileStore.RequeueKind.expiredLease,
                "lease expired; handed to another worker"
            ),
            (.retryLost, batches.retry, .lostObjects, "cluster objects lost; retrying"),
        ] {
            for chunk in items.chunked(configuration.batchSize) {
                try await attempt(kind, count: chunk.count, result: &result) {
                    try await self.leadership.withFencedTransaction(epoch: epoch) { tx in
                        try await self.store.requeue(Array(chunk), kind: how, reason: reason, in: tx).count
                    }
                }
            }
        }
    }

    /// One batch of terminal records: the step logs publish could not upload are archived first (a job whose logs
    /// cannot be archived waits for the next pass), then the records commit in one fenced transaction, then the
    /// finished attempts' objects are deleted.
    private func terminate(
        _ chunk: ArraySlice<Terminating>, epoch: Int64, result: inout ReconcileResult
    ) async throws {
        var ready: [Terminating] = []
        for item in chunk {
            guard let observed = item.observed, let cluster else {
                ready.append(item)
                continue
            }
            do {
                try await cluster.archiveLogs(observed)
                ready.append(item)
            } catch {
                result.failed += 1
                logger.warning(
                    "archiving logs failed; job left for the next pass",
                    metadata: ["job": "\(item.termination.jobID)", "error": "\(error)"])
            }
        }
        guard !ready.isEmpty else { return }
        do {
            let finished = Set(
                try await leadership.withFencedTransaction(epoch: epoch) { tx in
                    try await self.store.terminate(ready.map(\.termination), in: tx)
                })
            var deletions: [AttemptKey] = []
            for item in ready where finished.contains(item.termination.jobID) {
                result.applied[item.kind, default: 0] += 1
                if item.deleteObjects {
                    deletions.append(AttemptKey(jobID: item.termination.jobID, attempt: item.termination.attempt))
                }
            }
            if !deletions.isEmpty, let cluster {
                do {
                    try await cluster.delete(deletions)
                } catch {
                    // The jobs are finished now, so a later pass deletes them as orphans.
                    logger.warning("deleting objects failed", metadata: ["error": "\(error)"])
                }
            }
        } catch let error as LeadershipError {
            throw error
        } catch {
            result.failed += ready.count
            logger.warning("recording terminal states failed", metadata: ["error": "\(error)"])
        }
    }

    /// Cluster-only actions: attempts to stop and orphans to delete. Failures are counted and left to the next pass.
    private func stopAndDelete(_ batches: ReconcileBatches, result: inout ReconcileResult) async {
        guard let cluster else { return }
        for (key, intervention) in batches.interventions {
            do {
                try await cluster.intervene(key, intervention)
                result.applied[.intervene, default: 0] += 1
            } catch {
                result.failed += 1
                logger.warning("stopping an attempt failed", metadata: ["job": "\(key.jobID)", "error": "\(error)"])
            }
        }
        guard !batches.orphans.isEmpty else { return }
        do {
            try await cluster.delete(batches.orphans)
            result.applied[.deleteOrphan, default: 0] += batches.orphans.count
        } catch {
            result.failed += batches.orphans.count
            logger.warning("deleting orphaned objects failed", metadata: ["error": "\(error)"])
        }
    }

    /// Expired results and stale environments.
    private func removeAndHide(_ batches: ReconcileBatches, epoch: Int64, result: inout ReconcileResult) async throws {
        for chunk in batches.removals.chunked(configuration.batchSize) {
            try await attempt(.removeResults, count: chunk.count, result: &result) {
                try await self.leadership.withFencedTransaction(epoch: epoch) { tx in
                    try await self.store.removeResults(Array(chunk), removeFiles: self.removeFiles, in: tx).count
                }
            }
        }
        for (kind, ids, hidden) in [
            (ReconcileAction.Kind.hideEnvironment, batches.hide, true), (.showEnvironment, batches.show, false),
        ]
        where !ids.isEmpty {
            try await attempt(kind, count: ids.count, result: &result) {
                try await self.leadership.withFencedTransaction(epoch: epoch) { tx in
                    try await self.store.setHidden(
                        ids, hidden: hidden, staleAfter: self.configuration.planner.environmentStaleAfter, in: tx)
                }
            }
        }
    }

    /// Runs one fenced batch; a fencing failure ends the pass, any other failure is counted and left to the next.
    private func attempt(
        _ kind: ReconcileAction.Kind, count: Int, result: inout ReconcileResult, _ body: () async throws -> Int
    ) async throws {
        do {
            result.applied[kind, default: 0] += try await body()
        } catch let error as LeadershipError {
            throw error
        } catch {
            result.failed += count
            logger.warning("reconcile batch failed", metadata: ["kind": "\(kind)", "error": "\(error)"])
        }
    }
}
