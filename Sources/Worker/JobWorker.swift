import AMQP
import Domain
import Foundation
import Logging
import NIOConcurrencyHelpers
import Persistence
import ServiceLifecycle
import Synchronization

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
    /// Attempts running now, for the shutdown timer.
    let attempts = RunningAttempts()

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
            group.addTask {
                // One timer for every running attempt: after the grace period, whatever still runs is handed back.
                guard (try? await gracefulShutdown()) != nil,
                    (try? await Task.sleep(for: self.configuration.shutdownGracePeriod)) != nil
                else { return }
                self.attempts.interruptAll(.shutdown)
            }
            group.addTask { await self.keepRegistered() }
            await withDiscardingTaskGroup { serving in
                for environment in configuration.environments {
                    serving.addTask { await self.serve(environment) }
                }
            }
            await attempts.waitUntilNone()
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
    /// started run on until they finish or their grace period ends (``run()`` waits for them).
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
                            claimed = await self.claimInItsOwnTask(delivery)
                            await self.claims.release()
                        } else {
                            try? await delivery.nack(requeue: true)
                        }
                        if let job = claimed {
                            // Returns once the attempt started; its slot is freed once its end is recorded.
                            await self.runJob(job, environment: environment)
                        } else {
                            self.slots.release()
                        }
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
                where error.isTransient && transientFailures < 3
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

    /// Starts one claimed attempt and has its end recorded: the executor runs the attempt while the worker's
    /// ``LeaseKeeper`` (one renewal statement for all held jobs) and its shutdown timer interrupt it through the
    /// attempt's ``AttemptControl``. A stop request (seen at lease renewal) ends it as stopped with its logs; a lost
    /// lease ends it without writing; at shutdown, an attempt still running after the grace period is handed back to
    /// the queue. Returns once the executor started the attempt: with the local executor that is its end, with
    /// Kubernetes its launch, so no task waits per monitored attempt. The job's slot is freed once its ending is
    /// recorded.
    func runJob(_ job: Job, environment: ComputeEnvironment) async {
        let run = prepare(job, environment: environment)
        // The end handler lives as long as the attempt: it keeps the claim and the control, not the run (the job's
        // workflow and environment are needed only to launch).
        let claim = JobClaim(job)
        let control = run.control
        await executor.start(run) { [self] ending in
            await leases.release(claim)
            await record(ending, of: claim, control: control)
            attempts.unregister(claim.jobID, control)
            slots.stopRunning(claim.jobID)
            slots.release()
        }
    }

    /// The attempt's run: its control registered with the lease keeper and the shutdown timer.
    private func prepare(_ job: Job, environment: ComputeEnvironment) -> AttemptRun {
        let control = AttemptControl()
        keepLease(job, control: control)
        attempts.register(job.id, control)
        let claim = JobClaim(job)
        return AttemptRun(
            job: job, environment: environment,
            progress: { [self] status in try await self.progress(claim, status) }, control: control)
    }

    /// A status change of the running attempt, recorded; a refused write means the attempt lost the job.
    private func progress(_ claim: JobClaim, _ status: JobStatus) async throws {
        do {
            try await recordProgress(claim, status: status)
        } catch let error as FencingError {
            throw AttemptSuperseded(reason: error.description)
        }
    }

    /// ``claim(_:)`` in a task of its own. The task that runs a job lives as long as the job, and a task keeps
    /// the stack slabs its deepest frames once needed until it ends: the claim's transaction (several KiB) would
    /// otherwise stay with every running job, most of a monitored Kubernetes job's memory.
    func claimInItsOwnTask(_ delivery: AMQPDelivery) async -> Job? {
        await withTaskGroup(of: Job?.self) { claiming in
            claiming.addTask { await self.claim(delivery) }
            return await claiming.next() ?? nil
        }
    }

    /// Records how the attempt ended: its result (then the executor may clean up), a hand-back, or nothing.
    private func record(_ ending: AttemptEnding, of claim: JobClaim, control: AttemptControl) async {
        var logger = self.logger
        logger[metadataKey: "job"] = "\(claim.jobID)"
        logger[metadataKey: "attempt"] = "\(claim.attempt)"
        if control.interruption == .stopRequested { logger.info("stop requested; the job was stopped") }
        switch ending {
        case .finished(let result):
            if await finish(claim, result: result, logger: logger) {
                await executor.attemptRecorded(claim, ending: ending)
            }
        case .lostLease(let reason):
            logger.warning("job attempt lost its claim; stopped without writing", metadata: ["reason": "\(reason)"])
        case .handBack:
            await handBack(claim, logger: logger)
        }
    }

    /// Records a status change, riding out a short Postgres outage (up to a lease period) so a blip does not
    /// fail a healthy job; a fenced or illegal write is final and stops the attempt.
    func recordProgress(_ claim: JobClaim, status: JobStatus) async throws {
        let deadline = ContinuousClock.now + configuration.leaseDuration
        var delay = Duration.milliseconds(100)
        while true {
            do {
                try await store.recordStatus(claim, status: status)
                return
            } catch let error as PostgresError
                where error.isTransient && ContinuousClock.now < deadline
            {
                logger.warning(
                    "recording progress failed; retrying", metadata: ["job": "\(claim.jobID)", "error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    /// Has the ``LeaseKeeper`` renew the attempt's lease with all the others and interrupt it when a stop is requested
    /// or the attempt no longer holds the job.
    func keepLease(_ job: Job, control: AttemptControl) {
        leases.hold(JobClaim(job), control)
    }

    /// Writes the terminal status, retrying while Postgres is unavailable (for up to a lease period: after that
    /// another worker may take the job over, and our write would be refused anyway). True once it is recorded.
    @discardableResult
    func finish(_ claim: JobClaim, result: ExecutionResult, logger: Logger) async -> Bool {
        let deadline = ContinuousClock.now + configuration.leaseDuration
        var delay = Duration.milliseconds(200)
        while true {
            do {
                try await store.finish(claim, result: result)
                logger.info(
                    "job finished",
                    metadata: [
                        "status": "\(result.status.rawValue)", "outcome": "\(result.outcome.rawValue)",
                        "reason": "\(result.failureReason ?? "")",
                    ])
                return true
            } catch let error as FencingError {
                logger.warning("terminal write refused", metadata: ["reason": "\(error)"])
                return false
            } catch {
                guard ContinuousClock.now < deadline else {
                    logger.error("could not record the job's end", metadata: ["error": "\(error)"])
                    return false
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    func handBack(_ claim: JobClaim, logger: Logger) async {
        do {
            try await store.release(claim)
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

/// The attempts a worker runs now (until their end is recorded), so one shutdown timer can interrupt them all and
/// the worker stops only once none is left.
final class RunningAttempts: Sendable {
    private struct State {
        var attempts: [JobID: AttemptControl] = [:]
        var emptyWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func register(_ id: JobID, _ control: AttemptControl) {
        state.withLock { $0.attempts[id] = control }
    }

    func unregister(_ id: JobID, _ control: AttemptControl) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.attempts[id] === control { state.attempts[id] = nil }
            guard state.attempts.isEmpty else { return [] }
            defer { state.emptyWaiters = [] }
            return state.emptyWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func interruptAll(_ interruption: AttemptInterruption) {
        for control in state.withLock({ Array($0.attempts.values) }) { control.interrupt(interruption) }
    }

    /// Returns once no attempt is running.
    func waitUntilNone() async {
        await withCheckedContinuation { continuation in
            let none = state.withLock { state -> Bool in
                guard !state.attempts.isEmpty else { return true }
                state.emptyWaiters.append(continuation)
                return false
            }
            if none { continuation.resume() }
        }
    }
}
