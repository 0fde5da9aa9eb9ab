import Domain
import Foundation

/// Reads over many jobs at once, by which the benchmarks and the chaos run follow a run and check its figures, and
/// the few writes that set a benchmark's stage. Kept here so that every statement stays behind the store's typed
/// API; none is on a request path.
extension PostgresJobStore {
    /// How far one environment's jobs are.
    package struct EnvironmentCounts: Sendable, Hashable {
        package var unfinished: Int
        /// Of the unfinished: those whose algorithm runs (status 40).
        package var running: Int
        package var finished: Int
    }

    package func counts(environment: String) async throws -> EnvironmentCounts {
        let row = try await client.query(
            """
            select count(*) filter (where finished_at is null) as unfinished,
                count(*) filter (where finished_at is null and status = \(JobStatus.runningAlgorithm.rawValue)) as running,
                count(*) filter (where finished_at is not null) as finished
            from jobs where environment = $1
            """,
            [.text(environment)])[0]
        return EnvironmentCounts(
            unfinished: try row.int("unfinished"), running: try row.int("running"), finished: try row.int("finished"))
    }

    /// How many of `ids` have not finished.
    package func unfinishedCount(of ids: [JobID]) async throws -> Int {
        try await client.query(
            "select count(*) as n from jobs where id = any($1::text[]::uuid[]) and finished_at is null",
            [.textArray(ids.map(\.uuid.uuidString))]
        )[0].int("n")
    }

    /// Whether the migrations made the `jobs` table in this connection's schema.
    package func hasJobsTable() async throws -> Bool {
        try await client.query("select to_regclass('jobs') is not null as ready").first?.bool("ready") ?? false
    }

    /// The jobs of `environment` no worker ever claimed and still open.
    package func unclaimedJobIDs(environment: String) async throws -> [JobID] {
        try await client.query(
            "select id from jobs where environment = $1 and attempt = 0 and finished_at is null",
            [.text(environment)]
        ).map { JobID(uuid: try $0.uuid("id")) }
    }

    /// Workers registered for `environment`, alive or not.
    package func registeredWorkerCount(environment: String) async throws -> Int {
        try await client.query(
            "select count(*) as n from workers where $1 = any(environments)", [.text(environment)]
        )[0].int("n")
    }

    /// An environment a benchmark made (its id starts with `bench-`), with what it holds.
    package struct BenchEnvironment: Sendable, Hashable {
        package var id: String
        package var jobs: Int
        package var lastSeen: Date
        /// Whether the bench that made it holds its lock (``holdBenchEnvironment(_:)``): it still runs. If not, it
        /// was killed (or, rarely, lost its connection to a Postgres restart).
        package var running: Bool
    }

    /// The environments benchmarks made and did not remove: a bench removes its own at the end, so these are left
    /// by runs that were killed, or belong to runs going on now (`running`). Oldest first.
    package func benchEnvironments() async throws -> [BenchEnvironment] {
        try await client.query(
            """
            select e.id, e.last_seen, (select count(*) from jobs j where j.environment = e.id) as jobs,
                exists (
                    select from pg_locks l
                    where l.locktype = 'advisory' and l.objsubid = 2 and l.granted
                        and l.database = (select oid from pg_database where datname = current_database())
                        and l.classid = \(Self.benchLockClass)::oid and l.objid = hashtext(e.id)::oid
                ) as running
            from environments e where e.id like 'bench-%' order by e.last_seen, e.id
            """
        ).map {
            BenchEnvironment(
                id: try $0.string("id"), jobs: try $0.int("jobs"), lastSeen: try $0.date("last_seen"),
                running: try $0.bool("running"))
        }
    }

    /// Marks environment `id` as a running bench's, before the bench makes it: a session advisory lock, which
    /// ``benchEnvironments()`` reports as `running`. False when another session holds it: a running bench whose id
    /// has the same hash.
    ///
    /// The lock lives as long as the connection that took it, so call this on a client of one connection that does
    /// nothing else, and shut that client down when the bench has removed its environment. (A pool closes a
    /// connection after a cancelled statement, which would drop the lock while the bench cleans up.) When the bench
    /// dies, Postgres drops the lock as soon as it sees the connection close; the session asks the server to probe
    /// the client every few seconds, so a bench on a machine that vanished does not keep it for the kernel's two
    /// hours. A Postgres restart drops it too, while the bench goes on.
    package func holdBenchEnvironment(_ id: String) async throws -> Bool {
        try await client.withSession { session in
            try await session.executeScript(
                "set tcp_keepalives_idle = 10; set tcp_keepalives_interval = 5; set tcp_keepalives_count = 3")
            return try await session.query(
                "select pg_try_advisory_lock(\(Self.benchLockClass), hashtext($1)) as taken", [.text(id)]
            ).first?.bool("taken") ?? false
        }
    }

    /// `bench db`'s scratch tables (`c2d_bench_pgbench_<suffix>`, beside its environment `bench-<suffix>`) in this
    /// schema: a bench drops its own at the end, so these are left by runs that were killed, or run now.
    package func benchScratchTables() async throws -> [String] {
        try await client.query(
            """
            select tablename from pg_tables
            where schemaname = current_schema() and tablename like 'c2d\\_bench\\_pgbench\\_%'
            """
        ).map { try $0.string("tablename") }
    }

    /// Drops one of `bench db`'s scratch tables, if it exists.
    package func dropBenchScratchTable(_ name: String) async throws {
        try await client.executeScript("drop table if exists \(PostgresIdentifier.quoted(name))")
    }

    /// First key of the benches' advisory locks ("c2db"); the second is the hash of the environment id. Locks of
    /// two 32-bit keys never collide with the 64-bit keys of the dispatch and migration locks.
    private static let benchLockClass: Int32 = 0x6332_6462

    /// Forgets the workers registered for `environment` (a benchmark's fleet after it stopped).
    package func removeWorkers(environment: String) async throws {
        try await client.execute("delete from workers where $1 = any(environments)", [.text(environment)])
    }

    /// What a chaos run checks of one job: that it ended once, with one attempt's results.
    package struct JobAudit: Sendable, Hashable {
        package var id: JobID
        package var finished: Bool
        package var outcome: String?
        package var failureReason: String
        package var attempt: Int
        /// Terminal events recorded: more than one means the job ended twice.
        package var terminalEvents: Int
        /// Attempts that recorded results: more than one means two attempts published.
        package var resultAttempts: Int
        /// Where the output named as asked is stored, if it is.
        package var outputLocation: String?
    }

    /// The audits of `ids`; a job missing from the answer was never stored.
    package func audits(of ids: [JobID], outputName: String) async throws -> [JobAudit] {
        let terminal = JobStatus.allCases.filter(\.isTerminal).map { String($0.rawValue) }.joined(separator: ", ")
        return try await client.query(
            """
            select j.id, j.finished_at is not null as finished, j.outcome, coalesce(j.failure_reason, '') as reason,
                j.attempt,
                (select count(*) from job_events e where e.job_id = j.id and e.status in (\(terminal)))
                    as terminal_events,
                (select count(distinct r.attempt) from job_results r where r.job_id = j.id) as result_attempts,
                (select r.location from job_results r where r.job_id = j.id and r.kind = 'output'
                    and r.name = $2 limit 1) as result
            from jobs j where j.id = any($1::text[]::uuid[])
            """,
            [.textArray(ids.map(\.uuid.uuidString)), .text(outputName)]
        ).map {
            JobAudit(
                id: JobID(uuid: try $0.uuid("id")), finished: try $0.bool("finished"),
                outcome: try $0.optionalString("outcome"), failureReason: try $0.string("reason"),
                attempt: try $0.int("attempt"), terminalEvents: try $0.int("terminal_events"),
                resultAttempts: try $0.int("result_attempts"), outputLocation: try $0.optionalString("result"))
        }
    }

    /// When a job was created, first claimed (its first status 20 event) and finished, and how it ended.
    package struct JobTimeline: Sendable, Hashable {
        package var created: Date
        package var claimed: Date?
        package var finished: Date?
        package var outcome: String?
    }

    /// The timelines of every job of `environment`.
    package func timelines(environment: String) async throws -> [JobTimeline] {
        try await client.query(
            """
            select j.created_at, j.finished_at, j.outcome,
                (select min(e.created_at) from job_events e
                    where e.job_id = j.id and e.status = \(JobStatus.configuringVolumes.rawValue)) as claimed
            from jobs j where j.environment = $1
            """,
            [.text(environment)]
        ).map {
            JobTimeline(
                created: try $0.date("created_at"), claimed: try $0.optionalDate("claimed"),
                finished: try $0.optionalDate("finished_at"), outcome: try $0.optionalString("outcome"))
        }
    }

    // MARK: Setting a benchmark's stage

    /// Makes every job of `environment` look launched and running on `workerID` under a lease of `lease`, as a
    /// fleet would have left them: the reconcile benchmark's 100,000 active jobs without running them.
    package func stageRunning(environment: String, workerID: String, lease: Duration) async throws {
        try await client.execute(
            """
            update jobs set attempt = 1, launched_attempt = 1, status = \(JobStatus.runningAlgorithm.rawValue),
                worker_id = $2, lease_until = now() + make_interval(secs => $3), started_at = now()
            where environment = $1
            """,
            [.text(environment), .text(workerID), .double(lease.seconds)])
        try await client.execute("analyze jobs")
    }

    /// Extends the leases of `count` random unfinished jobs by `lease`: a batch of changes for an incremental
    /// reconcile pass to find.
    package func extendRandomLeases(count: Int, by lease: Duration) async throws {
        // `environment is not null` lets the partial index over unfinished jobs serve it (migration 0021).
        try await client.execute(
            """
            update jobs set lease_until = now() + make_interval(secs => $2)
            where id in (
                select id from jobs where finished_at is null and environment is not null order by random() limit $1)
            """,
            [.int(count), .double(lease.seconds)])
    }
}
