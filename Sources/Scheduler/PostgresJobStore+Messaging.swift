import Domain
import Foundation
import Persistence

// The SQL behind the event relay and the poison handler. Kept next to the services that use it; it only touches
// job_events, jobs and event_relay_cursor (migrations 0001 and 0003).

extension PostgresJobStore {
    /// What one relay pass saw: the cursor, the events after it (in id order) and the oldest transaction running
    /// just after the read (see ``EventRelay`` for how gaps in the ids are settled).
    package struct EventBatch: Sendable {
        package var cursor: Int
        package var events: [JobEventMessage]
        /// Every transaction with an id below this had ended when the batch was read.
        package var oldestRunningXID: UInt64
    }

    /// Locks the relay's cursor row for the length of `body` (so two schedulers never publish the same range), reads
    /// up to `limit` events after it, and stores the id `body` returns as the new cursor. Returns nil without
    /// calling `body` when another relay holds the cursor.
    package func relayEvents(
        cursorName: String, limit: Int, _ body: @Sendable (EventBatch) async throws -> Int
    ) async throws -> (from: Int, to: Int)? {
        try await client.withTransaction { tx in
            let cursorRows = try await tx.query(
                "select last_id from event_relay_cursor where name = $1 for update skip locked", [.text(cursorName)])
            guard let cursorRow = cursorRows.first else {
                // Locked by another relay, or missing (a new cursor name): then create it, at the start.
                let exists = try await tx.query("select 1 from event_relay_cursor where name = $1", [.text(cursorName)])
                if exists.isEmpty {
                    _ = try await tx.execute(
                        "insert into event_relay_cursor (name, last_id) values ($1, 0) on conflict do nothing",
                        [.text(cursorName)])
                }
                return nil
            }
            let cursor = try cursorRow.int("last_id")
            let rows = try await tx.query(
                """
                select e.id, e.job_id, e.attempt, e.status, e.reason, e.created_at, j.owner, j.environment,
                    j.request_id, j.traceparent
                from job_events e
                join jobs j on j.id = e.job_id
                where e.id > $1 order by e.id limit $2
                """,
                [.int(Int64(cursor)), .int(Int64(limit))])
            let horizon = try await tx.query("select pg_snapshot_xmin(pg_current_snapshot())::text as xmin")
            let events = try rows.map { row in
                JobEventMessage(
                    id: try row.int("id"), jobId: JobID(uuid: try row.uuid("job_id")).description,
                    owner: try row.string("owner"), environment: try row.string("environment"),
                    attempt: try row.int("attempt"), status: try row.int("status"), time: try row.date("created_at"),
                    reason: try row.optionalString("reason"), requestId: try row.optionalString("request_id"),
                    traceparent: try row.optionalString("traceparent"))
            }
            let batch = EventBatch(
                cursor: cursor, events: events,
                oldestRunningXID: UInt64(try horizon[0].string("xmin")) ?? 0)
            let newCursor = try await body(batch)
            if newCursor > cursor {
                _ = try await tx.execute(
                    "update event_relay_cursor set last_id = $2, updated_at = now() where name = $1",
                    [.text(cursorName), .int(Int64(newCursor))])
            }
            return (cursor, max(cursor, newCursor))
        }
    }

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
