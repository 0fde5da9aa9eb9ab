import Domain
import Foundation

extension PostgresJobStore {
    /// What the poison handler found, and did, for a dead-lettered job message.
    package enum DeadLetterResolution: Sendable, Equatable {
        /// The job was failed with reason poison in this call.
        case failedAsPoison(attempt: Int)
        /// Finished already (or never existed): nothing to do.
        case finished
        case notFound
        /// A worker holds a live lease on the job until this time.
        case leased(until: Date)
        /// Unfinished and unleased, but claimed fewer times than the poison threshold: the message died for another
        /// reason (e.g. Postgres was down while workers tried to claim it). Its dispatch was cleared, so the
        /// dispatcher publishes it again.
        case notPoison(attempt: Int)
    }

    /// Fails the job as poison if it is unfinished, no worker holds a live lease on it, and it was claimed at least
    /// `minimumAttempts` times (each claim whose worker died left an attempt behind). A conditional, locked write:
    /// it never touches a finished job or one a live worker is running.
    package func failPoisonedJob(jobID: JobID, minimumAttempts: Int, reason: String) async throws
        -> DeadLetterResolution
    {
        try await client.withTransaction { tx in
            let rows = try await tx.query(
                """
                select finished_at, lease_until, lease_until > now() as leased, attempt, environment
                from jobs where id = $1 for update
                """,
                [.uuid(jobID.uuid)])
            guard let row = rows.first else { return .notFound }
            if try row.optionalDate("finished_at") != nil { return .finished }
            if try row.optionalBool("leased") == true, let until = try row.optionalDate("lease_until") {
                return .leased(until: until)
            }
            let attempt = try row.int("attempt")
            guard attempt >= minimumAttempts else {
                _ = try await tx.execute(
                    "update jobs set dispatched_at = null where id = $1 and admitted_at is not null",
                    [.uuid(jobID.uuid)])
                return .notPoison(attempt: attempt)
            }
            let failure = "poison: \(reason)"
            _ = try await tx.execute(
                """
                update jobs set status = $2, outcome = 'failed', failure_reason = $3, finished_at = now(),
                    lease_until = null, worker_id = null
                where id = $1 and finished_at is null
                """,
                [.uuid(jobID.uuid), .int(Int64(JobStatus.finished.rawValue)), .text(failure)])
            _ = try await tx.execute(
                "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, $4)",
                [.uuid(jobID.uuid), .int(Int64(attempt)), .int(Int64(JobStatus.finished.rawValue)), .text(failure)])
            return .failedAsPoison(attempt: attempt)
        }
    }
}
