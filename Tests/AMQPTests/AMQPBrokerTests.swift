import AMQP
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

/// Against the real RabbitMQ found through `AMQP_URL` (default amqp://guest:guest@127.0.0.1:5672/). Each test uses
/// queues with unique names and deletes them. Serialized: one test restarts the broker.
@Suite("AMQPClient against RabbitMQ", .serialized, .timeLimit(.minutes(3)))
struct AMQPBrokerTests {
    static let configuration = AMQPConfiguration.fromEnvironment()

    static var logger: Logger {
        var logger = Logger(label: "amqp-tests")
        logger.logLevel = ProcessInfo.processInfo.environment["AMQP_TEST_LOG"] == nil ? .warning : .debug
        return logger
    }

    private func uniqueName(_ what: String) -> String {
        "c2d.test.\(what).\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// Runs `body` with a connected client; deletes `cleanupQueues` afterwards, on every path.
    private func withClient<R>(
        configuration: AMQPConfiguration = Self.configuration,
        topology: AMQPTopology = AMQPTopology(),
        cleanupQueues: [String] = [],
        cleanupExchanges: [String] = [],
        _ body: (AMQPClient) async throws -> R
    ) async throws -> R {
        try await AMQPClient.withConnectedClient(configuration: configuration, topology: topology, logger: Self.logger)
        {
            client in
            do {
                let result = try await body(client)
                try await cleanup(client, queues: cleanupQueues, exchanges: cleanupExchanges)
                return result
            } catch {
                try? await cleanup(client, queues: cleanupQueues, exchanges: cleanupExchanges)
                throw error
            }
        }
    }

    private func cleanup(_ client: AMQPClient, queues: [String], exchanges: [String]) async throws {
        for queue in queues { try await client.deleteQueue(queue) }
        for exchange in exchanges { try await client.deleteExchange(exchange) }
    }

    private func expectAMQPError(
        _ code: AMQPError.Code,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> Void
    ) async -> AMQPError? {
        do {
            try await body()
            Issue.record("expected AMQPError.\(code), got success", sourceLocation: sourceLocation)
            return nil
        } catch let error as AMQPError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            return error
        } catch {
            Issue.record("expected AMQPError.\(code), got \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    // MARK: 1

    @Test("declaring a quorum queue is idempotent; a different x-delivery-limit is a declaration conflict")
    func declarationConflict() async throws {
        let queue = uniqueName("declare")
        try await withClient(topology: AMQPTopology(queues: [.quorum(queue, deliveryLimit: 3)]), cleanupQueues: [queue])
        {
            client in
            try await client.declare(AMQPTopology(queues: [.quorum(queue, deliveryLimit: 3)]))
            try await client.declare(AMQPTopology(queues: [.quorum(queue, deliveryLimit: 3)]))
            let error = await expectAMQPError(.declarationConflict) {
                try await client.declare(AMQPTopology(queues: [.quorum(queue, deliveryLimit: 5)]))
            }
            #expect(error?.replyCode == 406)
            #expect(error?.message.contains(queue) == true, "\(String(describing: error))")
            #expect(error?.message.contains("x-delivery-limit") == true, "\(String(describing: error))")
            // The connection survives a channel-level failure.
            #expect(client.isConnected)
            try await client.declare(AMQPTopology(queues: [.quorum(queue, deliveryLimit: 3)]))
        }

        // A conflicting topology fails the connect itself, with the same clear error.
        let conflicting = AMQPTopology(queues: [.quorum(queue, deliveryLimit: 7)])
        try await withClient(topology: AMQPTopology(queues: [.quorum(queue, deliveryLimit: 3)]), cleanupQueues: [queue])
        {
            _ in
            let error = await expectAMQPError(.declarationConflict) {
                try await AMQPClient.withConnectedClient(
                    configuration: Self.configuration, topology: conflicting, logger: Self.logger
                ) { _ in }
            }
            #expect(error?.message.contains(queue) == true)
        }
    }

    // MARK: 2

    @Test("2,000 concurrent confirmed publishes are consumed exactly once, headers and body intact")
    func publishAndConsumeMany() async throws {
        let queue = uniqueName("many")
        let total = 2_000
        let publishers = 40
        try await withClient(topology: AMQPTopology(queues: [.quorum(queue)]), cleanupQueues: [queue]) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        for index in stride(from: publisher, to: total, by: publishers) {
                            let message = AMQPMessage(
                                body: Array("{\"n\":\(index)}".utf8),
                                headers: ["job-id": "job-\(index)", "attempt": "\(index % 3)", "traceparent": "00-x"],
                                contentType: "application/json",
                                messageID: "m-\(index)"
                            )
                            try await client.publish(message, exchange: "", routingKey: queue)
                        }
                    }
                }
                try await group.waitForAll()
            }

            var seen = Set<String>()
            var duplicates = 0
            for try await delivery in client.consume(queue: queue, prefetch: 50) {
                let message = delivery.message
                let id = try #require(message.messageID)
                let index = try #require(Int(id.dropFirst(2)))
                if !seen.insert(id).inserted { duplicates += 1 }
                #expect(message.body == Array("{\"n\":\(index)}".utf8))
                #expect(message.headers["job-id"] == "job-\(index)")
                #expect(message.headers["attempt"] == "\(index % 3)")
                #expect(message.headers["traceparent"] == "00-x")
                #expect(message.contentType == "application/json")
                #expect(message.persistent)
                #expect(delivery.routingKey == queue)
                #expect(!delivery.redelivered)
                try await delivery.ack()
                if seen.count == total { break }
            }
            #expect(seen.count == total)
            #expect(duplicates == 0)
        }
    }

    // MARK: 3

    @Test("a batch larger than the confirm window is sent as confirms free the window, without sleeping")
    func batchBeyondTheConfirmWindow() async throws {
        let queue = uniqueName("windows")
        var configuration = Self.configuration
        // A window of one makes every message wait for the previous one's confirm.
        configuration.confirmWindow = 1
        try await withClient(
            configuration: configuration, topology: AMQPTopology(queues: [.quorum(queue)]), cleanupQueues: [queue]
        ) { client in
            let batch = (0..<20).map { (message: AMQPMessage(body: Array("\($0)".utf8)), routingKey: queue) }
            let start = ContinuousClock.now
            try await client.publish(batch, exchange: "")
            // The pump used to read the confirm that freed the window and then sleep in poll() for its whole
            // interval (1 s) before sending the next message: 19 s here. A stall, not a speed target.
            #expect(ContinuousClock.now - start < .seconds(5))
            var received = 0
            for try await delivery in client.consume(queue: queue, prefetch: 20) {
                try await delivery.ack()
                received += 1
                if received == batch.count { break }
            }
            #expect(received == batch.count)
        }
    }

    @Test("nack with requeue redelivers; after x-delivery-limit the message is dead-lettered")
    func redeliveryAndDeadLetter() async throws {
        let queue = uniqueName("limit")
        let deadExchange = uniqueName("dlx")
        let deadQueue = uniqueName("dead")
        let topology = AMQPTopology(
            exchanges: [AMQPExchange(name: deadExchange, type: "fanout")],
            queues: [.quorum(queue, deliveryLimit: 2, deadLetterExchange: deadExchange), .quorum(deadQueue)],
            bindings: [AMQPBinding(queue: deadQueue, exchange: deadExchange, routingKey: "")]
        )
        try await withClient(topology: topology, cleanupQueues: [queue, deadQueue], cleanupExchanges: [deadExchange]) {
            client in
            let message = AMQPMessage(body: Array("poison".utf8), headers: ["job-id": "p1"], messageID: "poison-1")
            try await client.publish(message, exchange: "", routingKey: queue)

            var deliveries: [(redelivered: Bool, count: Int?)] = []
            let consumer = client.consume(queue: queue, prefetch: 1)
            var iterator = consumer.makeAsyncIterator()
            // Delivered once, then requeued twice (x-delivery-limit 2); the third nack exceeds the limit.
            for _ in 0..<3 {
                let delivery = try #require(try await iterator.next())
                #expect(delivery.message.messageID == "poison-1")
                deliveries.append((delivery.redelivered, delivery.deliveryCount))
                try await delivery.nack(requeue: true)
            }
            consumer.cancel()
            #expect(deliveries.map(\.redelivered) == [false, true, true])
            #expect(deliveries.map(\.count) == [nil, 1, 2])

            for try await dead in client.consume(queue: deadQueue, prefetch: 10) {
                #expect(dead.message.messageID == "poison-1")
                #expect(dead.message.body == Array("poison".utf8))
                #expect(dead.message.headers["job-id"] == "p1")
                try await dead.ack()
                break
            }
        }
    }

    @Test("a paused consumer receives nothing more, still settles what it holds, and resumes with a new prefetch")
    func pauseAndResume() async throws {
        let queue = uniqueName("pause")
        try await withClient(topology: AMQPTopology(queues: [.quorum(queue)]), cleanupQueues: [queue]) { client in
            for index in 0..<5 {
                try await client.publish(
                    AMQPMessage(body: Array("m\(index)".utf8), messageID: "\(index)"), exchange: "",
                    routingKey: queue)
            }
            let consumer = client.consume(queue: queue, prefetch: 1)
            var iterator = consumer.makeAsyncIterator()
            let first = try #require(try await iterator.next())
            // Paused before the first is settled: with prefetch 1 nothing else was sent, and nothing will be.
            consumer.pause()
            try await first.ack()
            // Copies of one iterator share the consumer (a new iterator would end it when dropped).
            let nothing = Task { [iterator] in
                var copy = iterator
                return try await copy.next()
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await client.queueStatus(queue).messages == 4, "the broker kept the rest")
            // Resumed with prefetch 3: three arrive before any is settled.
            consumer.resume(prefetch: 3)
            let second = try #require(try await nothing.value)
            var held = [second]
            for _ in 0..<2 { held.append(try #require(try await iterator.next())) }
            #expect(held.map(\.message.messageID) == ["1", "2", "3"])
            // A delivery received before a pause is still settled after it.
            consumer.pause()
            for delivery in held { try await delivery.ack() }
            consumer.resume()
            let last = try #require(try await iterator.next())
            #expect(last.message.messageID == "4")
            try await last.ack()
            consumer.cancel()
        }
    }

    // MARK: 4

    @Test("a mandatory publish that no queue receives fails with .unroutable; a missing exchange with 404")
    func unroutable() async throws {
        let exchange = uniqueName("direct")
        let queue = uniqueName("routed")
        let topology = AMQPTopology(
            exchanges: [AMQPExchange(name: exchange, type: "direct")],
            queues: [.quorum(queue)],
            bindings: [AMQPBinding(queue: queue, exchange: exchange, routingKey: "known")]
        )
        try await withClient(topology: topology, cleanupQueues: [queue], cleanupExchanges: [exchange]) { client in
            let message = AMQPMessage(body: Array("x".utf8), messageID: "u1")
            let error = await expectAMQPError(.unroutable) {
                try await client.publish(message, exchange: exchange, routingKey: "nobody-binds-this")
            }
            #expect(error?.message.contains("nobody-binds-this") == true)
            // Routable and non-mandatory publishes in the same connection still succeed.
            try await client.publish(message, exchange: exchange, routingKey: "known")
            try await client.publish(message, exchange: exchange, routingKey: "nobody-binds-this", mandatory: false)

            // Batch: one of three unroutable.
            let batch = [(message, "known"), (message, "nowhere"), (message, "known")].map {
                (message: $0.0, routingKey: $0.1)
            }
            let batchError = await expectAMQPError(.unroutable) {
                try await client.publish(batch, exchange: exchange)
            }
            #expect(batchError?.message.contains("1 of 3") == true)

            // A missing exchange closes the publishing channel (404); the client reopens it.
            let missing = await expectAMQPError(.channelClosed) {
                try await client.publish(message, exchange: uniqueName("missing"), routingKey: "k")
            }
            #expect(missing?.replyCode == 404)
            try await client.publish(message, exchange: exchange, routingKey: "known")
            #expect(client.isConnected)
        }
    }

    // MARK: 5

    @Test("wrong credentials fail with .authenticationFailed, a closed port with .connectionFailed, promptly")
    func connectFailures() async throws {
        var badCredentials = Self.configuration
        // This checkout's broker (its port may not be the default), with a wrong password.
        badCredentials.url = badCredentials.url.replacingOccurrences(
            of: "guest:guest@", with: "guest:definitely-wrong@")
        let clock = ContinuousClock()
        var started = clock.now
        let authError = await expectAMQPError(.authenticationFailed) {
            try await AMQPClient.withConnectedClient(configuration: badCredentials, logger: Self.logger) { _ in }
        }
        #expect(clock.now - started < .seconds(5))
        #expect(authError?.replyCode == 403)

        var badPort = Self.configuration
        badPort.url = "amqp://guest:guest@127.0.0.1:1/"
        badPort.connectTimeout = .seconds(2)
        started = clock.now
        _ = await expectAMQPError(.connectionFailed) {
            try await AMQPClient.withConnectedClient(configuration: badPort, logger: Self.logger) { _ in }
        }
        #expect(clock.now - started < .seconds(2) + .milliseconds(500))

        var badURL = Self.configuration
        badURL.url = "rabbit://nowhere"
        _ = await expectAMQPError(.invalidURL) {
            try await AMQPClient.withConnectedClient(configuration: badURL, logger: Self.logger) { _ in }
        }
    }

    // MARK: Lifecycle

    @Test("in a ServiceGroup, graceful shutdown ends consumers and closes the connection; publish then fails at once")
    func gracefulShutdown() async throws {
        let queue = uniqueName("shutdown")
        let client = AMQPClient(
            configuration: Self.configuration, topology: AMQPTopology(queues: [.quorum(queue)]), logger: Self.logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [client], logger: Self.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await client.waitUntilConnected(timeout: .seconds(5))
            #expect(client.isConnected)
            let consumer = client.consume(queue: queue, prefetch: 5)
            tasks.addTask {
                var count = 0
                for try await delivery in consumer {
                    try await delivery.ack()
                    count += 1
                }
                #expect(count == 1)  // the sequence ends with nil on shutdown
            }
            try await client.publish(AMQPMessage(body: [1], messageID: "one"), exchange: "", routingKey: queue)
            try await Task.sleep(for: .milliseconds(200))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(!client.isConnected)
        _ = await expectAMQPError(.notConnected) {
            try await client.publish(AMQPMessage(body: [2]), exchange: "", routingKey: queue)
        }
        try await withClient(cleanupQueues: [queue]) { _ in }
    }

    @Test("an idle connection stays up across several heartbeat intervals (the pump services heartbeats)")
    func heartbeats() async throws {
        var configuration = Self.configuration
        configuration.heartbeat = .seconds(1)
        let records = LogRecords()
        var logger = Logger(label: "amqp-heartbeat") { _ in RecordingLogHandler(records: records) }
        logger.logLevel = .info
        let queue = uniqueName("idle")
        try await AMQPClient.withConnectedClient(
            configuration: configuration, topology: AMQPTopology(queues: [.quorum(queue)]), logger: logger
        ) { client in
            try await Task.sleep(for: .seconds(4))
            #expect(client.isConnected)
            try await client.publish(AMQPMessage(body: [1]), exchange: "", routingKey: queue)
            try await client.deleteQueue(queue)
        }
        let messages = records.messages
        #expect(messages.filter { $0 == "connected to RabbitMQ" }.count == 1, "\(messages)")
        #expect(!messages.contains("lost the RabbitMQ connection"), "\(messages)")
    }

    // MARK: 6

    @Test("after a broker restart the client reconnects and its consumer keeps receiving")
    func brokerRestart() async throws {
        let queue = uniqueName("restart")
        var configuration = Self.configuration
        configuration.heartbeat = .seconds(2)
        let received = Received()
        try await withClient(
            configuration: configuration, topology: AMQPTopology(queues: [.quorum(queue)]), cleanupQueues: [queue]
        ) { client in
            let consumer = client.consume(queue: queue, prefetch: 10)
            let consuming = Task {
                for try await delivery in consumer {
                    await received.insert(delivery.message.messageID ?? "")
                    try? await delivery.ack()
                }
            }
            defer { consuming.cancel() }

            try await client.publish(AMQPMessage(body: [1], messageID: "before"), exchange: "", routingKey: queue)
            try await waitUntil("'before' is consumed") { await received.contains("before") }

            try await TestEnvironment.services("stop", "rabbitmq")
            do {
                try await waitUntil("the client notices the broker is gone") { !client.isConnected }
                let clock = ContinuousClock()
                let started = clock.now
                do {
                    try await client.publish(AMQPMessage(body: [2], messageID: "down"), exchange: "", routingKey: queue)
                    Issue.record("publish succeeded while the broker was down")
                } catch let error as AMQPError {
                    #expect([.notConnected, .connectionClosed].contains(error.code), "\(error)")
                }
                #expect(clock.now - started < .milliseconds(500))
            } catch {
                try? await TestEnvironment.services("start", "rabbitmq")
                throw error
            }
            try await TestEnvironment.services("start", "rabbitmq")

            try await waitUntil("the client reconnects", timeout: .seconds(60)) { client.isConnected }
            try await client.publish(AMQPMessage(body: [3], messageID: "after"), exchange: "", routingKey: queue)
            try await waitUntil("'after' is consumed") { await received.contains("after") }
        }
    }
}

/// Message ids a background consumer has seen.
private actor Received {
    private var ids: Set<String> = []
    func insert(_ id: String) { ids.insert(id) }
    func contains(_ id: String) -> Bool { ids.contains(id) }
}

/// Log messages, for tests that check what the client reported.
private final class LogRecords: Sendable {
    private let storage = Mutex<[String]>([])
    var messages: [String] { storage.withLock { $0 } }
    func append(_ message: String) { storage.withLock { $0.append(message) } }
}

private struct RecordingLogHandler: LogHandler {
    let records: LogRecords
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        records.append(event.message.description)
    }
}
