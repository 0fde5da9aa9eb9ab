import Domain
import Foundation
import Logging
import Persistence
import ServiceLifecycle
import Synchronization

/// Makes one scheduler of many the active one, with a fencing epoch (docs/architecture.md, "The scheduler").
///
/// The `scheduler_lease` row names the holder, an epoch and `lease_until` on the database clock. A standby takes the
/// row when it is free, expired or released, incrementing the epoch in the same statement; the holder renews it every
/// ``Configuration/renewInterval``. A leader that cannot renew in time steps down by its own monotonic clock before
/// the lease can have expired (see ``LeadershipStateMachine``), so two processes never both believe they lead; and
/// every write a leader makes goes through ``withFencedTransaction(epoch:_:)``, so even a leader paused past its lease
/// (GC, SIGSTOP, a partition) cannot land a write after the takeover. On graceful shutdown the lease is released and
/// a standby takes over at its next poll instead of after expiry.
///
/// Other services follow ``roleChanges()`` or use ``whileLeader(_:)``, which cancels their work on step-down.
package final class SchedulerLeadership: Service, Sendable {
    package typealias Role = LeadershipStateMachine.Role

    package struct Configuration: Sendable {
        /// The `scheduler_lease` row. Default "scheduler".
        package var leaseName: String
        /// How long a lease lasts after each renewal, on the database clock. Default 10 s.
        package var leaseDuration: Duration
        /// Time between renewals while leading. Default a third of the lease, so two renewals may fail before
        /// the leader must step down.
        package var renewInterval: Duration
        /// Time between attempts to take the lease while standing by. Default the renew interval; a standby takes
        /// over at most `leaseDuration + pollInterval` after the leader's last renewal.
        package var pollInterval: Duration
        /// How much earlier than the lease's end a leader that cannot renew steps down (clock-rate drift between
        /// hosts). Default a tenth of the lease.
        package var safetyMargin: Duration
        /// Who holds the lease: unique per process, so a restarted scheduler is a new holder. Default host, pid and
        /// a random suffix.
        package var holderID: String

        package init(
            leaseName: String = "scheduler", leaseDuration: Duration = .seconds(10), renewInterval: Duration? = nil,
            pollInterval: Duration? = nil, safetyMargin: Duration? = nil, holderID: String? = nil
        ) {
            self.leaseName = leaseName
            self.leaseDuration = leaseDuration
            let renew = renewInterval ?? leaseDuration / 3
            self.renewInterval = renew
            self.pollInterval = pollInterval ?? renew
            self.safetyMargin = safetyMargin ?? leaseDuration / 10
            self.holderID = holderID ?? Self.defaultHolderID()
        }

        private static func defaultHolderID() -> String {
            let info = ProcessInfo.processInfo
            return "\(info.hostName)-\(info.processIdentifier)-\(UUID().uuidString.prefix(8).lowercased())"
        }
    }

    private struct Shared: Sendable {
        var machine: LeadershipStateMachine
        var subscribers: [Int: AsyncStream<Role>.Continuation] = [:]
        var nextSubscriber = 0
        var finished = false
        var stopRequested = false
        var stopWaiter: CheckedContinuation<Void, Never>?
        var releaseOnExit = true
    }

    package let configuration: Configuration
    let lease: PostgresLeaseStore
    let logger: Logger
    private let shared: Mutex<Shared>

    package init(configuration: Configuration = Configuration(), client: PostgresClient, logger: Logger) {
        self.configuration = configuration
        self.lease = PostgresLeaseStore(
            client: client, name: configuration.leaseName, holderID: configuration.holderID)
        var logger = logger
        logger[metadataKey: "scheduler.lease.holder"] = "\(configuration.holderID)"
        self.logger = logger
        self.shared = Mutex(
            Shared(
                machine: LeadershipStateMachine(
                    leaseDuration: configuration.leaseDuration, safetyMargin: configuration.safetyMargin)))
    }

    // MARK: Observing

    /// The role right now.
    package var role: Role { shared.withLock { $0.machine.role } }

    /// The current role first, then every change, until the service stops. Each call is a new subscription.
    package func roleChanges() -> AsyncStream<Role> {
        let (stream, continuation) = AsyncStream.makeStream(of: Role.self, bufferingPolicy: .unbounded)
        let id: Int? = shared.withLock { shared in
            continuation.yield(shared.machine.role)
            guard !shared.finished else { return nil }
            let id = shared.nextSubscriber
            shared.nextSubscriber += 1
            shared.subscribers[id] = continuation
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.shared.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// Runs `work` with the epoch each time this process becomes leader, and cancels it as soon as it steps down
    /// (lost lease, renewal failure, shutdown). Returns when the leadership service stops. `work` must fence its
    /// writes with the epoch it was given: cancellation is prompt but not instantaneous.
    package func whileLeader(_ work: @escaping @Sendable (_ epoch: Int64) async throws -> Void) async {
        for await role in roleChanges() {
            guard case .leader(let epoch) = role else { continue }
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await work(epoch)
                    } catch is CancellationError {
                        // stepped down
                    } catch {
                        self.logger.warning("leader work failed", metadata: ["error": "\(error)", "epoch": "\(epoch)"])
                    }
                }
                group.addTask {
                    for await current in self.roleChanges() where current != role { return }
                }
                await group.next()
                group.cancelAll()
            }
        }
    }

    // MARK: Fencing

    /// Runs `body` in a transaction that first checks, and locks until commit, that the lease row still names this
    /// holder at `epoch` and has not expired. A takeover waits for this transaction: the caller's writes commit before
    /// the new epoch exists, or not at all. Throws ``LeadershipError/Code/fenced`` otherwise, and nothing of `body`
    /// lands.
    @discardableResult
    package func withFencedTransaction<T: Sendable>(
        epoch: Int64, _ body: (PostgresTransaction) async throws -> T
    ) async throws -> T {
        let leaseName = configuration.leaseName
        return try await lease.withFencedTransaction(
            epoch: epoch, fenced: { LeadershipError.fenced(leaseName: leaseName, epoch: epoch) }, body)
    }

    // MARK: Running

    package func run() async throws {
        // The loop runs until stop(), graceful shutdown or cancellation, whichever comes first.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.loop() }
            group.addTask { await self.stopped() }
            await withGracefulShutdownHandler {
                await group.next()
            } onGracefulShutdown: {
                self.requestStop()
            }
            group.cancelAll()
        }
        let (epoch, release) = shared.withLock { ($0.machine.role.epoch, $0.releaseOnExit) }
        update { $0.resign() }
        if let epoch, release {
            // Not cancelled with run(): a released lease lets the standby take over now instead of after expiry.
            await Task { await self.release(epoch: epoch) }.value
        }
        let subscribers = shared.withLock { shared in
            shared.finished = true
            defer { shared.subscribers = [:] }
            return Array(shared.subscribers.values)
        }
        // Outside the lock: finishing runs each stream's onTermination, which takes it.
        for continuation in subscribers { continuation.finish() }
    }

    /// Stops the service as graceful shutdown does. With `release: false` the lease is left to expire, as if the
    /// process had died (for tests and chaos drills).
    package func stop(release: Bool = true) {
        shared.withLock { $0.releaseOnExit = release }
        requestStop()
    }

    private func requestStop() {
        let waiter = shared.withLock { shared in
            shared.stopRequested = true
            defer { shared.stopWaiter = nil }
            return shared.stopWaiter
        }
        waiter?.resume()
    }

    /// Returns once a stop is requested (also one requested before `run()`), or when cancelled.
    private func stopped() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = shared.withLock { shared in
                    if shared.stopRequested { return true }
                    shared.stopWaiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            requestStop()
        }
    }

    private func loop() async {
        while !Task.isCancelled {
            let now = ContinuousClock.now
            var step = LeadershipStateMachine.Step.acquire
            update { machine in
                let (next, action) = machine.nextStep(now: now)
                step = next
                return action
            }
            switch step {
            case .acquire:
                let epoch: Int64?
                do {
                    epoch = try await acquire()
                } catch {
                    logger.warning("taking the scheduler lease failed", metadata: ["error": "\(error)"])
                    epoch = nil
                }
                update { $0.acquired(epoch: epoch, sentAt: now) }
            case .renew(let epoch, let budget):
                do {
                    let held = try await withDeadline(budget, operation: "scheduler lease renewal") {
                        try await self.renew(epoch: epoch)
                    }
                    update { held ? $0.renewed(sentAt: now) : $0.lost() }
                } catch {
                    if Task.isCancelled { break }
                    logger.warning("renewing the scheduler lease failed", metadata: ["error": "\(error)"])
                    update { $0.renewalFailed(now: ContinuousClock.now) }
                }
            }
            let (role, validUntil) = shared.withLock { ($0.machine.role, $0.machine.validUntil) }
            var wake =
                ContinuousClock.now + (role == .standby ? configuration.pollInterval : configuration.renewInterval)
            // Wake in time to step down even when the renewal loop falls behind.
            if let validUntil, validUntil < wake { wake = validUntil }
            try? await Task.sleep(until: wake, clock: .continuous)
        }
    }

    /// Applies an event to the state machine and tells subscribers about a role change in the same critical section,
    /// so a new subscriber sees each role exactly once.
    private func update(_ event: (inout LeadershipStateMachine) -> LeadershipStateMachine.Action) {
        let action = shared.withLock { shared in
            let action = event(&shared.machine)
            if case .announce(let role, _) = action {
                for continuation in shared.subscribers.values { continuation.yield(role) }
            }
            return action
        }
        guard case .announce(let role, let reason) = action else { return }
        switch role {
        case .leader(let epoch):
            logger.info(
                "became the active scheduler", metadata: ["scheduler.epoch": "\(epoch)", "reason": "\(reason)"])
        case .standby:
            logger.warning("stepped down as the active scheduler", metadata: ["reason": "\(reason)"])
        }
    }

    // MARK: The lease

    private func acquire() async throws -> Int64? {
        try await lease.acquire(duration: configuration.leaseDuration)
    }

    private func renew(epoch: Int64) async throws -> Bool {
        try await lease.renew(epoch: epoch, duration: configuration.leaseDuration)
    }

    /// Frees the lease so a standby takes over at its next poll. Bounded by the lease: after that it has expired
    /// anyway.
    private func release(epoch: Int64) async {
        do {
            let lease = self.lease
            try await withDeadline(configuration.leaseDuration, operation: "scheduler lease release") {
                try await lease.release(epoch: epoch)
            }
            logger.info("released the scheduler lease", metadata: ["scheduler.epoch": "\(epoch)"])
        } catch {
            logger.warning("releasing the scheduler lease failed", metadata: ["error": "\(error)"])
        }
    }
}
