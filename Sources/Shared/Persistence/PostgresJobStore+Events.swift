import Domain
import Foundation

extension PostgresJobStore {
    /// One status change as clients see it in the event streams.
    package struct StatusEvent: Sendable, Hashable {
        package var id: Int
        package var jobID: JobID
        package var environment: String
        package var owner: String
        package var attempt: Int
        package var status: JobStatus
        package var reason: String?
        package var at: Date
    }

    /// Status changes with an id above `after`, oldest first: of one job, or of all jobs (optionally of one
    /// environment). Reads by the `job_events` primary key, so following the stream stays cheap.
    package func statusEvents(
        after: Int, jobID: JobID? = nil, environment: String? = nil, limit: Int = 500
    ) async throws -> [StatusEvent] {
        var conditions = ["e.id > $1"]
        var parameters: [PostgresValue] = [.int(Int64(after))]
        if let jobID {
            parameters.append(.uuid(jobID.uuid))
            conditions.append("e.job_id = $\(parameters.count)")
        }
        if let environment {
            parameters.append(.text(environment))
            conditions.append("j.environment = $\(parameters.count)")
        }
        parameters.append(.int(Int64(limit)))
        return try await client.query(
            """
            select e.id, e.job_id, j.environment, j.owner, e.attempt, e.status, e.reason, e.created_at
            from job_events e join jobs j on j.id = e.job_id
            where \(conditions.joined(separator: " and ")) order by e.id limit $\(parameters.count)
            """,
            parameters
        ).map { row in
            StatusEvent(
                id: try row.int("id"), jobID: JobID(uuid: try row.uuid("job_id")),
                environment: try row.string("environment"), owner: try row.string("owner"),
                attempt: try row.int("attempt"), status: JobStatus(rawValue: try row.int("status")) ?? .queued,
                reason: try row.optionalString("reason"), at: try row.date("created_at"))
        }
    }
}
