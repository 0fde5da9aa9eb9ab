import AMQP
import App
import ArgumentParser
import Domain
import Foundation
import Logging
import Scheduler
import Synchronization

/// `c2d queues`: the job queues' depths and consumers and the dead letters; `c2d queues requeue-dead` moves dead
/// letters back to their queues after a fix.
struct QueuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queues", abstract: "Show job queue depths, consumers and dead letters; requeue dead letters.",
        subcommands: [QueuesShowCommand.self, RequeueDeadCommand.self], defaultSubcommand: QueuesShowCommand.self)
}

struct QueuesShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Per environment: messages ready and consumers; and the dead-letter count (the default).")

    @Flag(help: "One JSON object.")
    var json = false

    struct Row: Codable {
        var environment: String?
        var queue: String
        var messages: Int?
        var consumers: Int?
        var error: String?
    }

    func run() async throws {
        let settings = try Launcher.settings()
        let logger = Launcher.logger(settings, unlessSet: .warning)
        let rows = try await Launcher.failClearly("queues") {
            try await AMQPClient.withConnectedClient(configuration: settings.amqp, logger: logger) { client in
                var rows: [Row] = []
                let queues =
                    settings.environments.map { ($0.id as String?, JobQueueNames.queue(environment: $0.id)) }
                    + [(nil, JobQueueNames.deadLetterQueue), (nil, PoisonHandler.queue)]
                for (environment, queue) in queues {
                    do {
                        // Passive declare: counts without creating anything.
                        let status = try await client.queueStatus(queue)
                        rows.append(
                            Row(
                                environment: environment, queue: queue, messages: status.messages,
                                consumers: status.consumers))
                    } catch let error as AMQPError where error.replyCode == 404 {
                        rows.append(Row(environment: environment, queue: queue, error: "missing"))
                    }
                }
                return rows
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys  // one line, like every other --json
            let dead = rows.first { $0.queue == JobQueueNames.deadLetterQueue }?.messages
            struct Output: Codable {
                var queues: [Row]
                var deadLetters: Int?
            }
            print(String(decoding: try encoder.encode(Output(queues: rows, deadLetters: dead)), as: UTF8.self))
            return
        }
        func pad(_ text: String, _ width: Int) -> String {
            text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
        }
        print(pad("ENVIRONMENT", 20) + pad("QUEUE", 36) + pad("READY", 10) + "CONSUMERS")
        for row in rows {
            let environment = row.environment ?? (row.queue == JobQueueNames.deadLetterQueue ? "(dead letters)" : "-")
            print(
                pad(environment, 20) + pad(row.queue, 36) + pad(row.messages.map(String.init) ?? row.error ?? "?", 10)
                    + (row.consumers.map(String.init) ?? "-"))
        }
    }
}

struct RequeueDeadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "requeue-dead",
        abstract: "Move dead letters back to their job queues (after fixing what killed the workers).",
        discussion: """
            Each message is published to c2d.jobs with its original routing key (its environment) and acked in \
            c2d.jobs.dead only after the broker confirmed the publish. Messages of jobs that have finished meanwhile \
            (e.g. failed as poison) are dropped by the worker when it tries to claim them.
            """)

    @Option(help: "Stop after this many messages (default: as many as are dead now).")
    var limit: Int?

    @Option(help: "Seconds to wait for the next dead letter before stopping.")
    var idleSeconds: Int = 3

    func run() async throws {
        let settings = try Launcher.settings()
        let logger = Launcher.logger(settings, unlessSet: .warning)
        let idle = Duration.seconds(idleSeconds)
        let (moved, failed) = try await Launcher.failClearly("requeue-dead") {
            try await AMQPClient.withConnectedClient(configuration: settings.amqp, logger: logger) { client in
                let waiting = try await client.queueStatus(JobQueueNames.deadLetterQueue).messages
                let target = min(limit ?? waiting, waiting)
                guard target > 0 else { return (0, 0) }
                let consumer = client.consume(queue: JobQueueNames.deadLetterQueue, prefetch: 100)
                // Ends the loop when nothing arrives for `idle` (others may be draining the queue too).
                let lastProgress = Mutex(ContinuousClock.now)
                let watchdog = Task {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .milliseconds(200))
                        if lastProgress.withLock({ ContinuousClock.now - $0 }) > idle { consumer.cancel() }
                    }
                }
                defer { watchdog.cancel() }
                var moved = 0
                var failed = 0
                for try await delivery in consumer {
                    lastProgress.withLock { $0 = .now }
                    let environment =
                        delivery.routingKey.isEmpty
                        ? (try? JSONDecoder().decode(JobMessage.self, from: Data(delivery.message.body)))?.environment
                        : delivery.routingKey
                    guard let environment else {
                        // Nowhere to send it: leave it dead.
                        try await delivery.nack(requeue: true)
                        failed += 1
                        if moved + failed >= target { break } else { continue }
                    }
                    var headers = delivery.message.headers
                    for key in headers.keys
                    where key.hasPrefix("x-death") || key.hasPrefix("x-first-death")
                        || key.hasPrefix("x-last-death") || key == "x-delivery-count"
                    {
                        headers[key] = nil
                    }
                    do {
                        try await client.publish(
                            AMQPMessage(
                                body: delivery.message.body, headers: headers,
                                contentType: delivery.message.contentType, messageID: delivery.message.messageID),
                            exchange: JobQueueNames.jobsExchange, routingKey: environment)
                        try await delivery.ack()
                        moved += 1
                    } catch {
                        logger.error(
                            "cannot requeue a dead letter; it stays dead",
                            metadata: ["environment": "\(environment)", "error": "\(error)"])
                        try? await delivery.nack(requeue: true)
                        failed += 1
                    }
                    if moved + failed >= target { break }
                }
                return (moved, failed)
            }
        }
        print("requeued \(moved) dead letter(s)" + (failed > 0 ? "; \(failed) could not be requeued" : ""))
        if failed > 0 { throw ExitCode(1) }
    }
}
