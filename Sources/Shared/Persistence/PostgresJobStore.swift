import Domain
import Foundation
import Logging

/// The jobs, their events, results and outbox in Postgres: the source of truth (DESIGN §2, §6).
/// Every write by a worker is fenced by the attempt it holds, so a stale worker's late write is refused.
package struct PostgresJobStore: Sendable {
    package let client: PostgresClient

    package init(client: PostgresClient) {
        self.client = client
    }

    // MARK: Environments

    /// Records the environments this process serves (insert or refresh), so jobs can reference them.
    package func upsertEnvironments(_ environments: [ComputeEnvironment]) async throws {
        for environment in environments {
            let definition = String(decoding: try JSONEncoder().encode(environment), as: UTF8.self)
            try await client.execute(
                """
                insert into environments (id, definition, last_seen) values ($1, $2, now())
                on conflict (id) do update set definition = excluded.definition, last_seen = now()
                """,
                [.text(environment.id), .json(definition)])
        }
    }

    // MARK: Submission

    /// A message to publish after the transaction that wrote it commits.
    package struct OutboxMessage: Sendable, Hashable {
        package var id: Int
        package var jobID: JobID
        package var exchange: String
        package var routingKey: String
        package var headers: [String: String]
        package var body: String

        package init(
            id: Int = 0, jobID: JobID, exchange: String, routingKey: String, headers: [String: String], body: String
        ) {
            self.id = id
            self.jobID = jobID
            self.exchange = exchange
            self.routingKey = routingKey
            self.headers = headers
            self.body = body
        }
    }

    /// Inserts the job (status 1), its first event and its outbox row atomically; returns the outbox row with its
    /// id. One statement, so one round trip and one commit (see `insert(_:idempotencyKey:outbox:)`).
    package func insert(_ job: Job, outbox message: OutboxMessage) async throws -> OutboxMessage {
        switch try await insert(job, idempotencyKey: nil, outbox: message) {
        case .inserted(let stored):
            return stored
        case .existing:
            // Without a key there is nothing to conflict with.
            throw PostgresError(code: .server, message: "a job insert without an idempotency key found a duplicate")
        }
    }

    package func markOutboxSent(ids: [Int]) async throws {
        guard !ids.isEmpty else { return }
        try await client.execute(
            "update outbox set sent_at = now(), attempts = attempts + 1 where id = any($1::bigint[])",
            [.text(Self.arrayLiteral(ids))])
    }

    /// Takes up to `limit` unsent outbox rows that are due (older than `minimumAge`, past their retry time) and
    /// hands them to `publish` while they stay locked, so two relays never publish the same row at once. Rows
    /// `publish` reports as sent are marked; failed rows wait before the next try (1 s doubling to 60 s), so one
    /// message that cannot be routed never holds back the others.
    package func relayOutbox(
        limit: Int, minimumAge: Duration,
        publish: @Sendable ([OutboxMessage]) async -> (sent: [Int], failed: [Int], error: String?)
    ) async throws -> (sent: Int, failed: Int) {
        try await client.withTransaction { tx in
            let rows = try await tx.query(
                """
                select id, job_id, exchange, routing_key, headers::text as headers, body from outbox
                where sent_at is null and next_attempt_at <= now() and created_at < now() - make_interval(secs => $1)
                order by next_attempt_at, id limit $2 for update skip locked
                """,
                [.double(minimumAge.seconds), .int(Int64(limit))])
            guard !rows.isEmpty else { return (0, 0) }
            let messages = try rows.map { row in
                OutboxMessage(
                    id: try row.int("id"), jobID: JobID(uuid: try row.uuid("job_id")),
                    exchange: try row.string("exchange"), routingKey: try row.string("routing_key"),
                    headers: try JSONDecoder().decode(
                        [String: String].self, from: Data(try row.string("headers").utf8)),
                    body: try row.string("body"))
            }
            let outcome = await publish(messages)
            if !outcome.sent.isEmpty {
                try await tx.execute(
                    "update outbox set sent_at = now(), attempts = attempts + 1 where id = any($1::bigint[])",
                    [.text(Self.arrayLiteral(outcome.sent))])
            }
            if !outcome.failed.isEmpty {
                try await tx.execute(
                    """
                    update outbox set attempts = attempts + 1, last_error = $2,
                        next_attempt_at = now() + make_interval(secs => least(60, power(2, least(attempts, 6))))
                    where id = any($1::bigint[])
                    """,
                    [.text(Self.arrayLiteral(outcome.failed)), .text(String((outcome.error ?? "").prefix(1000)))])
            }
            return (outcome.sent.count, outcome.failed.count)
        }
    }

    // MARK: Claims and leases

    package enum ClaimResult: Sendable {
        /// This worker now holds the job's new attempt.
        case claimed(Job)
        /// Another worker holds a live lease until the given time.
        case heldByLiveWorker(until: Date, workerID: String)
        /// The job's environment already runs its `maxRunning` jobs; it stays queued (the scheduler publishes it
        /// again, in queue order, once a slot frees).
        case atCapacity
        /// The job has finished (or was stopped); nothing to do.
        case finished
        case notFound
    }

    /// Claims a job: exactly one of many concurrent claimers wins. A job is claimable while it is not finished and
    /// nobody holds a live lease on it. The winner's attempt is the previous one plus one, unless the current
    /// attempt was launched on a cluster (its objects exist): then the winner adopts that attempt, status kept.
    ///
    /// With `maxRunning`, a new attempt is started only while fewer jobs of the environment are held by live workers
    /// (an environment's `maxJobs`); adopting a launched attempt is never refused, it is already running.
    package func claim(
        jobID: JobID, workerID: String, lease: Duration, maxRunning: Int? = nil
    ) async throws -> ClaimResult {
        try await client.withTransaction { tx in
            // A job asked to stop whose worker is gone is finished as stopped rather than run again.
            let stopped = try await tx.query(
                """
                update jobs set status = $2, outcome = 'stopped', failure_reason = 'stopped', finished_at = now(),
                    lease_until = null, worker_id = null
                where id = $1 and finished_at is null and stopreq = 1 and (lease_until is null or lease_until < now())
                returning attempt
                """,
                [.uuid(jobID.uuid), .int(Int64(JobStatus.finished.rawValue))])
            if let row = stopped.first {
                try await tx.execute(
                    "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, 'stopped')",
                    [.uuid(jobID.uuid), .int(Int64(try row.int("attempt"))), .int(Int64(JobStatus.finished.rawValue))])
                return .finished
            }
            let claimed = try await tx.query(
                """
                update jobs set
                    attempt = case when launched_attempt = attempt then attempt else attempt + 1 end,
                    status = case when launched_attempt = attempt then status else $4 end,
                    worker_id = $2, lease_until = now() + make_interval(secs => $3),
                    started_at = coalesce(started_at, now())
                where id = $1 and finished_at is null and (lease_until is null or lease_until < now())
                    and (
                        $5::int is null or launched_attempt = attempt
                        or (
                            select count(*) from jobs running
                            where running.environment = jobs.environment and running.finished_at is null
                                and running.worker_id is not null and running.lease_until > now()
                                and running.id <> jobs.id
                        ) < $5::int
                    )
                returning \(Self.jobColumns), coalesce(launched_attempt = attempt, false) as adopted
                """,
                [
                    .uuid(jobID.uuid), .text(workerID), .double(lease.seconds),
                    .int(Int64(JobStatus.configuringVolumes.rawValue)), maxRunning.map { .int(Int64($0)) } ?? .null,
                ])
            if let row = claimed.first {
                let job = try Self.job(from: row)
                let adopted = try row.bool("adopted")
                try await tx.execute(
                    "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, $4)",
                    [
                        .uuid(jobID.uuid), .int(Int64(job.attempt)), .int(Int64(job.status.rawValue)),
                        .text("\(adopted ? "adopted" : "claimed") by \(workerID)"),
                    ])
                return .claimed(job)
            }
            let rows = try await tx.query(
                """
                select finished_at, lease_until, worker_id, (lease_until is null or lease_until < now()) as free
                from jobs where id = $1
                """, [.uuid(jobID.uuid)])
            guard let row = rows.first else { return .notFound }
            if try row.optionalDate("finished_at") != nil { return .finished }
            // Free to claim, yet not claimed: only the capacity condition can have refused it.
            if try row.bool("free") { return .atCapacity }
            return .heldByLiveWorker(
                until: try row.optionalDate("lease_until") ?? Date(),
                workerID: try row.optionalString("worker_id") ?? "")
        }
    }

    /// Records that the attempt's cluster objects exist, so a worker that takes the job over adopts them. Fenced:
    /// only the worker holding this attempt may say so.
    package func markLaunched(jobID: JobID, attempt: Int, workerID: String) async throws {
        let updated = try await client.execute(
            """
            update jobs set launched_attempt = $2
            where id = $1 and attempt = $2 and worker_id = $3 and finished_at is null
            """,
            [.uuid(jobID.uuid), .int(Int64(attempt)), .text(workerID)])
        guard updated == 1 else {
            throw FencingError(jobID: jobID, attempt: attempt, reason: "attempt is no longer this worker's")
        }
    }

    /// Extends the lease of the attempt this worker holds; false when the attempt is no longer this worker's
    /// (finished, or taken over after the lease expired).
    package enum LeaseState: Sendable, Hashable {
        /// The attempt still holds the job.
        case held
        /// The attempt holds the job and a stop was requested: stop it and record the stop.
        case stopRequested
        /// The attempt no longer holds the job (finished, or taken over after the lease lapsed).
        case lost
    }

    /// Extends the lease of the attempt this worker holds, and says whether a stop was requested meanwhile.
    package func renewLease(jobID: JobID, attempt: Int, workerID: String, lease: Duration) async throws -> LeaseState {
        let rows = try await client.query(
            """
            update jobs set lease_until = now() + make_interval(secs => $4)
            where id = $1 and attempt = $2 and worker_id = $3 and finished_at is null
            returning stopreq
            """,
            [.uuid(jobID.uuid), .int(Int64(attempt)), .text(workerID), .double(lease.seconds)])
        guard let row = rows.first else { return .lost }
        return try row.int("stopreq") == 0 ? .held : .stopRequested
    }

    /// Extends the leases of many attempts one worker holds, in one statement; returns the state of each attempt
    /// that still holds its job (absent: `.lost`).
    package func renewLeases(
        workerID: String, jobs: [(jobID: JobID, attempt: Int)], lease: Duration
    ) async throws -> [JobID: LeaseState] {
        guard !jobs.isEmpty else { return [:] }
        let rows = try await client.query(
            """
            update jobs set lease_until = now() + make_interval(secs => $4)
            from unnest($1::uuid[], $2::int[]) as held (id, attempt)
            where jobs.id = held.id and jobs.attempt = held.attempt and jobs.worker_id = $3
                and jobs.finished_at is null
            returning jobs.id, jobs.stopreq
            """,
            [
                .textArray(jobs.map { $0.jobID.uuid.uuidString }), .text(Self.arrayLiteral(jobs.map(\.attempt))),
                .text(workerID), .double(lease.seconds),
            ])
        var states: [JobID: LeaseState] = [:]
        for row in rows {
            states[JobID(uuid: try row.uuid("id"))] = try row.int("stopreq") == 0 ? .held : .stopRequested
        }
        return states
    }

    /// Asks for jobs to stop, in any phase (Ocean's `stopreq` 1). A job no worker has claimed yet is finished at
    /// once as stopped; a running one is stopped by its worker, which sees the request when it renews its lease.
    /// Returns the ids of the unfinished jobs the request reached.
    @discardableResult
    package func requestStop(jobIDs: [JobID]) async throws -> [JobID] {
        guard !jobIDs.isEmpty else { return [] }
        let ids = "{" + jobIDs.map { $0.uuid.uuidString }.joined(separator: ",") + "}"
        return try await client.withTransaction { tx in
            let unclaimed = try await tx.query(
                """
                update jobs set stopreq = 1, status = $2, outcome = 'stopped', failure_reason = 'stopped before it ran',
                    finished_at = now(), lease_until = null
                where id = any($1::uuid[]) and finished_at is null and worker_id is null
                    and (lease_until is null or lease_until < now())
                returning id, attempt
                """,
                [.text(ids), .int(Int64(JobStatus.finished.rawValue))])
            for row in unclaimed {
                try await tx.execute(
                    "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, 'stopped before it ran')",
                    [
                        .uuid(try row.uuid("id")), .int(Int64(try row.int("attempt"))),
                        .int(Int64(JobStatus.finished.rawValue)),
                    ])
            }
            let running = try await tx.query(
                "update jobs set stopreq = 1 where id = any($1::uuid[]) and finished_at is null returning id",
                [.text(ids)])
            return try (unclaimed + running).map { JobID(uuid: try $0.uuid("id")) }
        }
    }

    /// Gives a job back without finishing it (graceful shutdown): the lease ends now and a new message is queued
    /// through the outbox, so another worker starts a new attempt at once.
    package func release(jobID: JobID, attempt: Int, workerID: String, outbox message: OutboxMessage) async throws {
        let headers = String(decoding: try JSONEncoder().encode(message.headers), as: UTF8.self)
        try await client.withTransaction { tx in
            let released = try await tx.execute(
                """
                update jobs set lease_until = now(), worker_id = null
                where id = $1 and attempt = $2 and worker_id = $3 and finished_at is null
                """,
                [.uuid(jobID.uuid), .int(Int64(attempt)), .text(workerID)])
            guard released == 1 else { return }
            try await tx.execute(
                "insert into job_events (job_id, attempt, status, reason) select id, attempt, status, $2 from jobs where id = $1",
                [.uuid(jobID.uuid), .text("released by \(workerID) at shutdown")])
            try await tx.execute(
                "insert into outbox (job_id, exchange, routing_key, headers, body) values ($1, $2, $3, $4, $5)",
                [
                    .uuid(jobID.uuid), .text(message.exchange), .text(message.routingKey), .json(headers),
                    .text(message.body),
                ])
        }
    }

    // MARK: Progress, fenced by attempt

    /// Records a status change of the attempt `attempt`. Refused (FencingError) if that attempt is no longer
    /// current or the job has finished; an illegal transition is refused by the state machine.
    package func recordStatus(jobID: JobID, attempt: Int, status: JobStatus, reason: String? = nil) async throws {
        let predecessors = JobStatus.allCases.filter { $0.canMove(to: status) }.map(\.rawValue)
        try await client.withTransaction { tx in
            let rows = try await tx.query(
                "select status, attempt, finished_at from jobs where id = $1 for update", [.uuid(jobID.uuid)])
            guard let row = rows.first else {
                throw FencingError(jobID: jobID, attempt: attempt, reason: "no such job")
            }
            let current = try row.int("status")
            guard try row.int("attempt") == attempt, try row.optionalDate("finished_at") == nil else {
                throw FencingError(jobID: jobID, attempt: attempt, reason: "attempt is no longer current")
            }
            if current == status.rawValue { return }
            guard predecessors.contains(current), let from = JobStatus(rawValue: current) else {
                throw IllegalTransition(from: JobStatus(rawValue: current) ?? .queued, to: status)
            }
            _ = from
            try await tx.execute(
                "update jobs set status = $2 where id = $1", [.uuid(jobID.uuid), .int(Int64(status.rawValue))])
            try await tx.execute(
                "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, $4)",
                [.uuid(jobID.uuid), .int(Int64(attempt)), .int(Int64(status.rawValue)), .optional(reason)])
        }
    }

    /// Records the terminal status, outcome and results of an attempt in one transaction.
    package func finish(jobID: JobID, attempt: Int, result: ExecutionResult) async throws {
        try await client.withTransaction { tx in
            let updated = try await tx.execute(
                """
                update jobs set status = $3, outcome = $4, failure_reason = $5, exit_code = $6, oom_killed = $7,
                    stopreq = coalesce($8, stopreq), finished_at = now(), lease_until = null
                where id = $1 and attempt = $2 and finished_at is null
                """,
                [
                    .uuid(jobID.uuid), .int(Int64(attempt)), .int(Int64(result.status.rawValue)),
                    .text(result.outcome.rawValue), .optional(result.failureReason),
                    result.exitCode.map { .int(Int64($0)) } ?? .null, .bool(result.oomKilled),
                    result.stopRequest.map { .int(Int64($0)) } ?? .null,
                ])
            guard updated == 1 else {
                throw FencingError(jobID: jobID, attempt: attempt, reason: "attempt is no longer current")
            }
            try await tx.execute(
                "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, $4)",
                [
                    .uuid(jobID.uuid), .int(Int64(attempt)), .int(Int64(result.status.rawValue)),
                    .text(result.failureReason ?? result.outcome.rawValue),
                ])
            for file in result.results {
                try await tx.execute(
                    """
                    insert into job_results (job_id, position, attempt, name, kind, size, sha256, location)
                    values ($1, $2, $3, $4, $5, $6, $7, $8)
                    """,
                    [
                        .uuid(jobID.uuid), .int(Int64(file.index)), .int(Int64(attempt)), .text(file.name),
                        .text(file.kind.rawValue), .int(file.size), .text(file.sha256), .text(file.location),
                    ])
            }
        }
    }

    // MARK: Reads

    package func job(_ id: JobID) async throws -> Job? {
        try await client.query("select \(Self.jobColumns) from jobs where id = $1", [.uuid(id.uuid)])
            .first.map(Self.job(from:))
    }

    package func results(of id: JobID) async throws -> [ResultFile] {
        try await client.query(
            """
            select position, name, kind, size, sha256, location from job_results where job_id = $1 order by position
            """,
            [.uuid(id.uuid)]
        ).map { row in
            ResultFile(
                index: try row.int("position"), name: try row.string("name"),
                kind: ResultKind(rawValue: try row.string("kind")) ?? .output, size: Int64(try row.int("size")),
                sha256: try row.string("sha256"), location: try row.string("location"))
        }
    }

    package struct Event: Sendable, Hashable {
        package var id: Int
        package var attempt: Int
        package var status: JobStatus
        package var reason: String?
        package var at: Date
    }

    package func events(of id: JobID) async throws -> [Event] {
        try await client.query(
            "select id, attempt, status, reason, created_at from job_events where job_id = $1 order by id",
            [.uuid(id.uuid)]
        ).map { row in
            Event(
                id: try row.int("id"), attempt: try row.int("attempt"),
                status: JobStatus(rawValue: try row.int("status")) ?? .queued, reason: try row.optionalString("reason"),
                at: try row.date("created_at"))
        }
    }

    // MARK: Row mapping

    static let jobColumns = """
        id, environment, owner, viewers, agreement_id, origin, ocean_signer, status, outcome, failure_reason, exit_code, \
        oom_killed, stopreq, \
        attempt, worker_id, lease_until, created_at, started_at, finished_at, workflow::text as workflow
        """

    static func job(from row: PostgresRow) throws -> Job {
        let status = try row.int("status")
        guard let jobStatus = JobStatus(rawValue: status) else {
            throw PostgresError(code: .decoding, message: "unknown job status \(status)")
        }
        return Job(
            id: JobID(uuid: try row.uuid("id")), environment: try row.string("environment"),
            owner: try row.string("owner"), viewers: try row.stringArray("viewers"),
            agreementID: try row.optionalString("agreement_id"),
            origin: try row.string("origin") == "ocean"
                ? .ocean(signer: try row.optionalString("ocean_signer") ?? "") : .native,
            status: jobStatus,
            outcome: try row.optionalString("outcome").flatMap(JobOutcome.init(rawValue:)),
            failureReason: try row.optionalString("failure_reason"), exitCode: try row.optionalInt("exit_code"),
            oomKilled: try row.bool("oom_killed"), stopRequest: try row.int("stopreq"), attempt: try row.int("attempt"),
            workerID: try row.optionalString("worker_id"), leaseUntil: try row.optionalDate("lease_until"),
            createdAt: try row.date("created_at"), startedAt: try row.optionalDate("started_at"),
            finishedAt: try row.optionalDate("finished_at"),
            workflow: try JSONDecoder().decode(Workflow.self, from: Data(try row.string("workflow").utf8)))
    }

    static func arrayLiteral(_ ids: [Int]) -> String {
        "{" + ids.map(String.init).joined(separator: ",") + "}"
    }
}

/// A write by an attempt that no longer holds the job: refused, never applied.
package struct FencingError: Error, CustomStringConvertible, Sendable {
    package var jobID: JobID
    package var attempt: Int
    package var reason: String
    package var description: String { "write for job \(jobID) attempt \(attempt) refused: \(reason)" }
}

extension Duration {
    package var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

extension PostgresJobStore {
    /// Environments the scheduler hid because nothing served them lately (its duty 12); listings leave them out.
    package func hiddenEnvironmentIDs() async throws -> Set<String> {
        Set(try await client.query("select id from environments where hidden").map { try $0.string("id") })
    }
}
