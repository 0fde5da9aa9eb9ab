import Foundation

/// One status change of a job, in the one wire format that both the `c2d.events` messages and the gateway's
/// server-sent event streams carry (docs/architecture.md, "Events"):
///
/// ```json
/// {"id": 17, "jobId": "<32 hex>", "owner": "…", "environment": "…", "attempt": 1, "status": 40,
///  "statusText": "Running algorithm", "time": "2026-12-05T10:00:00.123Z", "reason": "…",
///  "requestId": "…", "traceparent": "00-…"}
/// ```
///
/// `id` is the `job_events.id` of the change: monotonic, so a reader that resumes skips every id it has seen.
/// `time` is when Postgres recorded it (ISO 8601, UTC, milliseconds). `reason`, `requestId` and `traceparent`
/// (the submit request's `x-request-id` and W3C trace context) are left out when absent.
package struct JobEvent: Sendable, Hashable {
    package var id: Int
    package var jobID: JobID
    package var owner: String
    package var environment: String
    package var attempt: Int
    package var status: JobStatus
    package var time: Date
    package var reason: String?
    package var trace: RequestTrace

    package init(
        id: Int, jobID: JobID, owner: String, environment: String, attempt: Int, status: JobStatus, time: Date,
        reason: String?, trace: RequestTrace = RequestTrace()
    ) {
        self.id = id
        self.jobID = jobID
        self.owner = owner
        self.environment = environment
        self.attempt = attempt
        self.status = status
        self.time = time
        self.reason = reason
        self.trace = trace
    }

    /// The routing key on `c2d.events`: `job.<environment>.<status code>`.
    package var routingKey: String { EventNames.routingKey(environment: environment, status: status.rawValue) }

    package static func formatTime(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// Accepts ISO 8601 with or without fractional seconds.
    package static func parseTime(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text))
    }
}

extension JobEvent: Codable {
    private enum CodingKeys: String, CodingKey {
        case id, jobId, owner, environment, attempt, status, statusText, time, reason, requestId, traceparent
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let code = try container.decode(Int.self, forKey: .status)
        guard let status = JobStatus(rawValue: code) else {
            throw DecodingError.dataCorruptedError(
                forKey: .status, in: container, debugDescription: "unknown status code \(code)")
        }
        let text = try container.decode(String.self, forKey: .time)
        guard let time = Self.parseTime(text) else {
            throw DecodingError.dataCorruptedError(
                forKey: .time, in: container, debugDescription: "not an ISO 8601 time: \(text)")
        }
        self.init(
            id: try container.decode(Int.self, forKey: .id), jobID: try container.decode(JobID.self, forKey: .jobId),
            owner: try container.decode(String.self, forKey: .owner),
            environment: try container.decode(String.self, forKey: .environment),
            attempt: try container.decode(Int.self, forKey: .attempt), status: status, time: time,
            reason: try container.decodeIfPresent(String.self, forKey: .reason),
            trace: RequestTrace(
                requestID: try container.decodeIfPresent(String.self, forKey: .requestId),
                traceparent: try container.decodeIfPresent(String.self, forKey: .traceparent)))
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(jobID, forKey: .jobId)
        try container.encode(owner, forKey: .owner)
        try container.encode(environment, forKey: .environment)
        try container.encode(attempt, forKey: .attempt)
        try container.encode(status.rawValue, forKey: .status)
        try container.encode(status.text, forKey: .statusText)
        try container.encode(Self.formatTime(time), forKey: .time)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encodeIfPresent(trace.requestID, forKey: .requestId)
        try container.encodeIfPresent(trace.traceparent, forKey: .traceparent)
    }
}

/// Names of the event exchange and the stream that keeps its history.
package enum EventNames {
    /// Topic exchange; routing key `job.<environment>.<status code>`.
    package static let exchange = "c2d.events"
    /// A RabbitMQ stream bound to the exchange with `#`: every event, replayable by offset or time.
    package static let stream = "c2d.events.stream"
    /// Header carrying the event's `id`.
    package static let eventIDHeader = "c2d-event-id"

    package static func routingKey(environment: String, status: Int) -> String {
        "job.\(environment).\(status)"
    }
}
