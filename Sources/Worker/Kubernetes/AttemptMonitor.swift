import Domain
import Foundation
import Kubernetes
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Follows every attempt this worker runs. Each monitored attempt is a value in one state machine (a few hundred
/// bytes), fed by the shared ``AttemptInformer``, by interruptions from the lease keeper, and by one timer for every
/// attempt; no task waits per attempt. Each change is read with `AttemptOutcome.assess` (the one reading the
/// scheduler uses too), which yields the progress to record, what to delete, and the verdict; once the verdict is
/// settled (or the attempt is interrupted) the attempt's end handler runs.
///
/// Effects run outside the state machine on a few long-lived tasks: Postgres progress writes (one at a time per
/// attempt, in order), deletions (the client's rate limiter puts them before new launches), and end handlers (which
/// read the results and record the end), each kind on tasks of its own so that finishing never waits behind
/// starting.
package final class AttemptMonitor: Service, Sendable {
    package struct Configuration: Sendable {
        /// Image pull and container creation problems end the attempt after this long. Default 300 s.
        package var startTimeout: Duration = .seconds(300)
        /// How long a decided attempt waits for its publish step before it is recorded anyway. Default 150 s.
        package var settleTimeout: Duration = .seconds(150)
        /// Progress writes and deletions running at once. Default 8 each.
        package var concurrency = 8
        /// End handlers (reading an ended attempt's results and recording its end) running at once. Default 16.
        package var endingConcurrency = 16
        /// Tombstones (attempts whose objects are all gone) are dropped from the informer after this long.
        /// Default 5 minutes.
        package var tombstoneRetention: Duration = .seconds(300)

        package init() {}
    }

    /// How monitoring an attempt ended.
    enum Ending: Sendable {
        case verdict(AttemptOutcome.Verdict)
        case interrupted(AttemptInterruption)
        case superseded(String)
    }

    /// One monitored attempt: the state machine's value.
    struct Tracked {
        var algorithmTimeLimit: Int
        var recorded: Domain.JobStatus
        var writing: Domain.JobStatus?
        var stopRequested = false
        var deletedAttempt = false
        var deletedAlgorithmPod = false
        /// When a verdict was first reached without being settled.
        var decidedAt: Date?
        /// The earliest time the attempt is already due to be looked at again (one timer entry per attempt).
        var wakeAt: Date?
        var progress: @Sendable (Domain.JobStatus) async throws -> Void
        var onEnd: EndHandler
    }

    typealias EndHandler = @Sendable (Ending) async -> Void

    enum Effect: Sendable {
        case record(AttemptKey, Domain.JobStatus, @Sendable (Domain.JobStatus) async throws -> Void)
        case delete(AttemptKey, algorithmPodOnly: Bool)
    }

    private struct State {
        var tracked: [AttemptKey: Tracked] = [:]
        /// Attempts to look at again, by time; stale entries are harmless (an evaluation that changes nothing).
        var timers = DueHeap<AttemptKey>()
        // Queues that may hold thousands after a burst: O(1) at both ends.
        var records = CircularBuffer<Effect>()
        var deletes = CircularBuffer<Effect>()
        var endings = CircularBuffer<(EndHandler, Ending)>()
        var recordWaiters: [CheckedContinuation<Void, Never>] = []
        var deleteWaiters: [CheckedContinuation<Void, Never>] = []
        var endingWaiters: [CheckedContinuation<Void, Never>] = []
        /// Shutting down: attempts still followed end as interrupted, then the end handlers finish what is queued.
        var draining = false
        var stopped = false
    }

    let configuration: Configuration
    let informer: AttemptInformer
    let client: KubernetesClient
    let namespace: String
    let logger: Logger
    private let state = Mutex(State())

    package init(
        informer: AttemptInformer, client: KubernetesClient, namespace: String, configuration: Configuration,
        logger: Logger
    ) {
        self.informer = informer
        self.client = client
        self.namespace = namespace
        self.configuration = configuration
        self.logger = logger
        informer.setListener { [weak self] keys in self?.changed(keys) }
    }

    package var monitoredCount: Int { state.withLock { $0.tracked.count } }

    package func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.informer.run() }
            group.addTask { await self.tick() }
            for _ in 0..<max(1, configuration.concurrency) {
                group.addTask { await self.perform(deletes: false) }
                group.addTask { await self.perform(deletes: true) }
            }
            await withDiscardingTaskGroup { ending in
                for _ in 0..<max(1, configuration.endingConcurrency) {
                    ending.addTask { await self.performEndings() }
                }
                try? await gracefulShutdown()
                // Attempts still followed now belong to jobs the worker hands back: their objects keep running.
                let waiters = state.withLock { state in
                    state.draining = true
                    for (_, tracked) in state.tracked { state.endings.append((tracked.onEnd, .interrupted(.shutdown))) }
                    state.tracked = [:]
                    defer { state.endingWaiters = [] }
                    return state.endingWaiters
                }
                for waiter in waiters { waiter.resume() }
            }
            let waiters = state.withLock { state in
                state.stopped = true
                defer {
                    state.recordWaiters = []
                    state.deleteWaiters = []
                }
                return state.recordWaiters + state.deleteWaiters
            }
            for waiter in waiters { waiter.resume() }
            group.cancelAll()
        }
    }

    // MARK: Monitoring

    /// Follows the attempt until its end is settled or it is interrupted, then calls `onEnd` (once, on one of the
    /// monitor's tasks). Returns at once.
    func follow(
        _ key: AttemptKey, status: Domain.JobStatus, algorithmTimeLimit: Int, control: AttemptControl,
        progress: @escaping @Sendable (Domain.JobStatus) async throws -> Void, onEnd: @escaping EndHandler
    ) {
        let registered = state.withLock { state -> Bool in
            guard !state.draining else { return false }
            state.tracked[key] = Tracked(
                algorithmTimeLimit: algorithmTimeLimit, recorded: status, progress: progress, onEnd: onEnd)
            return true
        }
        guard registered else {
            end([(onEnd, .interrupted(.shutdown))])
            return
        }
        control.onInterrupt { [weak self] interruption in self?.interrupt(key, interruption) }
        evaluate([key])
    }

    /// Queues end handlers for the ending tasks.
    private func end(_ endings: [(EndHandler, Ending)]) {
        guard !endings.isEmpty else { return }
        let waiters = state.withLock { state in
            state.endings.append(contentsOf: endings)
            let count = min(endings.count, state.endingWaiters.count)
            defer { state.endingWaiters.removeFirst(count) }
            return Array(state.endingWaiters.prefix(count))
        }
        for waiter in waiters { waiter.resume() }
    }

    /// The informer saw these attempts change.
    func changed(_ keys: [AttemptKey]) {
        let monitored = state.withLock { state in keys.filter { state.tracked[$0] != nil } }
        if !monitored.isEmpty { evaluate(monitored) }
    }

    private func interrupt(_ key: AttemptKey, _ interruption: AttemptInterruption) {
        let ending: (EndHandler, Ending)? = state.withLock { state in
            guard var tracked = state.tracked[key] else { return nil }
            switch interruption {
            case .stopRequested:
                tracked.stopRequested = true
                state.tracked[key] = tracked
                return nil
            case .leaseLost, .shutdown:
                state.tracked[key] = nil
                return (tracked.onEnd, .interrupted(interruption))
            }
        }
        if let ending {
            end([ending])
        } else if interruption == .stopRequested {
            evaluate([key])
        }
    }

    /// Reads each attempt with the outcome rules and acts on the result.
    private func evaluate(_ keys: [AttemptKey]) {
        let now = Date()
        let observed = informer.observed(keys)
        var byKey: [AttemptKey: ObservedAttempt] = [:]
        for attempt in observed { byKey[attempt.key] = attempt }
        var endings: [(EndHandler, Ending)] = []
        var wake: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            for key in keys {
                guard var tracked = state.tracked[key] else { continue }
                let observation = byKey[key]?.observation ?? AttemptObservation()
                let context = AttemptOutcome.Context(
                    now: now, stopRequested: tracked.stopRequested,
                    algorithmTimeLimit: tracked.algorithmTimeLimit,
                    startTimeout: configuration.startTimeout / .seconds(1))
                let assessment = AttemptOutcome.assess(observation, context)
                switch assessment.intervention {
                case .deleteAttempt where !tracked.deletedAttempt:
                    tracked.deletedAttempt = true
                    state.deletes.append(.delete(key, algorithmPodOnly: false))
                case .deleteAlgorithmPod where !tracked.deletedAlgorithmPod && !tracked.deletedAttempt:
                    tracked.deletedAlgorithmPod = true
                    state.deletes.append(.delete(key, algorithmPodOnly: true))
                default:
                    break
                }
                // A job that ran to its end shows every progress status before its terminal one, as on the local
                // executor; a failed step goes straight to its terminal status.
                let ranThrough = assessment.verdict.map { $0.status == .finished && $0.outcome != .stopped } ?? true
                let next = ranThrough ? Self.nextStatus(from: tracked.recorded, toward: assessment.progress) : nil
                if let verdict = assessment.verdict {
                    let decidedAt = tracked.decidedAt ?? now
                    let gaveUp = now.timeIntervalSince(decidedAt) >= configuration.settleTimeout / .seconds(1)
                    if (assessment.settled && next == nil && tracked.writing == nil) || gaveUp {
                        state.tracked[key] = nil
                        endings.append((tracked.onEnd, .verdict(verdict)))
                        continue
                    }
                    tracked.decidedAt = decidedAt
                    Self.wake(
                        &tracked, &state.timers, key,
                        decidedAt.addingTimeInterval(configuration.settleTimeout / .seconds(1)), now: now)
                }
                if tracked.writing == nil, let next {
                    tracked.writing = next
                    state.records.append(.record(key, next, tracked.progress))
                }
                if let due = assessment.reassessAt { Self.wake(&tracked, &state.timers, key, due, now: now) }
                state.tracked[key] = tracked
            }
            wake += state.recordWaiters.prefix(state.records.count)
            state.recordWaiters.removeFirst(min(state.records.count, state.recordWaiters.count))
            wake += state.deleteWaiters.prefix(state.deletes.count)
            state.deleteWaiters.removeFirst(min(state.deletes.count, state.deleteWaiters.count))
        }
        for waiter in wake { waiter.resume() }
        end(endings)
    }

    /// Puts the attempt on the timer for `due` unless it is already due earlier.
    static func wake(
        _ tracked: inout Tracked, _ timers: inout DueHeap<AttemptKey>, _ key: AttemptKey, _ due: Date, now: Date
    ) {
        if let scheduled = tracked.wakeAt, scheduled > now, scheduled <= due { return }
        tracked.wakeAt = due
        timers.push(due, key)
    }

    /// The next progress status on the way from `recorded` to `target`, or nil when the job is there already: every
    /// step of Ocean's 20 → 30 → 40 → 60 is recorded, even when the cluster went through several at once.
    static func nextStatus(from recorded: Domain.JobStatus, toward target: Domain.JobStatus) -> Domain.JobStatus? {
        let order: [Domain.JobStatus] = [
            .configuringVolumes, .provisioningSuccess, .runningAlgorithm, .publishingResults,
        ]
        guard let current = order.firstIndex(of: recorded), let wanted = order.firstIndex(of: target),
            wanted > current
        else { return nil }
        return order[current + 1]
    }

    // MARK: Effects

    /// One of the long-lived effect tasks: takes the next record or delete and performs it.
    private func perform(deletes: Bool) async {
        while true {
            let effect = state.withLock { state -> Effect? in
                if deletes { return state.deletes.isEmpty ? nil : state.deletes.removeFirst() }
                return state.records.isEmpty ? nil : state.records.removeFirst()
            }
            if let effect {
                await execute(effect)
                continue
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.stopped || (deletes ? !state.deletes.isEmpty : !state.records.isEmpty) { return true }
                    if deletes {
                        state.deleteWaiters.append(continuation)
                    } else {
                        state.recordWaiters.append(continuation)
                    }
                    return false
                }
                if now { continuation.resume() }
            }
            if state.withLock({ $0.stopped }) { return }
        }
    }

    /// One of the ending tasks: runs queued end handlers; when draining, returns once the queue is empty.
    private func performEndings() async {
        while true {
            let next = state.withLock { state -> (EndHandler, Ending)?? in
                if !state.endings.isEmpty { return .some(state.endings.removeFirst()) }
                return state.draining ? .some(nil) : nil
            }
            switch next {
            case .some(.some(let (handler, ending))):
                await handler(ending)
                continue
            case .some(.none):
                return
            case .none:
                break
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.draining || !state.endings.isEmpty { return true }
                    state.endingWaiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
    }

    private func execute(_ effect: Effect) async {
        switch effect {
        case .record(let key, let status, let progress):
            var retry = false
            do {
                try await progress(status)
                state.withLock { state in
                    state.tracked[key]?.recorded = status
                    state.tracked[key]?.writing = nil
                }
            } catch let error as AttemptSuperseded {
                if let onEnd = state.withLock({ $0.tracked.removeValue(forKey: key)?.onEnd }) {
                    end([(onEnd, .superseded(error.reason))])
                }
                return
            } catch {
                logger.warning(
                    "recording progress failed; trying again",
                    metadata: ["job": "\(key.jobID)", "status": "\(status.rawValue)", "error": "\(error)"])
                state.withLock { $0.tracked[key]?.writing = nil }
                retry = true
            }
            if retry {
                state.withLock { $0.timers.push(Date().addingTimeInterval(1), key) }
            } else {
                evaluate([key])
            }
        case .delete(let key, let algorithmPodOnly):
            do {
                if algorithmPodOnly {
                    try await client.delete(
                        Pod.self, name: ClusterNaming.algorithmPodName(jobID: key.jobID, attempt: key.attempt),
                        namespace: namespace, propagationPolicy: .background)
                } else {
                    try await client.delete(
                        Kubernetes.Job.self, name: ClusterNaming.attemptName(jobID: key.jobID, attempt: key.attempt),
                        namespace: namespace, propagationPolicy: .background)
                }
            } catch let error as KubernetesError where error.code == .notFound {
            } catch {
                logger.warning(
                    "deleting an attempt's objects failed; trying again",
                    metadata: ["job": "\(key.jobID)", "error": "\(error)"])
                state.withLock { state in
                    if algorithmPodOnly {
                        state.tracked[key]?.deletedAlgorithmPod = false
                    } else {
                        state.tracked[key]?.deletedAttempt = false
                    }
                    state.timers.push(Date().addingTimeInterval(2), key)
                }
            }
        }
    }

    /// Deletes a recorded attempt's objects (the third and last write of an attempt): after the terminal record, so a
    /// crash in between leaves objects of a finished job, which the scheduler removes as orphans.
    func deleteRecorded(_ key: AttemptKey) async {
        do {
            try await client.delete(
                Kubernetes.Job.self, name: ClusterNaming.attemptName(jobID: key.jobID, attempt: key.attempt),
                namespace: namespace, propagationPolicy: .background)
        } catch let error as KubernetesError where error.code == .notFound {
        } catch {
            logger.info(
                "deleting a finished attempt failed; the scheduler removes it as an orphan",
                metadata: ["job": "\(key.jobID)", "error": "\(error)"])
        }
    }

    // MARK: Time

    /// Time limits, start time-outs and give-ups are about time passing, not events: one timer for all attempts.
    private func tick() async {
        var lastPrune = ContinuousClock.now
        while !Task.isCancelled {
            do { try await Task.sleep(for: .milliseconds(250)) } catch { return }
            let now = Date()
            let due = state.withLock { state in state.timers.popDue(now) }
            if !due.isEmpty { evaluate(Array(Set(due))) }
            if ContinuousClock.now - lastPrune > .seconds(30) {
                lastPrune = .now
                informer.prune(goneBefore: now.addingTimeInterval(-(configuration.tombstoneRetention / .seconds(1))))
                // What launching and ending attempts freed goes back to the system, so that resident memory follows
                // the attempts monitored now rather than the largest burst so far.
                FreeMemory.returnToSystem()
            }
        }
    }
}
