import Domain
import Foundation

extension PostgresJobStore {
    // MARK: Batch submission

    /// Inserts `jobs` (status as given, normally 1), one job_events row per job, and the `outbox` messages, in one
    /// short transaction through COPY; returns the outbox messages with their ids, in the order given.
    ///
    /// All or nothing: any failure (a duplicate job id, an unknown environment, an outbox message for a job that
    /// does not exist) rolls the whole batch back. Outbox ids are reserved first with `nextval` over
    /// `generate_series`, one round trip, and then copied in explicitly: COPY cannot return generated keys, and
    /// reserving keeps the outbox rows a plain COPY like the others. Reserved ids are unique but, with concurrent
    /// writers, not contiguous; the relay only needs them unique and roughly ordered.
    package func insertBatch(
        _ jobs: [Job],
        batchID: UUID?,
        outbox: [OutboxMessage]
    ) async throws -> [OutboxMessage] {
        guard !jobs.isEmpty || !outbox.isEmpty else { return [] }
        let batch = batchID.map(PostgresValue.uuid) ?? .null
        let eventRows: [[PostgresValue]] = jobs.map {
            [.uuid($0.id.uuid), .int(Int64($0.attempt)), .int(Int64($0.status.rawValue))]
        }
        let encoder = JSONEncoder()
        let headers = try outbox.map { String(decoding: try encoder.encode($0.headers), as: UTF8.self) }
        let chunks = stride(from: 0, to: jobs.count, by: Self.batchChunkSize).map {
            $0..<min($0 + Self.batchChunkSize, jobs.count)
        }
        var jobRows = try chunks.first.map { try Self.jobRows(jobs[$0], batch: batch) } ?? []

        return try await client.withTransaction { tx in
            var stored = outbox
            if !outbox.isEmpty {
                let ids = try await tx.query(
                    "select nextval('outbox_id_seq') as id from generate_series(1, $1)", [.int(outbox.count)]
                ).map { try $0.int("id") }.sorted()
                for index in stored.indices { stored[index].id = ids[index] }
            }
            // Jobs go in chunks, each a COPY of its own, and the next chunk's workflows are encoded to JSON while
            // the server stores the current one: the encoding is the client's largest cost, and on a machine of
            // two cores it then overlaps the server's work instead of adding to it.
            for number in chunks.indices {
                let next = number + 1 < chunks.count ? chunks[number + 1] : nil
                async let following = Self.jobRows(next.map { jobs[$0] } ?? [], batch: batch)
                try await tx.copy(
                    into: "jobs",
                    columns: [
                        "id", "environment", "owner", "viewers", "agreement_id", "batch_id", "status", "created_at",
                        "workflow",
                    ],
                    rows: jobRows)
                jobRows = try await following
            }
            try await tx.copy(into: "job_events", columns: ["job_id", "attempt", "status"], rows: eventRows)
            try await tx.copy(
                into: "outbox",
                columns: ["id", "job_id", "exchange", "routing_key", "headers", "body"],
                rows: stored.indices.map { index in
                    let message = stored[index]
                    return [
                        .int(message.id), .uuid(message.jobID.uuid), .text(message.exchange),
                        .text(message.routingKey), .json(headers[index]), .text(message.body),
                    ]
                })
            return stored
        }
    }

    /// Jobs per COPY statement in ``insertBatch(_:batchID:outbox:)``: small enough that encoding and storing
    /// overlap well, large enough that the extra round trips don't matter.
    static let batchChunkSize = 2_000

    /// The `jobs` COPY rows of some jobs; encodes each workflow to JSON.
    private static func jobRows(_ jobs: ArraySlice<Job>, batch: PostgresValue) throws -> [[PostgresValue]] {
        let encoder = JSONEncoder()
        return try jobs.map { job in
            let workflow = String(decoding: try encoder.encode(job.workflow), as: UTF8.self)
            return [
                .uuid(job.id.uuid), .text(job.environment), .text(job.owner), .textArray(job.viewers),
                .optional(job.agreementID), batch,
                .int(Int64(job.status.rawValue)), .timestamp(job.createdAt), .json(workflow),
            ]
        }
    }

    // MARK: Idempotent submission

    /// What ``insert(_:idempotencyKey:outbox:)`` did.
    package enum IdempotentInsert: Sendable {
        /// The job is new: it was inserted with its event and outbox row (returned with its id).
        case inserted(OutboxMessage)
        /// The owner already submitted a job under this key: that job, unchanged; nothing was written.
        case existing(Job)
    }

    /// Inserts the job, its first event and its outbox row like ``insert(_:outbox:)``, unless its owner already has
    /// a job under `idempotencyKey`: then that job is returned instead of a duplicate. With a nil key it is a plain
    /// insert and always returns `.inserted`.
    ///
    /// One statement (data-modifying CTEs) rather than a transaction of three: a single round trip and an implicit
    /// transaction, so it is just as atomic and commits with one fsync. Concurrent submissions with the same key
    /// are safe: the unique index on (owner, idempotency_key) lets one through, `on conflict do nothing` makes the
    /// other wait for it and write nothing, and the follow-up read (a new statement) then sees the winner's job.
    package func insert(
        _ job: Job,
        idempotencyKey: String?,
        outbox message: OutboxMessage
    ) async throws -> IdempotentInsert {
        let encoder = JSONEncoder()
        let workflow = String(decoding: try encoder.encode(job.workflow), as: UTF8.self)
        let headers = String(decoding: try encoder.encode(message.headers), as: UTF8.self)
        let rows = try await client.query(
            """
            with job as (
                insert into jobs (
                    id, environment, owner, agreement_id, idempotency_key, status, created_at, workflow, viewers,
                    origin, ocean_signer)
                values ($1, $2, $3, $4, $5, $6, $7, $8, $13, $14, $15)
                on conflict (owner, idempotency_key) where idempotency_key is not null do nothing
                returning id, status
            ), event as (
                insert into job_events (job_id, attempt, status) select id, 0, status from job
            )
            insert into outbox (job_id, exchange, routing_key, headers, body)
            select id, $9, $10, $11, $12 from job
            returning id
            """,
            [
                .uuid(job.id.uuid), .text(job.environment), .text(job.owner), .optional(job.agreementID),
                .optional(idempotencyKey), .int(Int64(job.status.rawValue)), .timestamp(job.createdAt),
                .json(workflow), .text(message.exchange), .text(message.routingKey), .json(headers),
                .text(message.body), .textArray(job.viewers), .text(job.origin.name), .optional(job.origin.oceanSigner),
            ])
        if let row = rows.first {
            var stored = message
            stored.id = try row.int("id")
            return .inserted(stored)
        }
        guard let idempotencyKey, let existing = try await self.job(owner: job.owner, idempotencyKey: idempotencyKey)
        else {
            // Only possible if the conflicting job was deleted in between (retention); the caller may retry.
            throw PostgresError(code: .server, message: "idempotency key conflict, but the existing job is gone")
        }
        return .existing(existing)
    }

    /// The job an owner submitted under `idempotencyKey`, if any.
    package func job(owner: String, idempotencyKey: String) async throws -> Job? {
        try await client.query(
            "select \(Self.jobColumns) from jobs where owner = $1 and idempotency_key = $2",
            [.text(owner), .text(idempotencyKey)]
        ).first.map(Self.job(from:))
    }
}
