import Domain
import Foundation

// Every read of `job_events` as `JobEvent`s: the gateway's streams (one job, one environment, all, one batch) and
// the event relay that publishes them to `c2d.events`. They share one select list and one row decoder.

extension PostgresJobStore {
    /// The channel notified when job events commit (migrations 0012 and 0017): the event relays and the gateways'
    /// event streams listen on it (``withNotifications(channels:_:)``).
    package static let eventsChannel = "c2d_events"

    /// The columns `JobEvent(row:)` reads, for `job_events e join jobs j`.
    static let eventColumns = """
        e.id, e.job_id, j.environment, j.owner, e.attempt, e.status, e.reason, e.created_at, j.request_id,
        j.traceparent
        """

    /// Status changes with an id above `after`, oldest first: of one job, or of all jobs (optionally of one
    /// environment). Reads by the `job_events` primary key, so following the stream stays cheap.
    package func statusEvents(
        after: Int, jobID: JobID? = nil, environment: String? = nil, limit: Int = 500
    ) async throws -> [JobEvent] {
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
            select \(Self.eventColumns)
            from job_events e join jobs j on j.id = e.job_id
            where \(conditions.joined(separator: " and ")) order by e.id limit $\(parameters.count)
            """,
            parameters
        ).map(JobEvent.init(row:))
    }

    /// Status changes of the batch's jobs with an id above `after` and at most `upTo` (see `SettledEvents`), oldest
    /// first. Reads each job's events through `job_events_job` (job_id, id), or the events after `after` through the
    /// primary key when there are few: the planner picks.
    package func batchStatusEvents(
        after: Int, upTo: Int = .max, batchID: UUID, limit: Int = 500
    ) async throws -> [JobEvent] {
        try await client.query(
            """
            select \(Self.eventColumns)
            from jobs j join job_events e on e.job_id = j.id
            where j.batch_id = $1 and e.id > $2 and e.id <= $4 order by e.id limit $3
            """,
            [.uuid(batchID), .int(Int64(after)), .int(Int64(limit)), .int(Int64(upTo))]
        ).map(JobEvent.init(row:))
    }

    // MARK: The event relay

    /// What one relay pass saw: the cursor, the events after it (in id order) and the oldest transaction running
    /// just after the read (see `EventRelay` for how gaps in the ids are settled).
    package struct EventBatch: Sendable {
        package var cursor: Int
        package var events: [JobEvent]
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
            let events = try await tx.query(
                """
                select \(Self.eventColumns)
                from job_events e join jobs j on j.id = e.job_id
                where e.id > $1 order by e.id limit $2
                """,
                [.int(Int64(cursor)), .int(Int64(limit))]
            ).map(JobEvent.init(row:))
            let horizon = try await tx.query("select pg_snapshot_xmin(pg_current_snapshot())::text as xmin")
            let batch = EventBatch(
                cursor: cursor, events: events, oldestRunningXID: UInt64(try horizon[0].string("xmin")) ?? 0)
            let newCursor = try await body(batch)
            if newCursor > cursor {
                _ = try await tx.execute(
                    "update event_relay_cursor set last_id = $2, updated_at = now() where name = $1",
                    [.text(cursorName), .int(Int64(newCursor))])
            }
            return (cursor, max(cursor, newCursor))
        }
    }

    /// When event `id` was recorded, or the first event after it, or now: where a reader of the `c2d.events`
    /// stream that has seen everything through `id` starts (less a margin).
    package func eventTime(atOrAfter id: Int) async throws -> Date {
        let rows = try await client.query(
            """
            select coalesce((select created_at from job_events where id = $1),
                (select min(created_at) from job_events where id > $1), now()) as at
            """,
            [.int(Int64(id))])
        return try rows[0].date("at")
    }

    /// The lowest event id above `id`, if any (the relay's test for a gap after its cursor).
    package func nextEventID(after id: Int) async throws -> Int? {
        let rows = try await client.query("select min(id) as next from job_events where id > $1", [.int(Int64(id))])
        return try rows.first?.optionalInt("next")
    }

    /// A transaction id of its own, larger than every transaction id assigned before the call (a statement of its
    /// own, so the transaction ends at once; see `EventHorizon`).
    package func transactionMarker() async throws -> UInt64 {
        let marker = try await client.query("select pg_current_xact_id()::text as xid")
        return UInt64(try marker[0].string("xid")) ?? UInt64.max
    }
}

extension JobEvent {
    init(row: PostgresRow) throws {
        self.init(
            id: try row.int("id"), jobID: JobID(uuid: try row.uuid("job_id")), owner: try row.string("owner"),
            environment: try row.string("environment"), attempt: try row.int("attempt"),
            status: JobStatus(rawValue: try row.int("status")) ?? .queued, time: try row.date("created_at"),
            reason: try row.optionalString("reason"),
            trace: RequestTrace(
                requestID: try row.optionalString("request_id"), traceparent: try row.optionalString("traceparent")))
    }
}
