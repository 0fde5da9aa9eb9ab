import Domain
import Foundation

extension PostgresJobStore {
    // MARK: Batch submission

    /// Inserts `jobs` (status as given, normally 1) and one job_events row per job, in one short transaction through
    /// COPY. All or nothing: any failure (a duplicate job id, an unknown environment) rolls the whole batch back. The
    /// jobs wait for admission; the dispatchers are woken after the commit. `workflowJSON`, when given, is each job's
    /// workflow already encoded (by the validator, ``WorkflowValidator/validatedJSON(_:environment:)``), in order.
    package func insertBatch(
        _ jobs: [Job], workflowJSON: [String]? = nil, batchID: UUID?, trace: RequestTrace = RequestTrace()
    ) async throws {
        guard !jobs.isEmpty else { return }
        let batch = batchID.map(PostgresValue.uuid) ?? .null
        let eventRows: [[PostgresValue]] = jobs.map {
            [.uuid($0.id.uuid), .int(Int64($0.attempt)), .int(Int64($0.status.rawValue))]
        }
        let chunks = stride(from: 0, to: jobs.count, by: Self.batchChunkSize).map {
            $0..<min($0 + Self.batchChunkSize, jobs.count)
        }
        // One JSON per job or none: a list of another length is not trusted, and the workflows are encoded here.
        let encoded = workflowJSON?.count == jobs.count ? workflowJSON : nil
        @Sendable func rows(_ range: Range<Int>?) throws -> [[PostgresValue]] {
            guard let range else { return [] }
            return try Self.jobRows(jobs[range], workflowJSON: encoded?[range], batch: batch, trace: trace)
        }
        var jobRows = try rows(chunks.first)

        try await client.withTransaction { tx in
            // Jobs go in chunks, each a COPY of its own, and the next chunk's rows are built (its workflows encoded
            // to JSON, unless the caller passed them) while the server stores the current one: the encoding is the
            // client's largest cost, and on a machine of two cores it then overlaps the server's work.
            for number in chunks.indices {
                let next = number + 1 < chunks.count ? chunks[number + 1] : nil
                async let following = rows(next)
                try await tx.copy(
                    into: "jobs",
                    columns: [
                        "id", "environment", "owner", "viewers", "agreement_id", "batch_id", "status", "created_at",
                        "priority", "request_id", "traceparent", "workflow",
                    ],
                    rows: jobRows)
                jobRows = try await following
            }
            try await tx.copy(into: "job_events", columns: ["job_id", "attempt", "status"], rows: eventRows)
        }
        wakeups.wake(Set(jobs.map(\.environment)))
    }

    /// Jobs per COPY statement in ``insertBatch(_:batchID:trace:)``: small enough that encoding and storing
    /// overlap well, large enough that the extra round trips don't matter.
    static let batchChunkSize = 2_000

    /// The `jobs` COPY rows of some jobs; encodes each workflow to JSON unless `workflowJSON` has it.
    private static func jobRows(
        _ jobs: ArraySlice<Job>, workflowJSON: ArraySlice<String>?, batch: PostgresValue, trace: RequestTrace
    ) throws -> [[PostgresValue]] {
        try jobs.indices.map { index in
            let job = jobs[index]
            let workflow = try workflowJSON?[index] ?? WorkflowJSON(job.workflow).text
            return [
                .uuid(job.id.uuid), .text(job.environment), .text(job.owner), .textArray(job.viewers),
                .optional(job.agreementID), batch,
                .int(Int64(job.status.rawValue)), .timestamp(job.createdAt), .int(Int64(job.priority)),
                .optional(trace.requestID), .optional(trace.traceparent), .json(workflow),
            ]
        }
    }

    // MARK: Idempotent submission

    /// What ``insert(_:idempotencyKey:trace:)`` did.
    package enum IdempotentInsert: Sendable {
        /// The job is new: it was inserted with its first event. `createdEpoch` is its creation time as Postgres's
        /// `extract(epoch …)` text (Ocean's status objects show it so).
        case inserted(createdEpoch: String)
        /// The owner already submitted a job under this key: that job, unchanged; nothing was written.
        case existing(Job)
    }

    /// Inserts the job (waiting for admission) and its first event, unless its owner already has a job under
    /// `idempotencyKey`: then that job is returned instead of a duplicate. With a nil key it is a plain insert and
    /// always returns `.inserted`. The dispatchers are woken after the commit (``SubmitWakeups``). `workflowJSON`,
    /// when given, is the job's workflow already encoded (``WorkflowValidator/validatedJSON(_:environment:)``).
    ///
    /// One statement (a data-modifying CTE) rather than a transaction of two: a single round trip and an implicit
    /// transaction, so it is just as atomic and commits with one fsync. Inserts made concurrently share that
    /// statement (``CoalescedJobInserts``). Concurrent submissions with the same key are safe: the unique index on
    /// (owner, idempotency_key) lets one through, `on conflict do nothing` makes the others wait for it (or skips
    /// them, in the same statement) and write nothing, and the follow-up read (a new statement) then sees the
    /// winner's job.
    @discardableResult
    package func insert(
        _ job: Job, workflowJSON: String? = nil, idempotencyKey: String? = nil, trace: RequestTrace = RequestTrace()
    ) async throws -> IdempotentInsert {
        let workflow = try workflowJSON ?? WorkflowJSON(job.workflow).text
        let parameters: [PostgresValue] = [
            .uuid(job.id.uuid), .text(job.environment), .text(job.owner), .optional(job.agreementID),
            .optional(idempotencyKey), .int(Int64(job.status.rawValue)), .timestamp(job.createdAt),
            .json(workflow), .textArray(job.viewers), .int(Int64(job.priority)), .optional(trace.requestID),
            .optional(trace.traceparent), .text(job.origin.name), .optional(job.origin.oceanSigner),
        ]
        let inserts = idempotencyKey == nil ? coalescedInserts : coalescedIdempotentInserts
        let createdEpoch = try await inserts.insert(
            CoalescedJobInserts.Row(
                jobID: job.id.uuid, agreementID: job.agreementID, owner: job.owner, idempotencyKey: idempotencyKey,
                parameters: parameters))
        if let createdEpoch {
            wakeups.wake([job.environment])
            return .inserted(createdEpoch: createdEpoch)
        }
        guard let idempotencyKey, let existing = try await self.job(owner: job.owner, idempotencyKey: idempotencyKey)
        else {
            // Only possible if the conflicting job was deleted in between (retention); the caller may retry.
            throw PostgresError(code: .server, message: "idempotency key conflict, but the existing job is gone")
        }
        return .existing(existing)
    }

    /// The first event of each inserted job goes in with it, in one data-modifying CTE over `rows` rows of 14
    /// parameters each. With `idempotent`, a job whose owner already has a job under its key is skipped (`on
    /// conflict do nothing`), and returns no row.
    ///
    /// Without a key, a plain insert: `on conflict` would make every insert speculative (Postgres inserts the row,
    /// checks the arbiter index, then confirms it with one more WAL record), for a conflict that cannot happen on a
    /// null key. A duplicate job id fails the same way in both.
    static func jobInsert(rows: Int, idempotent: Bool) -> String {
        let built = idempotent ? idempotentInsertStatements : plainInsertStatements
        return rows <= built.count ? built[rows - 1] : jobInsertText(rows: rows, idempotent: idempotent)
    }

    private static func jobInsertText(rows: Int, idempotent: Bool) -> String {
        let values = (0..<rows).map { row in
            "(" + (1...14).map { "$\(row * 14 + $0)" }.joined(separator: ", ") + ")"
        }
        return """
            with job as (
                insert into jobs (
                    id, environment, owner, agreement_id, idempotency_key, status, created_at, workflow, viewers,
                    priority, request_id, traceparent, origin, ocean_signer)
                values \(values.joined(separator: ", "))
                \(idempotent ? "on conflict (owner, idempotency_key) where idempotency_key is not null do nothing" : "")
                returning id, status, extract(epoch from created_at)::text as created_epoch
            ), event as (
                insert into job_events (job_id, attempt, status) select id, 0, status from job
            )
            select id, created_epoch from job
            """
    }

    /// The inserts of 1 to ``CoalescedJobInserts/maximumRows`` jobs, built once.
    private static let plainInsertStatements = (1...CoalescedJobInserts.maximumRows).map {
        jobInsertText(rows: $0, idempotent: false)
    }
    private static let idempotentInsertStatements = (1...CoalescedJobInserts.maximumRows).map {
        jobInsertText(rows: $0, idempotent: true)
    }

    /// Admits jobs directly, without the dispatcher's room check or a message: for tools and tests that drive
    /// claims themselves. Production admission goes through ``admit(environment:limit:workerStaleAfter:maximumGroups:)``.
    package func markAdmitted(_ ids: [JobID]) async throws {
        guard !ids.isEmpty else { return }
        try await client.execute(
            """
            update jobs set admitted_at = now(), dispatched_at = now()
            where id = any($1::text[]::uuid[]) and admitted_at is null and finished_at is null
            """,
            [.textArray(ids.map { $0.uuid.uuidString })])
    }

    /// The job an owner submitted under `idempotencyKey`, if any.
    package func job(owner: String, idempotencyKey: String) async throws -> Job? {
        try await client.query(
            "select \(Self.jobColumns) from jobs where owner = $1 and idempotency_key = $2",
            [.text(owner), .text(idempotencyKey)]
        ).first.map(Self.job(from:))
    }
}
