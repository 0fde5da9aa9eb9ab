import Domain
import Foundation

/// One job status change as published on the `c2d.events` topic exchange (DESIGN §3), with routing key
/// `job.<environment>.<status code>`. `id` is the `job_events.id` of the change: monotonic, so a reader that
/// resumes skips every id it has already seen.
package struct JobEventMessage: Sendable, Hashable, Codable {
    package var id: Int
    package var jobId: String
    package var owner: String
    package var environment: String
    package var attempt: Int
    package var status: Int
    package var statusText: String
    /// When Postgres recorded the change: ISO 8601, UTC, milliseconds.
    package var time: String
    package var reason: String?
    /// The `x-request-id` and W3C `traceparent` of the request that submitted the job.
    package var requestId: String?
    package var traceparent: String?

    package init(
        id: Int, jobId: String, owner: String, environment: String, attempt: Int, status: Int, time: Date,
        reason: String?, requestId: String?, traceparent: String?
    ) {
        self.id = id
        self.jobId = jobId
        self.owner = owner
        self.environment = environment
        self.attempt = attempt
        self.status = status
        self.statusText = JobStatus(rawValue: status)?.text ?? "unknown"
        self.time = Self.format(time)
        self.reason = reason
        self.requestId = requestId
        self.traceparent = traceparent
    }

    package var routingKey: String { EventNames.routingKey(environment: environment, status: status) }

    package var date: Date? { Self.parse(time) }

    package static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// Accepts ISO 8601 with or without fractional seconds.
    package static func parse(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text))
    }
}

/// Names of the event exchange and the stream that keeps its history.
package enum EventNames {
    package static let exchange = "c2d.events"
    package static let stream = "c2d.events.stream"
    package static let eventIDHeader = "c2d-event-id"

    package static func routingKey(environment: String, status: Int) -> String {
        "job.\(environment).\(status)"
    }
}
