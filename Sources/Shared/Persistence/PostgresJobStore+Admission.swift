import Domain
import Foundation

extension PostgresJobStore {
    // MARK: Admission

    /// A job whose message the dispatcher publishes now.
    package struct DispatchedJob: Sendable, Hashable {
        package var id: JobID
        package var environment: String
        package var trace: RequestTrace
    }

    /// What one dispatch pass found and did.
    package struct DispatchPass: Sendable, Hashable {
        /// Jobs admitted by this pass, in dispatch order.
        package var admitted: [DispatchedJob]
        /// Admitted jobs no worker holds whose message must go out again: handed over or back (their dispatch was
        /// cleared), or unclaimed since a dispatch older than the republish threshold (a lost message).
        package var redispatched: [DispatchedJob]
        /// Another dispatcher held the dispatch lock: nothing was read or written; try again shortly.
        package var busy: Bool
        /// Jobs of the environment admitted and unfinished before this pass (its maxJobs slots in use).
        package var active: Int
        /// Free slots of the live workers serving the environment, minus admitted jobs no worker has taken yet.
        package var freeWorkerSlots: Int

        static let busy = DispatchPass(admitted: [], redispatched: [], busy: true, active: 0, freeWorkerSlots: 0)
    }

    /// Key of the transaction-scoped advisory lock every dispatch pass takes. One lock for all environments: a
    /// worker may serve several, and two passes counting the same free slots at once would admit twice into them.
    static let dispatchLockKey: Int64 = 0x6332_645f_6469_7370  // "c2d_disp"

    /// Rows `jobs` may hold beyond twice what its statistics last counted before a pass analyzes it.
    static let statisticsSlack: Int64 = 10_000

    /// One dispatch pass over `environment`, in one transaction:
    ///
    /// 1. take the dispatch lock (`pg_try_advisory_xact_lock`); if another pass holds it, return `.busy`; if `jobs`
    ///    holds more than twice the rows its statistics counted (plus ``statisticsSlack``), analyze it first;
    /// 2. redispatch admitted jobs no worker holds whose dispatch was cleared (hand-over, hand-back) or is older
    ///    than `redispatchAfter`;
    /// 3. room = min(maxJobs − admitted unfinished jobs, free slots of live workers serving the environment −
    ///    admitted jobs no worker has taken yet in the environments those workers serve, `limit`); maxJobs 0 or
    ///    absent means no environment cap; a worker is live if it refreshed its row within `workerStaleAfter`;
    /// 4. admit that many waiting jobs: higher priority first; within a priority, the owner with the fewest
    ///    admitted jobs first (each owner's jobs counted as they are chosen, so owners alternate), oldest first;
    ///    the first `maximumGroups` (priority, owner) groups are considered; free-tier jobs only as far as the
    ///    environment's `free.maxJobs` (0 or absent: no cap of its own) leaves room;
    ///
    /// Both lists are marked dispatched now; the caller publishes their messages after the commit, and if it cannot,
    /// a later pass redispatches them after `redispatchAfter`.
    package func dispatch(
        environment: String, limit: Int, redispatchAfter: Duration, workerStaleAfter: Duration,
        maximumGroups: Int = 1_000
    ) async throws -> DispatchPass {
        try await client.withTransaction { tx in
            let locked = try await tx.query(
                """
                select pg_try_advisory_xact_lock($1) as locked,
                    pg_stat_get_live_tuples(c.oid) > 2 * greatest(c.reltuples, 0) + $2 as outgrown
                from pg_class c where c.oid = 'jobs'::regclass
                """,
                [.int(Self.dispatchLockKey), .int(Self.statisticsSlack)])
            guard let lock = locked.first, try lock.bool("locked") else { return .busy }
            // skip_locked: a VACUUM or ANALYZE of jobs already running must not hold up the pass (an autovacuum of a
            // table this outgrown analyzes it when its VACUUM is done); the next pass checks again.
            if try lock.bool("outgrown") { try await tx.executeScript("analyze (skip_locked) jobs") }
            try await Self.planForIndexOrder(tx)
            let redispatched = try await Self.redispatch(tx, environment: environment, after: redispatchAfter)
            guard let room = try await Self.room(tx, environment: environment, workerStaleAfter: workerStaleAfter)
            else { return .busy }
            let count = room.jobs(limit: limit)
            let admitted =
                count > 0
                ? try await Self.admit(
                    tx, environment: environment, count: count, freeCount: room.freeJobs(limit: limit),
                    maximumGroups: maximumGroups) : []
            return DispatchPass(
                admitted: admitted, redispatched: redispatched, busy: false, active: room.active,
                freeWorkerSlots: room.freeWorkerSlots)
        }
    }

    /// Makes every part of the pass walk an index in the order it reads, whatever the statistics say; the settings
    /// last until the transaction ends.
    ///
    /// A pass must read only what it takes, but the planner picks its paths from estimates, and two were wrong:
    /// - a (priority, owner) group's waiting jobs estimated as the table's average per owner, so one owner's backlog
    ///   of 20,000 was read and sorted whole through a bitmap scan to take its oldest 256 (0.1–0.25 s a pass);
    /// - an environment the statistics have not seen yet (its backlog filled faster than autovacuum analyzes)
    ///   estimated at one row, so a pass walked the environment's whole backlog through `jobs_environment_created`
    ///   or `jobs_active` and sorted it, once for each group: 75–150 ms a pass at 150,000 waiting, and 28 s once.
    /// With sequential and bitmap scans and sorts off, only `jobs_pending` yields a group's jobs in the order the
    /// pass takes them (the head orders by the index's own columns for that). Sorts that no path avoids (the
    /// fair-share ranking of at most `count` rows per group) still run. JIT is off because the disabled paths' cost
    /// penalty would otherwise make every pass compile itself: 0.35 s for a pass that runs in 10 ms.
    private static func planForIndexOrder(_ tx: PostgresTransaction) async throws {
        _ = try await tx.query(
            """
            select set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true),
                set_config('enable_sort', 'off', true), set_config('jit', 'off', true)
            """)
    }

    /// Admitted, unfinished jobs that no live worker holds and whose message went out more than `after` ago (or
    /// never): marked dispatched again, to be published again.
    private static func redispatch(
        _ tx: PostgresTransaction, environment: String, after: Duration
    ) async throws -> [DispatchedJob] {
        try await tx.query(
            """
            update jobs set dispatched_at = now()
            where environment = $1 and admitted_at is not null and finished_at is null and worker_id is null
                and (lease_until is null or lease_until < now())
                and (dispatched_at is null or dispatched_at < now() - make_interval(secs => $2))
            returning id, environment, request_id, traceparent
            """,
            [.text(environment), .double(after.seconds)]
        ).map(dispatchedJob(from:))
    }

    /// What bounds an environment's admissions now.
    private struct AdmissionRoom {
        /// Admitted unfinished jobs, and the free tier's share of them.
        var active: Int
        var freeActive: Int
        var maxJobs: Int?
        var freeMaxJobs: Int?
        /// Free slots of live workers serving the environment, less admitted jobs no worker has taken yet.
        var freeWorkerSlots: Int

        func jobs(limit: Int) -> Int {
            var room = min(limit, freeWorkerSlots)
            if let maxJobs, maxJobs > 0 { room = min(room, maxJobs - active) }
            return max(0, room)
        }

        /// A free tier's maxJobs is a second cap, on free jobs only (migration 0014): paid jobs behind them are still
        /// admitted when it is reached.
        func freeJobs(limit: Int) -> Int {
            guard let freeMaxJobs, freeMaxJobs > 0 else { return jobs(limit: limit) }
            return max(0, freeMaxJobs - freeActive)
        }
    }

    private static func room(
        _ tx: PostgresTransaction, environment: String, workerStaleAfter: Duration
    ) async throws -> AdmissionRoom? {
        let counts = try await tx.query(
            """
            with live as (
                select id, slots, environments from workers
                where $1 = any(environments) and last_seen > now() - make_interval(secs => $2)
            )
            select
                (select case when jsonb_typeof(definition -> 'maxJobs') = 'number'
                    then (definition ->> 'maxJobs')::numeric::bigint end
                 from environments where id = $1) as max_jobs,
                (select count(*) from jobs
                 where environment = $1 and admitted_at is not null and finished_at is null) as active,
                (select case when jsonb_typeof(definition -> 'free' -> 'maxJobs') = 'number'
                    then (definition -> 'free' ->> 'maxJobs')::numeric::bigint end
                 from environments where id = $1) as free_max_jobs,
                (select count(*) from jobs
                 where environment = $1 and free_tier and admitted_at is not null and finished_at is null)
                    as free_active,
                (select coalesce(sum(greatest(live.slots - (
                    select count(*) from jobs held where held.worker_id = live.id and held.finished_at is null
                 ), 0)), 0) from live) as free_slots,
                (select count(*) from jobs
                 where environment in (select unnest(environments) from live)
                    and admitted_at is not null and finished_at is null and worker_id is null) as untaken
            """,
            [.text(environment), .double(workerStaleAfter.seconds)])
        guard let row = counts.first else { return nil }
        return AdmissionRoom(
            active: try row.int("active"), freeActive: try row.int("free_active"),
            maxJobs: try row.optionalInt("max_jobs"), freeMaxJobs: try row.optionalInt("free_max_jobs"),
            freeWorkerSlots: max(0, try row.int("free_slots") - row.int("untaken")))
    }

    /// Admits up to `count` waiting jobs (at most `freeCount` of them free-tier) in fair-share order, and returns
    /// them in that order.
    private static func admit(
        _ tx: PostgresTransaction, environment: String, count: Int, freeCount: Int, maximumGroups: Int
    ) async throws -> [DispatchedJob] {
        let rows = try await tx.query(
            """
            with recursive groups (priority, owner, n) as (
                (select priority, owner, 1 from jobs
                 where environment = $1 and admitted_at is null and finished_at is null
                 order by priority desc, owner desc limit 1)
                union all
                select following.priority, following.owner, groups.n + 1 from groups
                cross join lateral (
                    select priority, owner from jobs
                    where environment = $1 and admitted_at is null and finished_at is null
                        and (priority, owner) < (groups.priority, groups.owner)
                    order by priority desc, owner desc limit 1
                ) following
                where groups.n < $3
            ), usage as (
                select owner, count(*) as n from jobs
                where environment = $1 and admitted_at is not null and finished_at is null
                group by owner
            ), candidates as (
                select head.id, head.free_tier, groups.priority, coalesce(usage.n, 0) + head.rank as share,
                    head.created_at
                from groups
                left join usage on usage.owner = groups.owner
                cross join lateral (
                    select id, free_tier, created_at,
                        row_number() over (order by priority, owner, created_at, id) as rank
                    from jobs
                    where environment = $1 and admitted_at is null and finished_at is null
                        and priority = groups.priority and owner = groups.owner and (not free_tier or $4 > 0)
                    order by priority, owner, created_at, id limit $2
                ) head
            ), ranked as (
                select *, count(*) filter (where free_tier)
                    over (order by priority desc, share, created_at, id) as free_rank
                from candidates
            ), chosen as (
                select id, row_number() over (order by priority desc, share, created_at, id) as position
                from ranked where not free_tier or free_rank <= $4
                order by priority desc, share, created_at, id limit $2
            )
            update jobs set admitted_at = now(), dispatched_at = now()
            from chosen
            where jobs.id = chosen.id and jobs.admitted_at is null and jobs.finished_at is null
            returning jobs.id, jobs.environment, jobs.request_id, jobs.traceparent, chosen.position
            """,
            [.text(environment), .int(Int64(count)), .int(Int64(max(1, maximumGroups))), .int(Int64(freeCount))])
        return try rows.map { (position: try $0.int("position"), job: try dispatchedJob(from: $0)) }
            .sorted { $0.position < $1.position }.map(\.job)
    }

    private static func dispatchedJob(from row: PostgresRow) throws -> DispatchedJob {
        DispatchedJob(
            id: JobID(uuid: try row.uuid("id")), environment: try row.string("environment"),
            trace: RequestTrace(
                requestID: try row.optionalString("request_id"), traceparent: try row.optionalString("traceparent")))
    }

    /// Marks admitted jobs no worker took yet as owed a message again (their publish failed).
    package func clearDispatch(_ ids: [JobID]) async throws {
        guard !ids.isEmpty else { return }
        try await client.execute(
            """
            update jobs set dispatched_at = null
            where id = any($1::text[]::uuid[]) and worker_id is null and finished_at is null
            """,
            [.textArray(ids.map { $0.uuid.uuidString })])
    }

    /// Every environment that has unfinished jobs (the dispatcher's periodic sweep).
    package func environmentsWithUnfinishedJobs() async throws -> [String] {
        // A loose index scan over jobs_active (environment, created_at) where unfinished: one probe per environment.
        // The first probe names no environment, so it says `environment is not null` to match the index (0021).
        try await client.query(
            """
            with recursive environments (id) as (
                (select environment from jobs where finished_at is null and environment is not null
                 order by environment limit 1)
                union all
                select (select environment from jobs
                        where finished_at is null and environment > environments.id order by environment limit 1)
                from environments where environments.id is not null
            )
            select id from environments where id is not null
            """
        ).map { try $0.string("id") }
    }

    /// Changes a waiting job's priority. Returns the job as it is now, or nil if there is no such job; throws
    /// ``NotWaitingError`` when the job was already admitted (its message is out, so its place is taken).
    package func setPriority(jobID: JobID, priority: Int) async throws -> Job? {
        let rows = try await client.query(
            """
            update jobs set priority = $2 where id = $1 and admitted_at is null and finished_at is null
            returning \(Self.jobColumns)
            """,
            [.uuid(jobID.uuid), .int(Int64(priority))])
        if let row = rows.first { return try Self.job(from: row) }
        guard let job = try await job(jobID) else { return nil }
        throw NotWaitingError(jobID: jobID, status: job.status, finished: job.finishedAt != nil)
    }

    // MARK: Workers

    /// Records a worker and its slots (insert or refresh) and wakes the dispatchers of its environments: its free
    /// slots are room to admit into.
    package func registerWorker(
        id: String, environments: [String], slots: Int, executor: String
    ) async throws {
        _ = try await client.query(
            """
            with registered as (
                insert into workers (id, environments, slots, executor) values ($1, $2, $3, $4)
                on conflict (id) do update set environments = excluded.environments, slots = excluded.slots,
                    executor = excluded.executor, last_seen = now()
                returning environments
            )
            select pg_notify('c2d_dispatch', environment) from registered, unnest(registered.environments) environment
            """,
            [.text(id), .textArray(environments), .int(Int64(slots)), .text(executor)])
    }

    /// Keeps a worker's row fresh; false if the row is gone (removed as stale), so the caller registers again.
    package func refreshWorker(id: String) async throws -> Bool {
        try await client.execute("update workers set last_seen = now() where id = $1", [.text(id)]) == 1
    }

    /// Removes a worker's row at graceful shutdown.
    package func unregisterWorker(id: String) async throws {
        try await client.execute("delete from workers where id = $1", [.text(id)])
    }

    /// Deletes rows of workers not seen for `age` (they died without unregistering); returns how many.
    @discardableResult
    package func removeStaleWorkers(olderThan age: Duration) async throws -> Int {
        try await client.execute(
            "delete from workers where last_seen < now() - make_interval(secs => $1)", [.double(age.seconds)])
    }
}

/// A change that only a waiting (not yet admitted) job accepts.
package struct NotWaitingError: Error, CustomStringConvertible, Sendable {
    package var jobID: JobID
    package var status: JobStatus
    package var finished: Bool
    package var description: String {
        finished
            ? "job \(jobID) has finished"
            : "job \(jobID) was already dispatched to a worker (status \(status.rawValue)); only waiting jobs change"
    }
}
