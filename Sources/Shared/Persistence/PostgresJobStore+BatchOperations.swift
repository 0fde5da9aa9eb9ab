import Domain
import Foundation

/// Batches as a whole (Armada's job sets): what a batch is, how far its jobs are, its jobs' events, and the
/// idempotency of batch submissions (migration 0013).
extension PostgresJobStore {
    // MARK: What a batch is

    /// Who owns a batch, where it runs and when it began.
    package struct BatchInfo: Sendable, Hashable {
        package var id: UUID
        package var owner: String
        package var environment: String
        package var viewers: [String]
        package var createdAt: Date
    }

    /// The batch, from its `batches` row, or for a batch made before that table existed, from its jobs (every job
    /// of a batch has the batch's owner and environment). Nil if neither exists.
    package func batch(_ id: UUID) async throws -> BatchInfo? {
        if let recorded = try await batchRow(id) { return recorded }
        return try await batchFromJobs(id)
    }

    private func batchRow(_ id: UUID) async throws -> BatchInfo? {
        let rows = try await client.query(
            "select owner, environment, viewers, created_at from batches where id = $1", [.uuid(id)])
        guard let row = rows.first else { return nil }
        return BatchInfo(
            id: id, owner: try row.string("owner"), environment: try row.string("environment"),
            viewers: try row.stringArray("viewers"), createdAt: try row.date("created_at"))
    }

    private func batchFromJobs(_ id: UUID) async throws -> BatchInfo? {
        // The index jobs_batch (batch_id, created_at, id) gives the first job at once.
        let jobs = try await client.query(
            """
            select owner, environment, viewers, created_at from jobs where batch_id = $1
            order by created_at, id limit 1
            """,
            [.uuid(id)])
        guard let row = jobs.first else { return nil }
        return BatchInfo(
            id: id, owner: try row.string("owner"), environment: try row.string("environment"),
            viewers: try row.stringArray("viewers"), createdAt: try row.date("created_at"))
    }

    /// What ``ensureBatch(id:owner:environment:viewers:)`` found.
    package enum BatchEnsured: Sendable, Hashable {
        /// The batch did not exist and now does, as given.
        case created(BatchInfo)
        /// The batch already existed (the caller checks owner and environment).
        case existing(BatchInfo)
    }

    /// Makes sure the batch has its `batches` row: returns the existing batch, or creates it with the given owner,
    /// environment and viewers. A batch that exists only through its jobs (made before migration 0013) counts as
    /// existing and gets its row now, from its jobs, so chunks can be recorded against it.
    package func ensureBatch(
        id: UUID, owner: String, environment: String, viewers: [String]
    ) async throws -> BatchEnsured {
        if let recorded = try await batchRow(id) { return .existing(recorded) }
        if let existing = try await batchFromJobs(id) {
            try await client.execute(
                """
                insert into batches (id, owner, environment, viewers, created_at) values ($1, $2, $3, $4, $5)
                on conflict (id) do nothing
                """,
                [
                    .uuid(id), .text(existing.owner), .text(existing.environment), .textArray(existing.viewers),
                    .timestamp(existing.createdAt),
                ])
            return .existing(existing)
        }
        let inserted = try await client.query(
            """
            insert into batches (id, owner, environment, viewers) values ($1, $2, $3, $4)
            on conflict (id) do nothing returning created_at
            """,
            [.uuid(id), .text(owner), .text(environment), .textArray(viewers)])
        if let row = inserted.first {
            return .created(
                BatchInfo(
                    id: id, owner: owner, environment: environment, viewers: viewers,
                    createdAt: try row.date("created_at")))
        }
        // Another request created it between our read and our insert.
        guard let existing = try await batch(id) else {
            throw PostgresError(code: .server, message: "batch \(id) conflicted on insert but cannot be read")
        }
        return .existing(existing)
    }

    /// Removes a batch row that no job was ever written for (a submission that failed after creating it).
    package func deleteEmptyBatch(_ id: UUID) async throws {
        try await client.execute(
            """
            delete from batches b where b.id = $1
                and not exists (select 1 from jobs where batch_id = b.id)
                and not exists (select 1 from batch_submissions where batch_id = b.id)
            """,
            [.uuid(id)])
    }

    // MARK: How far a batch is

    /// Counts of a batch's jobs by status and by outcome.
    package struct BatchCounts: Sendable, Hashable {
        package var total = 0
        /// Jobs without an outcome yet (queued or running).
        package var unfinished = 0
        package var byStatus: [JobStatus: Int] = [:]
        package var byOutcome: [JobOutcome: Int] = [:]
        /// When the last job finished, once every job has.
        package var lastFinishedAt: Date?
    }

    /// One grouped read over the batch's jobs (index `jobs_batch`).
    package func batchCounts(_ id: UUID) async throws -> BatchCounts {
        let rows = try await client.query(
            """
            select status, outcome, count(*) as n, max(finished_at) as last_finished from jobs
            where batch_id = $1 group by status, outcome
            """,
            [.uuid(id)])
        var counts = BatchCounts()
        var lastFinished: Date?
        for row in rows {
            let count = try row.int("n")
            counts.total += count
            if let status = JobStatus(rawValue: try row.int("status")) { counts.byStatus[status, default: 0] += count }
            if let outcome = try row.optionalString("outcome").flatMap(JobOutcome.init(rawValue:)) {
                counts.byOutcome[outcome, default: 0] += count
            } else {
                counts.unfinished += count
            }
            if let finished = try row.optionalDate("last_finished") {
                lastFinished = max(lastFinished ?? finished, finished)
            }
        }
        counts.lastFinishedAt = counts.unfinished == 0 && counts.total > 0 ? lastFinished : nil
        return counts
    }

    /// The ids of the batch's jobs that have not finished.
    package func unfinishedJobIDs(inBatch id: UUID) async throws -> [JobID] {
        try await client.query(
            "select id from jobs where batch_id = $1 and finished_at is null order by created_at, id", [.uuid(id)]
        ).map { JobID(uuid: try $0.uuid("id")) }
    }

    /// Whether any job of the batch has not finished; stops at the first one.
    package func batchHasUnfinishedJobs(_ id: UUID) async throws -> Bool {
        let rows = try await client.query(
            "select exists (select 1 from jobs where batch_id = $1 and finished_at is null) as open", [.uuid(id)])
        return try rows.first?.bool("open") ?? false
    }

    // MARK: Idempotent batch submission

    /// A chunk of a batch, as ``reserveBatchSubmission(_:)`` records it.
    package struct BatchSubmission: Sendable, Hashable {
        package var owner: String
        package var idempotencyKey: String
        package var batchID: UUID
        /// Index of the chunk's first job within the batch, when the client says.
        package var position: Int?
        package var jobIDs: [JobID]
        /// sha-256 of the request, so a key reused for a different request is noticed.
        package var requestSHA256: String
        /// Its jobs were written (so jobs missing now were removed by retention, not never written).
        package var written: Bool

        package init(
            owner: String, idempotencyKey: String, batchID: UUID, position: Int?, jobIDs: [JobID],
            requestSHA256: String, written: Bool = false
        ) {
            self.owner = owner
            self.idempotencyKey = idempotencyKey
            self.batchID = batchID
            self.position = position
            self.jobIDs = jobIDs
            self.requestSHA256 = requestSHA256
            self.written = written
        }
    }

    /// What ``reserveBatchSubmission(_:)`` did.
    package enum BatchReservation: Sendable, Hashable {
        /// The key is new: the submission is recorded; write its jobs with its job ids.
        case reserved
        /// The owner already submitted under this key: that submission (its jobs may not all be written yet, if
        /// the first request died in between).
        case replay(BatchSubmission)
        /// Another chunk of the batch already covers some of these positions.
        case overlaps(position: Int, count: Int)
    }

    /// Records a chunk's key and job ids before its jobs are written, unless the owner already used the key. With a
    /// position, a chunk that overlaps another chunk of the batch is refused. One transaction holding an advisory
    /// lock on the batch, so two overlapping chunks cannot both pass the check.
    package func reserveBatchSubmission(_ submission: BatchSubmission) async throws -> BatchReservation {
        let ids = "{" + submission.jobIDs.map { $0.uuid.uuidString }.joined(separator: ",") + "}"
        return try await client.withTransaction { tx in
            try await tx.execute(
                "select pg_advisory_xact_lock(hashtextextended($1, 40))", [.text(submission.batchID.uuidString)])
            if let existing = try await Self.batchSubmission(
                owner: submission.owner, key: submission.idempotencyKey, in: tx)
            {
                return .replay(existing)
            }
            if let position = submission.position {
                let overlapping = try await tx.query(
                    """
                    select position, job_count from batch_submissions
                    where batch_id = $1 and position is not null
                        and int4range(position, position + job_count) && int4range($2::int, $3::int)
                    order by position limit 1
                    """,
                    [
                        .uuid(submission.batchID), .int(Int64(position)),
                        .int(Int64(position + submission.jobIDs.count)),
                    ])
                if let row = overlapping.first {
                    return .overlaps(position: try row.int("position"), count: try row.int("job_count"))
                }
            }
            let inserted = try await tx.execute(
                """
                insert into batch_submissions (
                    owner, idempotency_key, batch_id, position, job_count, job_ids, request_sha256)
                values ($1, $2, $3, $4, $5, $6::uuid[], $7)
                on conflict (owner, idempotency_key) do nothing
                """,
                [
                    .text(submission.owner), .text(submission.idempotencyKey), .uuid(submission.batchID),
                    .optional(submission.position), .int(Int64(submission.jobIDs.count)), .text(ids),
                    .text(submission.requestSHA256),
                ])
            if inserted == 1 { return .reserved }
            // The same key for another batch, committed meanwhile (the lock is per batch).
            guard
                let existing = try await Self.batchSubmission(
                    owner: submission.owner, key: submission.idempotencyKey, in: tx)
            else {
                throw PostgresError(code: .server, message: "batch idempotency key conflicted but cannot be read")
            }
            return .replay(existing)
        }
    }

    /// The submission an owner made under `key`, if any.
    package func batchSubmission(owner: String, key: String) async throws -> BatchSubmission? {
        try await client.withTransaction { tx in try await Self.batchSubmission(owner: owner, key: key, in: tx) }
    }

    private static func batchSubmission(
        owner: String, key: String, in tx: PostgresTransaction
    ) async throws -> BatchSubmission? {
        let rows = try await tx.query(
            """
            select batch_id, position, job_ids::text[] as job_ids, request_sha256, written_at is not null as written
            from batch_submissions where owner = $1 and idempotency_key = $2
            """,
            [.text(owner), .text(key)])
        guard let row = rows.first else { return nil }
        return BatchSubmission(
            owner: owner, idempotencyKey: key, batchID: try row.uuid("batch_id"),
            position: try row.optionalInt("position"),
            jobIDs: try row.stringArray("job_ids").compactMap { JobID($0) },
            requestSHA256: try row.string("request_sha256"), written: try row.bool("written"))
    }

    /// Notes that a submission's jobs were written.
    package func markBatchSubmissionWritten(owner: String, key: String) async throws {
        try await client.execute(
            "update batch_submissions set written_at = now() where owner = $1 and idempotency_key = $2",
            [.text(owner), .text(key)])
    }

    /// How many of these jobs exist.
    package func existingJobCount(_ ids: [JobID]) async throws -> Int {
        guard !ids.isEmpty else { return 0 }
        let literal = "{" + ids.map { $0.uuid.uuidString }.joined(separator: ",") + "}"
        return try await client.query(
            "select count(*) as n from jobs where id = any($1::uuid[])", [.text(literal)]
        ).first?.int("n") ?? 0
    }

    /// The jobs with these ids, in the order given (missing ones left out).
    package func jobs(_ ids: [JobID]) async throws -> [Job] {
        guard !ids.isEmpty else { return [] }
        let literal = "{" + ids.map { $0.uuid.uuidString }.joined(separator: ",") + "}"
        let rows = try await client.query(
            "select \(Self.jobColumns) from jobs where id = any($1::uuid[])", [.text(literal)])
        let byID = Dictionary(
            try rows.map { row in
                let job = try Self.job(from: row); return (job.id, job)
            }
        ) {
            first, _ in first
        }
        return ids.compactMap { byID[$0] }
    }
}
