import AMQP
import Domain
import Foundation
import Logging
import NIOConcurrencyHelpers
import Persistence
import ServiceLifecycle

/// Consumes job messages, claims each job in Postgres, runs it with the executor, and records every status
/// change fenced by the claim it holds (docs/architecture.md, "A job's life in the code", "Fencing").
///
/// Only admitted jobs are published (the scheduler's dispatcher admits no more than the live workers' free slots),
/// and this worker takes deliveries only while it has a free slot (``SlotGate``), so a job never waits at a busy
/// worker while another has room. The worker registers its slots in Postgres for the dispatcher and refreshes the
/// registration while it runs. A delivery is acknowledged once the claim is durable; the worker never holds a
/// delivery for the life of a job. A message for a job that is finished, not admitted, or held by a live worker is
/// dropped.
package final class JobWorker: Service, Sendable {
    let configuration: WorkerConfiguration
    let amqp: AMQPClient
    let store: PostgresJobStore
    let executor: any Executor
    let logger: Logger
    let slots: WorkerSlots
    /// Claims in flight at once.
    let claims: SlotPool
    let leases: LeaseKeeper

    package init(
        configuration: WorkerConfiguration, amqp: AMQPClient, store: PostgresJobStore, executor: any Executor,
        logger: Logger
    ) {
        self.configuration = configuration
        self.amqp = amqp
        self.store = store
        self.executor = executor
        self.logger = logger
        self.slots = WorkerSlots(
            SlotGate(capacity: configuration.slots, maximumPrefetch: configuration.maximumPrefetch))
        self.claims = SlotPool(count: 4)
        self.leases = LeaseKeeper(
            store: store, workerID: configuration.workerID, lease: configuration.leaseDuration, logger: logger)
    }

    package func run() async throws {
        try await store.upsertEnvironments(configuration.environments)
        try await register()
        logger.info(
            "worker started",
            metadata: ["worker": "\(configuration.workerID)", "slots": "\(configuration.slots)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.leases.run() }
            group.addTask { await self.keepRegistered() }
            await withDiscardingTaskGroup { serving in
                for environment in configuration.environments {
                    serving.addTask { await self.serve(environment) }
                }
            }
            // Every job has ended or been handed back: nothing is left to renew.
            group.cancelAll()
        }
        do {
            try await store.unregisterWorker(id: configuration.workerID)
        } catch {
            logger.warning("could not remove the worker's registration; it lapses", metadata: ["error": "\(error)"])
        }
        logger.info("worker stopped", metadata: ["worker": "\(configuration.workerID)"])
    }

    func register() async throws {
        try await store.registerWorker(
            id: configuration.workerID, environments: configuration.environments.map(\.id),
            slots: configuration.slots, executor: configuration.executorKind)
    }

    /// Refreshes the worker's registration as often as leases are renewed, until cancelled; registers again if the
    /// row was removed (the scheduler removes rows of workers that look dead).
    func keepRegistered() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: min(configuration.leaseDuration / 3, .seconds(5)))
                if try await !store.refreshWorker(id: configuration.workerID) { try await register() }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("refreshing the worker's registration failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Consumes one environment's queue until graceful shutdown, taking a delivery only while a slot is free; jobs it
    /// launched run on in the same task group until they finish or their grace period ends.
    func serve(_ environment: ComputeEnvironment) async {
        let queue = JobQueueNames.queue(environment: environment.id)
        let consumer = amqp.consume(queue: queue, prefetch: slots.initialPrefetch)
        slots.add(consumer)
        await withDiscardingTaskGroup { jobs in
            do {
                for try await delivery in consumer.cancelOnGracefulShutdown() {
                    guard slots.take() else {
                        // Sent before the broker processed the pause: give it to a worker with room.
                        try? await delivery.nack(requeue: true)
                        continue
                    }
                    // Claims run concurrently (each is a short transaction), so one slow claim never holds back the
                    // deliveries behind it; a few at a time, so a burst does not exhaust the Postgres pool.
                    jobs.addTask {
                        var claimed: Job?
                        if (try? await self.claims.acquire()) != nil {
                            claimed = await self.claim(delivery)
                            await self.claims.release()
                        } else {
                            try? await delivery.nack(requeue: true)
                        }
                        if let job = claimed {
                            await self.runJob(job, environment: environment)
                            self.slots.stopRunning(job.id)
                        }
                        self.slots.release()
                    }
                }
            } catch {
                logger.error("consuming stopped", metadata: ["queue": "\(queue)", "error": "\(error)"])
            }
        }
    }

    /// Claims the delivery's job. Returns the claimed job (delivery acknowledged), or nil when there is nothing to
    /// run here (delivery acknowledged, or given back when Postgres is unavailable).
    func claim(_ delivery: AMQPDelivery) async -> Job? {
        guard let message = try? JSONDecoder().decode(JobMessage.self, from: Data(delivery.message.body)) else {
            logger.error(
                "undecodable job message; dead-lettering it", metadata: ["routing_key": "\(delivery.routingKey)"])
            try? await delivery.reject(requeue: false)
            return nil
        }
        var logger = self.logger
        logger[metadataKey: "job"] = "\(message.jobId)"
        if let requestID = delivery.message.headers[JobMessage.Header.requestID] {
            logger[metadataKey: "request_id"] = "\(requestID)"
        }
        if let traceparent = delivery.message.headers[JobMessage.Header.traceparent] {
            logger[metadataKey: "traceparent"] = "\(traceparent)"
        }
        var transientFailures = 0
        while true {
            let decision: ClaimDecision
            do {
                let result = try await store.claim(
                    jobID: message.jobId, workerID: configuration.workerID, lease: configuration.leaseDuration)
                decision = ClaimDecision.decide(
                    result, workerID: configuration.workerID, runningHere: slots.isRunning(message.jobId))
            } catch let error as PostgresError
                where (error.isRetriable || error.code == .acquireTimeout) && transientFailures < 3
            {
                // A short outage or a busy pool: try again before giving the message back, since every
                // redelivery counts against the queue's delivery limit. If the claim did commit and only its reply
                // was lost, the retry finds this worker's own lease (``ClaimDecision/runOwnClaim``).
                transientFailures += 1
                logger.info("claim failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500 * transientFailures))
                continue
            } catch {
                // Postgres is unavailable: give the message back and let it come round again.
                logger.warning("claim failed; requeueing", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                try? await delivery.nack(requeue: true)
                return nil
            }
            var job: Job
            switch decision {
            case .run(let claimed):
                job = claimed
            case .runOwnClaim:
                guard let own = try? await store.job(message.jobId), own.workerID == configuration.workerID,
                    own.finishedAt == nil
                else { continue }
                job = own
                logger.info("the claim had committed though its reply was lost; running the job")
            case .drop(let reason):
                logger.debug("dropping job message", metadata: ["reason": "\(reason)"])
                try? await delivery.ack()
                return nil
            }
            // Two deliveries of one job may reach this worker at once; exactly one of them runs it.
            guard slots.startRunning(job.id) else {
                logger.debug("dropping job message", metadata: ["reason": "this worker already runs the job"])
                try? await delivery.ack()
                return nil
            }
            if configuration.exitAfterClaimForTesting {
                logger.critical("exiting after claim, before ack (fault injection)")
                exit(75)
            }
            do {
                try await delivery.ack()
            } catch {
                // The broker will redeliver; the claim we hold makes the redelivery a no-op.
                logger.warning("ack failed after claim", metadata: ["error": "\(error)"])
            }
            job.workerID = configuration.workerID
            logger.info("job claimed", metadata: ["attempt": "\(job.attempt)"])
            return job
        }
    }

    /// Runs one claimed attempt to its end: renews the lease meanwhile, records progress, and writes the terminal
    /// status. A stop request (seen at lease renewal) cancels the execution, whose logs are still published, and
    /// records it as stopped. At shutdown, a job still running after the grace period is handed back to the queue.
    func runJob(_ job: Job, environment: ComputeEnvironment) async {
        var logger = self.logger
        logger[metadataKey: "job"] = "\(job.id)"
        logger[metadataKey: "attempt"] = "\(job.attempt)"
        let ending: JobEnding = await withTaskGroup(of: AttemptEvent.self) { group in
            group.addTask {
                do {
                    let result = try await self.executor.execute(job: job, environment: environment) { status in
                        try await self.recordProgress(job, status: status)
                    }
                    return .executed(result)
                } catch let error as FencingError {
                    return .lostLease(error.description)
                } catch is CancellationError {
                    return .cancelled
                } catch {
                    return .executed(
                        ExecutionResult(
                            status: .finished, outcome: .failed, failureReason: "execution failed: \(error)"))
                }
            }
            group.addTask { await self.keepLease(job) }
            group.addTask {
                do {
                    try await gracefulShutdown()
                    try await Task.sleep(for: self.configuration.shutdownGracePeriod)
                    return .shutdownGraceOver
                } catch {
                    return .watcherEnded
                }
            }
            // The first decisive event wins; cancelling the group then ends the watchers and the execution, which
            // still returns its (stopped) result with the logs published.
            var decided: JobEnding?
            while let event = await group.next() {
                switch event {
                case .executed(let result):
                    group.cancelAll()
                    if decided == nil || decided == .stop {
                        var result = result
                        if decided == .stop {
                            result.outcome = .stopped
                            result.stopRequest = 1
                        }
                        return .finished(result)
                    }
                case .cancelled, .watcherEnded:
                    continue
                case .stopRequested:
                    logger.info("stop requested; stopping the job")
                    decided = decided ?? .stop
                    group.cancelAll()
                case .lostLease(let reason):
                    decided = decided ?? .lostLease(reason)
                    group.cancelAll()
                case .shutdownGraceOver:
                    decided = decided ?? .handBack
                    group.cancelAll()
                }
            }
            if decided == .stop {
                return .finished(
                    ExecutionResult(status: .finished, outcome: .stopped, failureReason: "stopped", stopRequest: 1))
            }
            return decided ?? .handBack
        }
        switch ending {
        case .finished(let result):
            await finish(job, result: result, logger: logger)
        case .lostLease(let reason):
            logger.warning("job attempt lost its claim; stopped without writing", metadata: ["reason": "\(reason)"])
        case .handBack, .stop:
            await handBack(job, logger: logger)
        }
    }

    /// What can happen to a running attempt.
    enum AttemptEvent: Sendable {
        case executed(ExecutionResult)
        case cancelled
        case stopRequested
        case lostLease(String)
        case shutdownGraceOver
        case watcherEnded
    }

    enum JobEnding: Sendable, Equatable {
        case finished(ExecutionResult)
        case stop
        case lostLease(String)
        case handBack
    }

    /// Records a status change, riding out a short Postgres outage (up to a lease period) so a blip does not
    /// fail a healthy job; a fenced or illegal write is final and stops the attempt.
    func recordProgress(_ job: Job, status: JobStatus) async throws {
        let deadline = ContinuousClock.now + configuration.leaseDuration
        var delay = Duration.milliseconds(100)
        while true {
            do {
                try await store.recordStatus(JobClaim(job), status: status)
                return
            } catch let error as PostgresError
                where (error.isRetriable || error.code == .acquireTimeout) && ContinuousClock.now < deadline
            {
                logger.warning(
                    "recording progress failed; retrying", metadata: ["job": "\(job.id)", "error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    /// Returns when the attempt must end: stop requested, or the attempt no longer holds the job. The worker's
    /// ``LeaseKeeper`` renews all its leases in one statement, so the database load does not grow per job.
    func keepLease(_ job: Job) async -> AttemptEvent {
        switch await leases.hold(JobClaim(job)) {
        case .held: return .watcherEnded
        case .stopRequested: return .stopRequested
        case .lost: return .lostLease("the claim was refused at renewal, or could not be renewed for a whole lease")
        }
    }

    /// Writes the terminal status, retrying while Postgres is unavailable (for up to a lease period: after that
    /// another worker may take the job over, and our write would be refused anyway).
    func finish(_ job: Job, result: ExecutionResult, logger: Logger) async {
        let deadline = ContinuousClock.now + configuration.leaseDuration
        var delay = Duration.milliseconds(200)
        while true {
            do {
                try await store.finish(JobClaim(job), result: result)
                logger.info(
                    "job finished",
                    metadata: [
                        "status": "\(result.status.rawValue)", "outcome": "\(result.outcome.rawValue)",
                        "reason": "\(result.failureReason ?? "")",
                    ])
                return
            } catch let error as FencingError {
                logger.warning("terminal write refused", metadata: ["reason": "\(error)"])
                return
            } catch {
                guard ContinuousClock.now < deadline else {
                    logger.error("could not record the job's end", metadata: ["error": "\(error)"])
                    return
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    func handBack(_ job: Job, logger: Logger) async {
        do {
            try await store.release(JobClaim(job))
            logger.info("job handed back at shutdown")
        } catch {
            logger.warning("hand-back failed; the lease will expire instead", metadata: ["error": "\(error)"])
        }
    }
}

/// The worker's ``SlotGate`` behind a lock, with its consumers: the gate's pause and resume are applied to the
/// consumers under the same lock, so they reach the consumers in the order the gate decided them.
final class WorkerSlots: Sendable {
    private struct State {
        var gate: SlotGate
        var consumers: [AMQPConsumer] = []
        /// Jobs this worker claimed and runs.
        var running: Set<JobID> = []
    }

    private let state: NIOLockedValueBox<State>

    init(_ gate: SlotGate) {
        state = NIOLockedValueBox(State(gate: gate))
    }

    var initialPrefetch: Int { state.withLockedValue { $0.gate.initialPrefetch } }

    func add(_ consumer: AMQPConsumer) {
        state.withLockedValue { state in
            state.consumers.append(consumer)
            if state.gate.paused { consumer.pause() }
        }
    }

    /// Takes a slot for a delivery; false if none is free (give the delivery back).
    func take() -> Bool {
        state.withLockedValue { state in
            let (granted, action) = state.gate.take()
            Self.apply(action, to: state.consumers)
            return granted
        }
    }

    func release() {
        state.withLockedValue { state in
            Self.apply(state.gate.release(), to: state.consumers)
        }
    }

    func isRunning(_ jobID: JobID) -> Bool { state.withLockedValue { $0.running.contains(jobID) } }

    /// Marks the job as running here; false if it already is.
    func startRunning(_ jobID: JobID) -> Bool { state.withLockedValue { $0.running.insert(jobID).inserted } }

    func stopRunning(_ jobID: JobID) { _ = state.withLockedValue { $0.running.remove(jobID) } }

    private static func apply(_ action: SlotGate.Action, to consumers: [AMQPConsumer]) {
        switch action {
        case .none: break
        case .pause: for consumer in consumers { consumer.pause() }
        case .resume(let prefetch): for consumer in consumers { consumer.resume(prefetch: prefetch) }
        }
    }
}

/// A counting semaphore for job slots; waiting is cancellable.
actor SlotPool {
    private var free: Int
    private var waiters: [(id: UUID, continuation: CheckedContinuation<Void, any Error>)] = []

    init(count: Int) {
        free = max(1, count)
    }

    func acquire() async throws {
        if free > 0 {
            free -= 1
            return
        }
        let id = UUID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters.append((id, continuation))
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
    }

    func release() {
        if waiters.isEmpty {
            free += 1
        } else {
            waiters.removeFirst().continuation.resume()
        }
    }

    private func cancel(_ id: UUID) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }
}
