import AMQP
import App
import ArgumentParser
import Foundation
import Logging

/// `c2d bench amqp`: the AMQP client's confirmed-publish and consume rates next to a minimal raw rabbitmq-c loop doing
/// the same, on fresh quorum queues with persistent messages. Run it on a release build.
struct BenchAMQPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp", abstract: "Measure confirmed publishes/s and consumes/s against a raw rabbitmq-c loop.")

    @Option(help: "Messages per measurement (a tenth of it at window or prefetch 1).")
    var messages: Int = 20_000

    @Option(help: "Body size in bytes.")
    var bodySize: Int = 512

    @Option(help: "Publisher confirm windows to measure.")
    var windows: [Int] = [1, 10, 100, 500]

    @Option(help: "Consumer prefetch values to measure.")
    var prefetches: [Int] = [1, 10, 100]

    func run() async throws {
        var logger = Logger(label: "c2d-bench")
        logger.logLevel = .warning
        let base = try Settings.load().amqp
        let body = [UInt8](repeating: 0x61, count: bodySize)
        print("AMQP benchmark: \(bodySize)-byte persistent messages, quorum queues, one connection")
        print("publish (confirmed)      c2d msg/s    raw msg/s   ratio")
        for window in windows {
            let count = window == 1 ? messages / 10 : messages
            var configuration = base
            configuration.confirmWindow = window
            let queue = "c2d.bench.\(UUID().uuidString.prefix(8).lowercased())"
            let rate = try await AMQPClient.withConnectedClient(
                configuration: configuration, topology: AMQPTopology(queues: [.quorum(queue)]), logger: logger
            ) { client in
                // One caller per window slot, each waiting for its own confirm, as concurrent requests do.
                let started = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for caller in 0..<window {
                        group.addTask {
                            for _ in stride(from: caller, to: count, by: window) {
                                try await client.publish(AMQPMessage(body: body), exchange: "", routingKey: queue)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let rate = Double(count) / Self.seconds(ContinuousClock.now - started)
                try await client.deleteQueue(queue)
                try await client.declare(AMQPTopology(queues: [.quorum(queue)]))
                return rate
            }
            let raw = try AMQPRawBenchmark.publish(
                url: base.url, queue: queue, count: count, window: window, bodySize: bodySize)
            try await Self.delete(queue, configuration: base, logger: logger)
            print(Self.row("window \(window)", rate, raw))
        }
        print("consume (ack each)       c2d msg/s    raw msg/s   ratio")
        for prefetch in prefetches {
            let count = prefetch == 1 ? messages / 10 : messages
            let queue = "c2d.bench.\(UUID().uuidString.prefix(8).lowercased())"
            let rate = try await AMQPClient.withConnectedClient(
                configuration: base, topology: AMQPTopology(queues: [.quorum(queue)]), logger: logger
            ) { client in
                try await Self.fill(client, queue: queue, count: count, body: body)
                let started = ContinuousClock.now
                var received = 0
                for try await delivery in client.consume(queue: queue, prefetch: prefetch) {
                    try await delivery.ack()
                    received += 1
                    if received == count { break }
                }
                let rate = Double(count) / Self.seconds(ContinuousClock.now - started)
                try await Self.fill(client, queue: queue, count: count, body: body)
                return rate
            }
            let raw = try AMQPRawBenchmark.consume(url: base.url, queue: queue, count: count, prefetch: prefetch)
            try await Self.delete(queue, configuration: base, logger: logger)
            print(Self.row("prefetch \(prefetch)", rate, raw))
        }
    }

    /// Untimed: puts `count` messages in the queue with a wide window.
    static func fill(_ client: AMQPClient, queue: String, count: Int, body: [UInt8]) async throws {
        let batch = (0..<count).map { _ in (message: AMQPMessage(body: body), routingKey: queue) }
        for chunk in stride(from: 0, to: count, by: 1_000) {
            try await client.publish(Array(batch[chunk..<min(count, chunk + 1_000)]), exchange: "")
        }
    }

    static func delete(_ queue: String, configuration: AMQPConfiguration, logger: Logger) async throws {
        try await AMQPClient.withConnectedClient(configuration: configuration, logger: logger) { client in
            try await client.deleteQueue(queue)
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    static func row(_ label: String, _ rate: Double, _ raw: Double) -> String {
        func pad(_ text: String, _ width: Int) -> String {
            String(repeating: " ", count: max(0, width - text.count)) + text
        }
        let name = label + String(repeating: " ", count: max(0, 20 - label.count))
        return name + pad(String(format: "%.0f", rate), 14) + pad(String(format: "%.0f", raw), 13)
            + pad(String(format: "%.2f", rate / raw), 8)
    }
}
