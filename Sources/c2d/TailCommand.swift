import AMQP
import App
import ArgumentParser
import Domain
import Foundation
import Logging
import Persistence

#if canImport(Glibc)
    import Glibc
#endif

/// `c2d tail`: follows job status changes from the event stream, optionally replaying from an event id or a time.
struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow job status changes as they happen (from the c2d.events.stream stream).",
        discussion: """
            Without --from, prints events from now on. With --from, first replays what the stream keeps after that \
            point: resuming with the last event id printed loses and repeats nothing.
            """)

    @Option(name: .customLong("environment"), help: "Only events of this environment (repeatable).")
    var environments: [String] = []

    @Option(name: .customLong("status"), help: "Only events with this status code, e.g. 70 (repeatable).")
    var statuses: [Int] = []

    @Option(help: "Only events of this job.")
    var job: String?

    @Option(help: "Start after this event id, or at this ISO 8601 time (e.g. 2025-01-31T12:00:00Z).")
    var from: String?

    @Flag(help: "One JSON object per line.")
    var json = false

    /// The stream's timestamp offsets have one-second granularity and mark publish time, which follows the event's
    /// time: starting this much earlier never misses an event; what comes before the point is skipped by id or time.
    static let replayMargin: TimeInterval = 5

    /// How old an event shown "from now on" may be before the command says the stream is behind.
    static let behindAfter: TimeInterval = 30

    func run() async throws {
        let settings = try Launcher.settings()
        let logger = Launcher.logger(settings, unlessSet: .warning)
        var skipThroughID = 0
        var notBefore: Date?
        var offset: AMQPArgument = .string("next")
        if let from {
            if let id = Int(from) {
                skipThroughID = id
                offset = await Self.offset(afterEventID: id, postgres: settings.postgres, logger: logger)
            } else if let date = JobEvent.parseTime(from) {
                notBefore = date
                offset = .timestamp(date.addingTimeInterval(-Self.replayMargin))
            } else {
                throw ValidationError("--from must be an event id or an ISO 8601 time, not '\(from)'")
            }
        }
        let jobFilter = job?.lowercased().replacingOccurrences(of: "-", with: "")
        try await Launcher.failClearly("tail") {
            try await AMQPClient.withConnectedClient(configuration: settings.amqp, logger: logger) { client in
                // Stream consumers need a prefetch and manual acks.
                let consumer = client.consume(
                    queue: EventNames.stream, prefetch: 500, arguments: ["x-stream-offset": offset])
                var lastID = skipThroughID
                var saidBehind = from != nil  // a replay from a point in the past is old by request
                for try await delivery in consumer {
                    try? await delivery.ack()
                    guard let event = try? JSONDecoder().decode(JobEvent.self, from: Data(delivery.message.body))
                    else { continue }
                    // Replays (the start margin, a reconnect, a relay's duplicate after a crash) repeat ids.
                    guard event.id > lastID else { continue }
                    if let notBefore, event.time < notBefore { continue }
                    lastID = event.id
                    if !environments.isEmpty && !environments.contains(event.environment) { continue }
                    if !statuses.isEmpty && !statuses.contains(event.status.rawValue) { continue }
                    if let jobFilter, event.jobID.description != jobFilter {
                        continue
                    }
                    // "From now on" shows what the relay publishes now; after a backlog (schedulers down, a large
                    // batch) that is old news, and the user should know the stream is behind, not the jobs.
                    let age = -event.time.timeIntervalSinceNow
                    if !saidBehind, age > Self.behindAfter {
                        saidBehind = true
                        FileHandle.standardError.write(
                            Data(
                                "c2d tail: the event relay is catching up: events \(Int(age)) s old come first\n"
                                    .utf8))
                    }
                    print(json ? Self.jsonLine(event) : Self.humanLine(event))
                    // Line by line even into a pipe or file: a reader resumes from the last id it saw.
                    fflush(nil)
                }
            }
        }
    }

    /// Where to start the stream to see everything after event `id`: a little before that event's time (looked up in
    /// Postgres); the start of the stream if Postgres cannot tell.
    static func offset(afterEventID id: Int, postgres: PostgresConfiguration, logger: Logger) async -> AMQPArgument {
        let client = PostgresClient(configuration: postgres, logger: logger)
        do {
            let date = try await PostgresJobStore(client: client).eventTime(atOrAfter: id)
            await client.shutdown()
            return .timestamp(date.addingTimeInterval(-replayMargin))
        } catch {
            logger.warning(
                "cannot look up the event's time; replaying the whole stream", metadata: ["error": "\(error)"])
            await client.shutdown()
            return .string("first")
        }
    }

    static func jsonLine(_ event: JobEvent) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(event)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func humanLine(_ event: JobEvent) -> String {
        var line =
            "\(JobEvent.formatTime(event.time))  #\(event.id)  \(event.environment)  job \(event.jobID)  "
            + "attempt \(event.attempt)  \(event.status.rawValue) \(event.status.text.trimmingCharacters(in: .whitespaces))"
        if let reason = event.reason, !reason.isEmpty { line += "  (\(reason))" }
        return line
    }
}
