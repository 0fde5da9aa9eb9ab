import AMQP
import Domain
import Logging
import Persistence
import ServiceLifecycle

/// The scheduler's first duty: publish outbox rows that the gateway could not publish (RabbitMQ down, gateway
/// killed between commit and publish), so every accepted job reaches a worker (DESIGN §2.1, §6.1).
package final class OutboxRelay: Service, Sendable {
    package struct Configuration: Sendable {
        /// Time between passes when there is nothing to do. Default 1 s.
        package var interval: Duration
        /// Rows younger than this are left to the gateway that wrote them. Default 3 s.
        package var minimumAge: Duration
        /// Rows per pass. Default 500.
        package var batchSize: Int
        /// Limit on one pass's publishing. Default 10 s.
        package var publishTimeout: Duration

        package init(
            interval: Duration = .seconds(1), minimumAge: Duration = .seconds(3), batchSize: Int = 500,
            publishTimeout: Duration = .seconds(10)
        ) {
            self.interval = interval
            self.minimumAge = minimumAge
            self.batchSize = batchSize
            self.publishTimeout = publishTimeout
        }
    }

    let configuration: Configuration
    let store: PostgresJobStore
    let amqp: AMQPClient
    let logger: Logger

    package init(
        configuration: Configuration = Configuration(), store: PostgresJobStore, amqp: AMQPClient, logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.amqp = amqp
        self.logger = logger
    }

    package func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var sent = 0
            do {
                sent = try await runOnce().sent
            } catch {
                logger.warning("outbox relay pass failed", metadata: ["error": "\(error)"])
            }
            // A full batch means more may be waiting: go again at once.
            if sent < configuration.batchSize {
                try? await Task.sleep(for: configuration.interval)
            }
        }
    }

    /// One pass: publishes up to a batch of waiting rows. Returns how many were sent and how many failed.
    @discardableResult
    package func runOnce() async throws -> (sent: Int, failed: Int) {
        guard amqp.isConnected else { return (0, 0) }
        let amqp = self.amqp
        let timeout = configuration.publishTimeout
        let result = try await store.relayOutbox(limit: configuration.batchSize, minimumAge: configuration.minimumAge) {
            messages in
            // Published concurrently so the confirms pipeline, each with its own outcome: one unroutable
            // message must not fail the batch.
            await withTaskGroup(of: (Int, String?).self) { group in
                for message in messages {
                    group.addTask {
                        do {
                            try await withDeadline(timeout, operation: "outbox publish") {
                                try await amqp.publish(
                                    AMQPMessage(
                                        body: Array(message.body.utf8), headers: message.headers,
                                        contentType: "application/json", messageID: message.jobID.description),
                                    exchange: message.exchange, routingKey: message.routingKey)
                            }
                            return (message.id, nil)
                        } catch {
                            return (message.id, "\(error)")
                        }
                    }
                }
                var sent: [Int] = []
                var failed: [Int] = []
                var lastError: String?
                for await (id, error) in group {
                    if let error {
                        failed.append(id)
                        lastError = error
                    } else {
                        sent.append(id)
                    }
                }
                return (sent, failed, lastError)
            }
        }
        if result.sent > 0 || result.failed > 0 {
            logger.info("outbox relay pass", metadata: ["sent": "\(result.sent)", "failed": "\(result.failed)"])
        }
        return result
    }
}
