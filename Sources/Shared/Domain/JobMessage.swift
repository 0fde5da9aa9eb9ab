/// What travels on `c2d.jobs` for one job: a small JSON body; Postgres holds the workflow (DESIGN §3).
public struct JobMessage: Sendable, Hashable, Codable {
    public var jobId: JobID
    public var environment: String

    public init(jobId: JobID, environment: String) {
        self.jobId = jobId
        self.environment = environment
    }

    /// Header names carried on every job message.
    public enum Header {
        public static let jobID = "c2d-job-id"
        public static let requestID = "x-request-id"
        /// W3C trace context.
        public static let traceparent = "traceparent"
    }
}

/// Names of c2d's exchanges and queues (DESIGN §3).
public enum JobQueueNames {
    /// Direct exchange; the routing key is the environment id.
    public static let jobsExchange = "c2d.jobs"
    /// Dead-letter exchange for messages past their delivery limit.
    public static let deadLetterExchange = "c2d.dead"
    public static let deadLetterQueue = "c2d.jobs.dead"

    /// The quorum queue of one environment.
    public static func queue(environment: String) -> String {
        "c2d.jobs.\(environment)"
    }
}
