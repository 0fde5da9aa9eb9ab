import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// A long-lived RabbitMQ client and a `Service`.
///
/// ``run()`` connects, declares the topology, and reconnects with exponential backoff and jitter whenever the
/// connection drops, until graceful shutdown (or cancellation); then it waits briefly for outstanding publisher
/// confirms and closes the connection with reply 200. Each connection is owned by one dedicated thread (rabbitmq-c is blocking
/// and not thread-safe); async callers hand it commands and are resumed when they complete.
///
/// Publishing never waits for a reconnect: with no connection it throws `.notConnected` at once, so the caller can
/// leave the message for a later try (the dispatcher republishes what it could not publish). Consumers (``consume(queue:prefetch:)``) survive reconnects.
package final class AMQPClient: Service, Sendable {
    private struct State {
        var connection: RabbitMQConnection?
        /// Declared on every connect; grows with ``AMQPClient/declare(_:)``.
        var topology: AMQPTopology
        var consumers: [Int: ConsumerBuffer] = [:]
        var nextConsumerID = 1
        var nextConnectionID = 1
        /// ``AMQPClient/waitUntilConnected(timeout:)`` callers, resumed by the next connect attempt.
        var connectWaiters: [Int: CheckedContinuation<Void, any Error>] = [:]
        var nextWaiterID = 1
        var isShuttingDown = false
    }

    package let configuration: AMQPConfiguration
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    package init(configuration: AMQPConfiguration, topology: AMQPTopology = AMQPTopology(), logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.state = NIOLockedValueBox(State(topology: topology))
    }

    /// True while a connection is open (for readiness checks).
    package var isConnected: Bool { state.withLockedValue { $0.connection != nil } }

    // MARK: Lifecycle

    package func run() async throws {
        let endpoint: AMQPEndpoint
        do {
            endpoint = try AMQPEndpoint(url: configuration.url)
        } catch {
            failConnectWaiters(with: error)
            throw error
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.connectLoop(endpoint: endpoint)
            } onGracefulShutdown: {
                self.shutdown()
            }
        } onCancel: {
            self.shutdown()
        }
    }

    /// Begins a graceful shutdown without ServiceLifecycle: ``run()`` closes the connection and returns.
    package func shutdown() {
        let (connection, connectWaiters) = state.withLockedValue { state in
            state.isShuttingDown = true
            defer { state.connectWaiters.removeAll() }
            return (state.connection, state.connectWaiters.values)
        }
        connection?.requestClose()
        for waiter in connectWaiters {
            waiter.resume(throwing: AMQPError(code: .notConnected, message: "the AMQP client is shutting down"))
        }
    }

    private func connectLoop(endpoint: AMQPEndpoint) async {
        var logger = logger
        logger[metadataKey: "amqp.endpoint"] = "\(endpoint.redacted)"
        var failures = 0
        while true {
            let (id, topology, stop) = state.withLockedValue { state in
                defer { state.nextConnectionID += 1 }
                return (state.nextConnectionID, state.topology, state.isShuttingDown)
            }
            if stop { break }
            var connectionLogger = logger
            connectionLogger[metadataKey: "amqp.connection"] = "\(id)"
            do {
                let connection = try await RabbitMQConnection.open(
                    id: id, configuration: configuration, endpoint: endpoint, topology: topology,
                    logger: connectionLogger)
                let (accepted, waiters) = state.withLockedValue { state in
                    guard !state.isShuttingDown else { return (false, [CheckedContinuation<Void, any Error>]()) }
                    state.connection = connection
                    for consumer in state.consumers.values {
                        _ = connection.submit(.startConsumer(consumer))
                    }
                    defer { state.connectWaiters.removeAll() }
                    return (true, Array(state.connectWaiters.values))
                }
                guard accepted else {
                    connection.requestClose()
                    _ = await connection.waitUntilClosed()
                    break
                }
                connectionLogger.info("connected to RabbitMQ")
                for waiter in waiters { waiter.resume() }
                failures = 0
                let reason = await connection.waitUntilClosed()
                let stopping = state.withLockedValue { state in
                    state.connection = nil
                    return state.isShuttingDown
                }
                if stopping {
                    connectionLogger.info("closed the RabbitMQ connection")
                    break
                }
                connectionLogger.info("lost the RabbitMQ connection", metadata: ["amqp.error": "\(reason)"])
            } catch {
                failConnectWaiters(with: error)
                connectionLogger.info("cannot connect to RabbitMQ", metadata: ["amqp.error": "\(error)"])
                failures += 1
            }
            await pause(backoff(failures: failures))
        }
        let consumers = state.withLockedValue { state in
            defer { state.consumers.removeAll() }
            return state.consumers.values
        }
        for consumer in consumers { consumer.finish() }
    }

    /// Exponential in the number of consecutive failures, capped, and jittered to between half and all of it.
    private func backoff(failures: Int) -> Duration {
        let settings = configuration.reconnectBackoff
        let exponent = Double(max(0, failures - 1))
        let nominal = min(settings.initial * pow2(exponent), settings.maximum)
        return nominal * Double.random(in: 0.5...1.0)
    }

    private func pow2(_ exponent: Double) -> Double {
        exponent >= 62 ? Double(Int64.max) : Double(Int64(1) << Int64(exponent))
    }

    /// Sleeps for `delay`, or less if shutdown begins. Checks in short slices rather than racing a shutdown
    /// waiter against the sleep: a waiter registered after the sleep won would never be resumed, and the
    /// reconnect loop would hang for good.
    private func pause(_ delay: Duration) async {
        let deadline = ContinuousClock.now + delay
        while !Task.isCancelled && !state.withLockedValue({ $0.isShuttingDown }) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return }
            try? await Task.sleep(for: min(left, .milliseconds(100)))
        }
    }

    private func failConnectWaiters(with error: any Error) {
        let waiters = state.withLockedValue { state in
            defer { state.connectWaiters.removeAll() }
            return state.connectWaiters.values
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    /// Returns once connected, or throws the error of the next connect attempt (`.invalidURL`, `.connectionFailed`,
    /// `.authenticationFailed`, `.declarationConflict`…), or `.timeout`. Needs ``run()`` to be running.
    package func waitUntilConnected(timeout: Duration) async throws {
        _ = try AMQPEndpoint(url: configuration.url)
        if isConnected { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.nextConnectOutcome() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw AMQPError(code: .timeout, message: "not connected to RabbitMQ within \(timeout)")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func nextConnectOutcome() async throws {
        let id = state.withLockedValue { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let immediate: Result<Void, any Error>? = state.withLockedValue { state in
                    if state.connection != nil { return .success(()) }
                    if state.isShuttingDown {
                        return .failure(AMQPError(code: .notConnected, message: "the AMQP client is shutting down"))
                    }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.connectWaiters[id] = continuation
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let waiter = state.withLockedValue { $0.connectWaiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Runs a client for the duration of `body`: starts it, waits until it is connected (within the connect timeout),
    /// runs `body`, then shuts it down and waits for the connection to close. For CLI commands and tests.
    package static func withConnectedClient<Result>(
        configuration: AMQPConfiguration,
        topology: AMQPTopology = AMQPTopology(),
        logger: Logger,
        _ body: (AMQPClient) async throws -> Result
    ) async throws -> Result {
        let client = AMQPClient(configuration: configuration, topology: topology, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            do {
                try await client.waitUntilConnected(timeout: configuration.connectTimeout)
                let result = try await body(client)
                client.shutdown()
                try await group.waitForAll()
                return result
            } catch {
                client.shutdown()
                try? await group.waitForAll()
                throw error
            }
        }
    }

    // MARK: Publishing

    /// Publishes one message with a publisher confirm; returns once the broker acknowledged it.
    ///
    /// Confirms are pipelined: concurrent callers share the connection's confirm window
    /// (``AMQPConfiguration/confirmWindow``), and callers beyond it wait for a free slot. Throws `.unroutable` (mandatory and no queue matched), `.nacked`,
    /// `.connectionClosed` (lost before the confirm: the outcome is unknown), `.channelClosed` (e.g. 404, no such
    /// exchange), `.timeout` (no confirm within the RPC timeout), or `.notConnected` (nothing was sent).
    package func publish(
        _ message: AMQPMessage,
        exchange: String,
        routingKey: String,
        mandatory: Bool = true
    ) async throws {
        let connection = try currentConnection()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let request = PublishRequest(
                message: message, exchange: exchange, routingKey: routingKey, mandatory: mandatory
            ) { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            if let reason = connection.submit(.publish([request])) {
                continuation.resume(throwing: RabbitMQConnection.notSent(reason))
            }
        }
    }

    /// Publishes all messages (pipelined) and waits for every confirm. Throws if any failed: the error has the code of
    /// the first failure and says how many failed.
    package func publish(
        _ messages: [(message: AMQPMessage, routingKey: String)],
        exchange: String,
        mandatory: Bool = true
    ) async throws {
        guard !messages.isEmpty else { return }
        let connection = try currentConnection()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let batch = BatchCompletion(count: messages.count, continuation: continuation)
            let requests = messages.map { item in
                PublishRequest(
                    message: item.message, exchange: exchange, routingKey: item.routingKey, mandatory: mandatory,
                    complete: batch.complete)
            }
            if let reason = connection.submit(.publish(requests)) {
                continuation.resume(throwing: RabbitMQConnection.notSent(reason))
            }
        }
    }

    // MARK: Consuming

    /// A consumer of `queue` with manual acknowledgement and `prefetch` unacknowledged deliveries at most. It starts on
    /// the current connection (or the next one) and is started again on every reconnect, with the same `arguments`
    /// (a stream consumer given `x-stream-offset` therefore starts over from that offset after a reconnect, and must
    /// skip what it has seen). See ``AMQPConsumer``.
    package func consume(queue: String, prefetch: Int, arguments: [String: AMQPArgument] = [:]) -> AMQPConsumer {
        let (buffer, connection, stopped) = state.withLockedValue { state in
            let id = state.nextConsumerID
            state.nextConsumerID += 1
            let buffer = ConsumerBuffer(
                id: id, queue: queue, prefetch: max(1, prefetch), arguments: arguments,
                onCancel: { [weak self] id in self?.consumerCancelled(id: id) },
                onChange: { [weak self] id in self?.consumerChanged(id: id) })
            if !state.isShuttingDown { state.consumers[id] = buffer }
            return (buffer, state.connection, state.isShuttingDown)
        }
        if stopped {
            buffer.finish()
        } else if let connection {
            _ = connection.submit(.startConsumer(buffer))
        }
        return AMQPConsumer(buffer: buffer)
    }

    private func consumerChanged(id: Int) {
        let connection = state.withLockedValue { $0.connection }
        _ = connection?.submit(.updateConsumer(id: id))
    }

    private func consumerCancelled(id: Int) {
        let connection = state.withLockedValue { state in
            state.consumers[id] = nil
            return state.connection
        }
        _ = connection?.submit(.cancelConsumer(id: id))
    }

    // MARK: Topology

    /// Declares more exchanges, queues and bindings now, and on every later reconnect. Throws `.declarationConflict`
    /// if one exists with different properties (nothing is remembered then), `.notConnected` without a connection.
    package func declare(_ topology: AMQPTopology) async throws {
        try await currentConnection().declare(topology)
        state.withLockedValue { $0.topology.merge(topology) }
    }

    /// Message and consumer counts of an existing queue (a passive `queue.declare`, which creates nothing). Throws
    /// `.channelClosed` with reply code 404 when the queue does not exist.
    package func queueStatus(_ name: String) async throws -> AMQPQueueStatus {
        let connection = try currentConnection()
        return try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<AMQPQueueStatus, any Error>) in
            if let reason = connection.submit(.inspectQueue(name, continuation)) {
                continuation.resume(throwing: RabbitMQConnection.notSent(reason))
            }
        }
    }

    /// Deletes a queue (and forgets its declaration and bindings). Deleting a missing queue succeeds.
    package func deleteQueue(_ name: String) async throws {
        state.withLockedValue { $0.topology.removeQueue(named: name) }
        try await currentConnection().deleteQueue(name)
    }

    /// Deletes an exchange (and forgets its declaration and bindings).
    package func deleteExchange(_ name: String) async throws {
        state.withLockedValue { $0.topology.removeExchange(named: name) }
        try await currentConnection().deleteExchange(name)
    }

    private func currentConnection() throws -> RabbitMQConnection {
        let connection = state.withLockedValue { $0.isShuttingDown ? nil : $0.connection }
        guard let connection else {
            throw AMQPError(code: .notConnected, message: "not connected to RabbitMQ")
        }
        return connection
    }
}

/// Collects the outcomes of a batch publish and resumes the caller once, after the last one.
private final class BatchCompletion: Sendable {
    private struct State {
        var remaining: Int
        var failed = 0
        var firstError: AMQPError?
    }

    private let total: Int
    private let state: NIOLockedValueBox<State>
    private let continuation: CheckedContinuation<Void, any Error>

    init(count: Int, continuation: CheckedContinuation<Void, any Error>) {
        self.total = count
        self.state = NIOLockedValueBox(State(remaining: count))
        self.continuation = continuation
    }

    @Sendable func complete(_ error: AMQPError?) {
        let outcome: (failed: Int, firstError: AMQPError?)? = state.withLockedValue { state in
            state.remaining -= 1
            if let error {
                state.failed += 1
                if state.firstError == nil { state.firstError = error }
            }
            return state.remaining == 0 ? (state.failed, state.firstError) : nil
        }
        guard let outcome else { return }
        if let first = outcome.firstError {
            continuation.resume(
                throwing: AMQPError(
                    code: first.code, message: "\(outcome.failed) of \(total) messages failed; first: \(first.message)",
                    replyCode: first.replyCode))
        } else {
            continuation.resume()
        }
    }
}
