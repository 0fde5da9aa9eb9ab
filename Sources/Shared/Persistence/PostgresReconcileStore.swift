import Domain
import Foundation

/// The reconciler's reads and its Postgres-side writes. Reads return ``ReconcileJob`` values; every write is a
/// set-based, conditional statement on (job id, attempt) run inside the caller's fenced transaction, so a row that
/// moved on since the snapshot (claimed, finished, renewed) is left alone.
package struct PostgresReconcileStore: Sendable {
    let client: PostgresClient

    package init(client: PostgresClient) {
        self.client = client
    }

    // MARK: Reads

    /// Columns of a ``ReconcileJob``; `j` is jobs, `e` its environment. maxtime, maxJobDuration and ocean-node's
    /// queueMaxWaitTime are read leniently: a value that is not a JSON number counts as absent (the environment
    /// default is 3600 s).
    private static let jobColumns = """
        j.id, j.environment, j.status, j.attempt, j.worker_id, j.lease_until, j.created_at, j.started_at,
        j.attempt_started_at, j.finished_at, j.stopreq, j.removed, j.change_seq, j.admitted_at is not null as admitted,
        j.lapses,
        case when jsonb_typeof(j.workflow #> '{stages,0,compute,maxtime}') = 'number'
            then (j.workflow #>> '{stages,0,compute,maxtime}')::numeric::bigint end as maxtime,
        case when jsonb_typeof(e.definition -> 'maxJobDuration') = 'number'
            then (e.definition ->> 'maxJobDuration')::numeric::bigint end as max_job_duration,
        case when jsonb_typeof(j.ocean_node -> 'queueMaxWaitTime') = 'number'
            then (j.ocean_node ->> 'queueMaxWaitTime')::double precision end as queue_max_wait
        """

    /// Unfinished jobs (a full pass, through the partial index), or every job written after `cursor` (incremental;
    /// finished ones included so the caller can drop them). Returns the rows, the highest change_seq seen, and the
    /// database time.
    package func jobs(changedAfter cursor: Int64?, limit: Int) async throws -> (
        jobs: [ReconcileJob], cursor: Int64?, now: Date
    ) {
        var jobs: [ReconcileJob] = []
        var now: Date?
        if let cursor {
            let rows = try await client.query(
                """
                select \(Self.jobColumns), now() as db_now
                from jobs j left join environments e on e.id = j.environment
                where j.change_seq > $1 order by j.change_seq limit $2
                """,
                [.int(cursor), .int(limit)])
            jobs = try rows.map(Self.job(from:))
            now = try rows.first?.date("db_now")
        } else {
            (jobs, now) = try await unfinishedJobs()
        }
        let databaseTime: Date
        if let now { databaseTime = now } else { databaseTime = try await databaseNow() }
        return (jobs, jobs.map(\.changeSeq).max(), databaseTime)
    }

    /// Rows fetched per round trip by ``unfinishedJobs()``.
    static let unfinishedPage = 5_000

    /// Every unfinished job, through a cursor a page at a time: one snapshot, as one statement would read, but only a
    /// page of raw rows is held at once (all of them at once were most of a full pass's memory at 100,000 jobs).
    private func unfinishedJobs() async throws -> ([ReconcileJob], Date?) {
        try await client.withTransaction { tx in
            // `environment is not null` lets the partial index over unfinished jobs serve it (migration 0021).
            try await tx.execute(
                """
                declare unfinished_jobs no scroll cursor for
                select \(Self.jobColumns), now() as db_now
                from jobs j left join environments e on e.id = j.environment
                where j.finished_at is null and j.environment is not null
                """)
            var jobs: [ReconcileJob] = []
            var now: Date?
            while true {
                let page = try await tx.query("fetch \(Self.unfinishedPage) from unfinished_jobs")
                if now == nil { now = try page.first?.date("db_now") }
                jobs.append(contentsOf: try page.map(Self.job(from:)))
                if page.count < Self.unfinishedPage { return (jobs, now) }
            }
        }
    }

    /// The highest change_seq now: where an incremental reader starts after a full pass. Read before the full pass,
    /// so nothing written during it is skipped.
    package func currentChangeSeq() async throws -> Int64 {
        let rows = try await client.query("select coalesce(max(change_seq), 0) as seq from jobs")
        return Int64(try rows[0].int("seq"))
    }

    /// The rows of the given jobs (those cluster objects name), whatever their state.
    package func jobs(ids: [JobID]) async throws -> [ReconcileJob] {
        guard !ids.isEmpty else { return [] }
        return try await client.query(
            """
            select \(Self.jobColumns)
            from jobs j left join environments e on e.id = j.environment
            where j.id = any($1::text[]::uuid[])
            """,
            [.textArray(ids.map { $0.uuid.uuidString })]
        ).map(Self.job(from:))
    }

    /// Finished jobs still holding results whose environment's storage expiry has passed, oldest first.
    package func expiredResults(limit: Int) async throws -> [ReconcileJob] {
        try await client.query(
            """
            select \(Self.jobColumns)
            from environments e
            cross join lateral (
                select * from jobs
                where jobs.environment = e.id and jobs.finished_at is not null and not jobs.removed
                    and jobs.finished_at <= now() - make_interval(secs => (e.definition ->> 'storageExpiry')::double precision)
                order by jobs.finished_at limit $1
            ) j
            where jsonb_typeof(e.definition -> 'storageExpiry') = 'number' and (e.definition ->> 'storageExpiry')::numeric > 0
            limit $1
            """,
            [.int(limit)]
        ).map(Self.job(from:))
    }

    /// Every environment with its limits. `maxQueueWait` (seconds) is optional in the definition.
    package func environments() async throws -> [ReconcileEnvironment] {
        try await client.query(
            """
            select id, last_seen, hidden,
                case when jsonb_typeof(definition -> 'maxJobs') = 'number'
                    then (definition ->> 'maxJobs')::numeric::bigint else 0 end as max_jobs,
                case when jsonb_typeof(definition -> 'maxQueueWait') = 'number'
                    then (definition ->> 'maxQueueWait')::double precision end as max_queue_wait,
                case when jsonb_typeof(definition -> 'storageExpiry') = 'number'
                    then (definition ->> 'storageExpiry')::double precision end as storage_expiry
            from environments
            """
        ).map { row in
            ReconcileEnvironment(
                id: try row.string("id"), maxJobs: try row.int("max_jobs"),
                maxQueueWait: try row.optionalDouble("max_queue_wait").flatMap { $0 > 0 ? .seconds($0) : nil },
                storageExpiry: try row.optionalDouble("storage_expiry").flatMap { $0 > 0 ? .seconds($0) : nil },
                lastSeen: try row.date("last_seen"), hidden: try row.bool("hidden"))
        }
    }

    private func databaseNow() async throws -> Date {
        try await client.query("select now() as now")[0].date("now")
    }

    static func job(from row: PostgresRow) throws -> ReconcileJob {
        let code = try row.int("status")
        guard let status = JobStatus(rawValue: code) else {
            throw PostgresError(code: .decoding, message: "unknown job status \(code)")
        }
        let environmentLimit = try row.optionalInt("max_job_duration") ?? 3600
        let limit = min(try row.optionalInt("maxtime") ?? environmentLimit, environmentLimit)
        return ReconcileJob(
            id: JobID(uuid: try row.uuid("id")), environment: try row.string("environment"), status: status,
            attempt: try row.int("attempt"), workerID: try row.optionalString("worker_id"),
            leaseUntil: try row.optionalDate("lease_until"), createdAt: try row.date("created_at"),
            startedAt: try row.optionalDate("started_at"), attemptStartedAt: try row.optionalDate("attempt_started_at"),
            finishedAt: try row.optionalDate("finished_at"), stopRequest: try row.int("stopreq"),
            maxDuration: limit > 0 ? .seconds(limit) : nil,
            maxQueueWait: try row.optionalDouble("queue_max_wait").flatMap { $0 > 0 ? .seconds($0) : nil },
            removed: try row.bool("removed"),
            admitted: try row.bool("admitted"), lapses: try row.int("lapses"),
            changeSeq: Int64(try row.int("change_seq")))
    }

    // MARK: Writes, inside the caller's fenced transaction

    /// Gives each job still at `attempt` back to the dispatcher: it loses its worker and its dispatch is cleared, so
    /// the dispatcher publishes its message again at once (the trigger of migration 0010 wakes it). The job stays
    /// admitted. Every job moved gets an event. Returns the jobs moved.
    package func requeue(
        _ jobs: [(id: JobID, attempt: Int)], kind: RequeueKind, reason: String, in tx: PostgresTransaction
    ) async throws -> [JobID] {
        guard !jobs.isEmpty else { return [] }
        let condition: String
        let change: String
        switch kind {
        case .expiredLease:
            // The worker died or was cut off: counted, so a job that keeps killing its workers ends as poison.
            condition = "j.worker_id is not null and j.lease_until < now()"
            change = "worker_id = null, dispatched_at = null, lapses = j.lapses + 1"
        case .lostObjects:
            // The attempt is over: back to status 1, so it no longer counts as launched, and not adoptable, so the
            // next claim starts attempt + 1 (migration 0008). Only once: a second pass finds it queued.
            condition = "j.status <> \(JobStatus.queued.rawValue)"
            change = """
                worker_id = null, lease_until = null, launched_attempt = null, status = \(JobStatus.queued.rawValue), \
                dispatched_at = null
                """
        }
        let rows = try await tx.query(
            """
            with input as (
                select * from unnest($1::text[]::uuid[], $2::text[]::int[]) as t(id, attempt)
            ), moved as (
                update jobs j set \(change)
                from input i
                where j.id = i.id and j.attempt = i.attempt and j.finished_at is null and \(condition)
                returning j.id, j.attempt, j.status
            )
            insert into job_events (job_id, attempt, status, reason)
            select id, attempt, status, $3 from moved
            returning job_id
            """,
            [
                .textArray(jobs.map { $0.id.uuid.uuidString }), .textArray(jobs.map { String($0.attempt) }),
                .text(reason),
            ])
        return try rows.map { JobID(uuid: try $0.uuid("job_id")) }
    }

    package enum RequeueKind: Sendable {
        /// Duty 3: the worker died; the next one adopts the attempt.
        case expiredLease
        /// Duty 5: the attempt's objects are gone; the next claim starts a new attempt.
        case lostObjects
    }

    /// A terminal record for one job attempt.
    package struct Termination: Sendable {
        package var jobID: JobID
        package var attempt: Int
        package var status: JobStatus
        package var outcome: JobOutcome
        package var reason: String
        package var exitCode: Int?
        package var oomKilled: Bool
        package var stopRequest: Int?
        /// Which of the attempt's uploads become the job's results.
        package var results: ResultCopy

        package init(
            jobID: JobID, attempt: Int, status: JobStatus, outcome: JobOutcome, reason: String, exitCode: Int? = nil,
            oomKilled: Bool = false, stopRequest: Int? = nil, results: ResultCopy = .none
        ) {
            self.results = results
            self.jobID = jobID
            self.attempt = attempt
            self.status = status
            self.outcome = outcome
            self.reason = reason
            self.exitCode = exitCode
            self.oomKilled = oomKilled
            self.stopRequest = stopRequest
        }
    }

    /// Which uploads of the attempt (`attempt_uploads`) a terminal record copies into `job_results`.
    package enum ResultCopy: String, Sendable {
        case none, logs, all
    }

    /// Finishes each job whose attempt is still current and unfinished, with an event, and copies the attempt's
    /// uploads into its results in Ocean's order (``UploadOrder``, as the worker's `finish` records them): one
    /// result path whoever finalizes. Returns the jobs finished.
    package func terminate(_ terminations: [Termination], in tx: PostgresTransaction) async throws -> [JobID] {
        guard !terminations.isEmpty else { return [] }
        let rows = try await tx.query(
            """
            with input as (
                select * from unnest(
                    $1::text[]::uuid[], $2::text[]::int[], $3::text[]::smallint[], $4::text[], $5::text[],
                    $6::text[]::int[], $7::text[]::boolean[], $8::text[]::smallint[], $9::text[]
                ) as t(id, attempt, status, outcome, reason, exit_code, oom, stopreq, copy)
            ), done as (
                update jobs j set status = i.status, outcome = i.outcome, failure_reason = i.reason,
                    exit_code = i.exit_code, oom_killed = i.oom, stopreq = coalesce(i.stopreq, j.stopreq),
                    finished_at = now(), lease_until = null, worker_id = null
                from input i
                where j.id = i.id and j.attempt = i.attempt and j.finished_at is null
                returning j.id, j.attempt, j.status, j.failure_reason, i.copy
            ), results as (
                insert into job_results (job_id, position, attempt, name, kind, size, sha256, location)
                select u.job_id,
                    row_number() over (partition by u.job_id order by \(UploadOrder.orderBy(table: "u"))) - 1,
                    u.attempt, u.name, u.kind, u.size, u.sha256, u.location
                from attempt_uploads u join done d on u.job_id = d.id and u.attempt = d.attempt
                where d.copy = 'all' or (d.copy = 'logs' and u.kind <> 'output')
            )
            insert into job_events (job_id, attempt, status, reason)
            select id, attempt, status, failure_reason from done
            returning job_id
            """,
            [
                .textArray(terminations.map { $0.jobID.uuid.uuidString }),
                .textArray(terminations.map { String($0.attempt) }),
                .textArray(terminations.map { String($0.status.rawValue) }),
                .textArray(terminations.map { $0.outcome.rawValue }), .textArray(terminations.map { $0.reason }),
                .textArray(terminations.map { $0.exitCode.map(String.init) }),
                .textArray(terminations.map { $0.oomKilled ? "true" : "false" }),
                .textArray(terminations.map { $0.stopRequest.map(String.init) }),
                .textArray(terminations.map { $0.results.rawValue }),
            ])
        return try rows.map { JobID(uuid: try $0.uuid("job_id")) }
    }

    /// Duty 11: hands the jobs to `removeFiles`, which removes everything stored under each of them, then deletes
    /// their rows (and the attempts' upload tokens) and marks the jobs removed. By job, not by the locations
    /// recorded: a file uploaded by an attempt that died before registering it (a publish pod killed between its
    /// direct upload and the registration) is recorded nowhere, and every file of a job is under the job. If
    /// `removeFiles` throws, the transaction rolls back and the next pass tries again (so it must accept jobs whose
    /// files are already gone).
    package func removeResults(
        _ ids: [JobID], removeFiles: @Sendable ([JobID]) async throws -> Void, in tx: PostgresTransaction
    ) async throws -> [JobID] {
        guard !ids.isEmpty else { return [] }
        let idArray = PostgresValue.textArray(ids.map { $0.uuid.uuidString })
        let locked = try await tx.query(
            """
            select id from jobs where id = any($1::text[]::uuid[]) and finished_at is not null and not removed
            for update skip locked
            """,
            [idArray])
        guard !locked.isEmpty else { return [] }
        let lockedIDs = PostgresValue.textArray(try locked.map { try $0.uuid("id").uuidString })
        try await removeFiles(try locked.map { JobID(uuid: try $0.uuid("id")) })
        for table in ["job_results", "job_logs", "attempt_uploads", "attempt_tokens"] {
            try await tx.execute("delete from \(table) where job_id = any($1::text[]::uuid[])", [lockedIDs])
        }
        return try await tx.query(
            "update jobs set removed = true where id = any($1::text[]::uuid[]) returning id", [lockedIDs]
        ).map { JobID(uuid: try $0.uuid("id")) }
    }

    /// Duty 12. Hides only environments still not refreshed for `staleAfter` when the statement runs: a process
    /// that refreshed one since the pass's snapshot has shown it again, and must not see it hidden by that pass.
    package func setHidden(
        _ ids: [String], hidden: Bool, staleAfter: Duration, in tx: PostgresTransaction
    ) async throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try await tx.execute(
            """
            update environments set hidden = $2
            where id = any($1::text[]) and hidden <> $2
                and (not $2 or last_seen <= now() - make_interval(secs => $3))
            """,
            [.textArray(ids), .bool(hidden), .double(staleAfter.seconds)])
    }
}
