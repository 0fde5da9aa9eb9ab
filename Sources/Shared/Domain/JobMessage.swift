/// What travels on `c2d.jobs` for one job: a small JSON body; Postgres holds the workflow.
package struct JobMessage: Sendable, Hashable, Codable {
    package var jobId: JobID
    package var environment: String

    package init(jobId: JobID, environment: String) {
        self.jobId = jobId
        self.environment = environment
    }

    /// Header names carried on every job message.
    package enum Header {
        package static let jobID = "c2d-job-id"
        package static let requestID = "x-request-id"
        /// W3C trace context.
        package static let traceparent = "traceparent"
    }

    /// The wire format (docs/architecture.md, "Messages and events"): body `{"jobId": "<32 hex>", "environment": "<id>"}`
    /// (JSON, `application/json`), message id = the job id, headers `c2d-job-id` and, when the submit request had
    /// them, `x-request-id` and `traceparent`; published persistent to `c2d.jobs` with the environment as routing
    /// key. The dispatcher, the only publisher of job messages, builds them here.
    package var body: [UInt8] {
        // Both fields are plain identifiers; no escaping is needed, and this runs once per dispatched job.
        Array("{\"jobId\":\"\(jobId)\",\"environment\":\"\(environment)\"}".utf8)
    }

    package func headers(trace: RequestTrace = RequestTrace()) -> [String: String] {
        var headers = [Header.jobID: jobId.description]
        if let requestID = trace.requestID { headers[Header.requestID] = requestID }
        if let traceparent = trace.traceparent { headers[Header.traceparent] = traceparent }
        return headers
    }
}

/// The request a job came from, carried on its messages so it can be followed across gateway, queue and worker
/// logs.
package struct RequestTrace: Sendable, Hashable {
    package var requestID: String?
    /// A W3C `traceparent`.
    package var traceparent: String?

    package init(requestID: String? = nil, traceparent: String? = nil) {
        self.requestID = requestID
        self.traceparent = traceparent
    }

    /// A fresh W3C trace context for `requestID`.
    package static func new(requestID: String?) -> RequestTrace {
        func hex(_ count: Int) -> String {
            var text = ""
            for _ in 0..<count {
                let byte = UInt8.random(in: 0...255)
                text += byte < 16 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
            }
            return text
        }
        return RequestTrace(requestID: requestID, traceparent: "00-\(hex(16))-\(hex(8))-01")
    }
}

/// Names of c2d's job exchanges and queues (docs/architecture.md, "Messages and events").
package enum JobQueueNames {
    /// Direct exchange; the routing key is the environment id.
    package static let jobsExchange = "c2d.jobs"
    /// Dead-letter exchange for messages past their delivery limit.
    package static let deadLetterExchange = "c2d.dead"
    package static let deadLetterQueue = "c2d.jobs.dead"

    /// The quorum queue of one environment.
    package static func queue(environment: String) -> String {
        "c2d.jobs.\(environment)"
    }
}
