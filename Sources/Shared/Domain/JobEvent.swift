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

    /// ISO 8601 in UTC with milliseconds, `2026-12-05T10:00:00.123Z`: the milliseconds of the time rounded to the
    /// microsecond (Postgres's precision) first, so a time of exactly .123 s is not written .122 from its binary
    /// fraction, as `Date.ISO8601FormatStyle` writes half of them. Written by hand: every event of the relay and of
    /// every event stream needs it (docs/operations.md, "The event relay's ceiling is the broker's").
    package static func formatTime(_ date: Date) -> String {
        let microseconds = (date.timeIntervalSince1970 * 1_000_000).rounded()
        // Beyond years 1970-9999 (and far beyond any event), Foundation's formatter.
        guard microseconds >= 0, microseconds < 253_402_300_800_000_000 else {
            return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        }
        let milliseconds = Int64(microseconds) / 1_000
        let seconds = milliseconds / 1_000
        let (year, month, day) = CivilDate.civil(fromDays: seconds / 86_400)
        let secondOfDay = seconds % 86_400
        var text = [UInt8]()
        text.reserveCapacity(24)
        func digits(_ value: Int64, _ count: Int, then separator: Unicode.Scalar) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            while divisor > 0 {
                text.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
            text.append(UInt8(ascii: separator))
        }
        digits(year, 4, then: "-")
        digits(month, 2, then: "-")
        digits(day, 2, then: "T")
        digits(secondOfDay / 3_600, 2, then: ":")
        digits(secondOfDay / 60 % 60, 2, then: ":")
        digits(secondOfDay % 60, 2, then: ".")
        digits(milliseconds % 1_000, 3, then: "Z")
        return String(decoding: text, as: UTF8.self)
    }

    /// Accepts ISO 8601 with or without fractional seconds.
    package static func parseTime(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text))
    }
}

extension JobEvent {
    /// The event as JSON: the bytes `JSONEncoder` with `.sortedKeys` writes for it, written by hand because the
    /// relay and every event stream encode every event, and the generic encoder was a quarter of the relay's CPU.
    package var json: [UInt8] {
        var json = JSONText(capacity: 320)
        var object = JSONText.ObjectState()
        json.key("attempt", &object)
        json.integer(attempt)
        json.key("environment", &object)
        json.string(environment)
        json.key("id", &object)
        json.integer(id)
        json.key("jobId", &object)
        json.string(jobID.description)
        json.key("owner", &object)
        json.string(owner)
        if let reason { json.key("reason", &object); json.string(reason) }
        if let requestID = trace.requestID { json.key("requestId", &object); json.string(requestID) }
        json.key("status", &object)
        json.integer(status.rawValue)
        json.key("statusText", &object)
        json.string(status.text)
        json.key("time", &object)
        json.string(Self.formatTime(time))
        if let traceparent = trace.traceparent { json.key("traceparent", &object); json.string(traceparent) }
        json.end(object)
        return json.bytes
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
