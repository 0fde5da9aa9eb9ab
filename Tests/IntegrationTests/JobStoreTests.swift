import Domain
import Foundation
import Logging
import TestSupport
import Testing

@testable import Persistence

/// The job SQL against real Postgres: claims are exclusive, admission respects maxJobs, free worker slots, priority
/// and fair share, writes are fenced by attempt.
@Suite("Postgres job store", .serialized)
struct JobStoreTests {
    static func withStore(_ body: (PostgresJobStore, ComputeEnvironment) async throws -> Void) async throws {
        var configuration = PostgresConfiguration.fromEnvironment()
        configuration.maximumConnections = 10
        let client = PostgresClient(configuration: configuration, logger: Logger(label: "test"))
        do {
            try await TestDatabase.migrate(client)
            let store = PostgresJobStore(client: client)
            let environment = ComputeEnvironment(id: "store-\(UInt32.random(in: 0...UInt32.max))")
            try await store.upsertEnvironments([environment])
            do {
                try await body(store, environment)
            } catch {
                try? await Self.removeEnvironment(environment, client: client)
                throw error
            }
            try await Self.removeEnvironment(environment, client: client)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    /// The test's jobs and workers go with it.
    static func removeEnvironment(_ environment: ComputeEnvironment, client: PostgresClient) async throws {
        try await PostgresJobStore(client: client).removeEnvironment(environment.id)
    }

    static func newJob(_ environment: ComputeEnvironment, owner: String = "tester", priority: Int = 0) -> Job {
        Job(
            id: JobID(), environment: environment.id, owner: owner, priority: priority,
            workflow: Workflow(stages: [
                .init(
                    input: [], algorithm: .init(rawcode: "print(1)", container: .init(entrypoint: "python3 $ALGO")))
            ]))
    }

    /// One dispatch pass, retried while another dispatcher (another test's process) holds the lock.
    static func dispatch(
        _ store: PostgresJobStore, _ environment: ComputeEnvironment, limit: Int = 256,
        redispatchAfter: Duration = .seconds(30)
    ) async throws -> PostgresJobStore.DispatchPass {
        while true {
            let pass = try await store.dispatch(
                environment: environment.id, limit: limit, redispatchAfter: redispatchAfter,
                workerStaleAfter: .seconds(30))
            if !pass.busy { return pass }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test("8 concurrent claimers over 1,000 jobs: each job is claimed exactly once")
    func exclusiveClaims() async throws {
        try await Self.withStore { store, environment in
            var ids: [JobID] = []
            for _ in 0..<1000 {
                let job = Self.newJob(environment)
                try await store.insert(job)
                ids.append(job.id)
            }
            try await store.markAdmitted(ids)
            let all = ids
            let wins = try await withThrowingTaskGroup(of: [JobID].self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var won: [JobID] = []
                        for id in all.shuffled() {
                            if case .claimed = try await store.claim(
                                jobID: id, workerID: "w\(worker)", lease: .seconds(60))
                            {
                                won.append(id)
                            }
                        }
                        return won
                    }
                }
                return try await group.reduce(into: [JobID]()) { $0 += $1 }
            }
            #expect(wins.count == 1000)
            #expect(Set(wins).count == 1000)
        }
    }

    @Test("a job is claimable only once admitted; adoption keeps the attempt and its start time")
    func claimNeedsAdmission() async throws {
        try await Self.withStore { store, environment in
            let job = Self.newJob(environment)
            try await store.insert(job)
            guard case .notAdmitted = try await store.claim(jobID: job.id, workerID: "a", lease: .seconds(60)) else {
                throw TestFailure("a waiting job must not be claimed")
            }
            try await store.markAdmitted([job.id])
            guard case .claimed(let running) = try await store.claim(jobID: job.id, workerID: "a", lease: .seconds(60))
            else { throw TestFailure("the admitted job should be claimed") }
            // Launched on a cluster; the lease lapses; another worker adopts the same attempt.
            try await store.markLaunched(JobClaim(running))
            let started = try await store.client.query(
                """
                update jobs set lease_until = now() - interval '1 second',
                    attempt_started_at = now() - interval '1 hour' where id = $1 returning attempt_started_at
                """, [.uuid(job.id.uuid)])[0].date("attempt_started_at")
            guard case .claimed(let adopted) = try await store.claim(jobID: job.id, workerID: "c", lease: .seconds(60))
            else { throw TestFailure("adoption failed") }
            #expect(adopted.attempt == running.attempt)
            let kept = try await store.client.query(
                "select attempt_started_at from jobs where id = $1", [.uuid(job.id.uuid)])[0].date("attempt_started_at")
            #expect(kept == started, "an adopted attempt keeps its start, so its time limit is not extended")
        }
    }

    @Test("admission: maxJobs holds exactly, only as many as live workers have free slots, redispatch of owed jobs")
    func admission() async throws {
        try await Self.withStore { store, environment in
            let capped = ComputeEnvironment(id: environment.id, maxJobs: 3)
            try await store.upsertEnvironments([capped])
            let jobs = (0..<10).map { _ in Self.newJob(environment) }
            try await store.insertBatch(jobs, batchID: nil)
            // No worker serves the environment: nothing is admitted.
            var pass = try await Self.dispatch(store, environment)
            #expect(pass.admitted.isEmpty && pass.freeWorkerSlots == 0)
            // Two slots on a live worker: two admitted, oldest first.
            try await store.registerWorker(
                id: "\(environment.id)-w1", environments: [environment.id], slots: 2, executor: "local")
            pass = try await Self.dispatch(store, environment)
            #expect(pass.admitted.map(\.id) == Array(jobs.prefix(2).map(\.id)))
            // Not claimed yet: they still take the worker's slots, so nothing more.
            pass = try await Self.dispatch(store, environment)
            #expect(pass.admitted.isEmpty)
            // A second worker with ten slots: maxJobs 3 allows one more, whatever the slots.
            try await store.registerWorker(
                id: "\(environment.id)-w2", environments: [environment.id], slots: 10, executor: "local")
            pass = try await Self.dispatch(store, environment)
            #expect(pass.admitted.map(\.id) == [jobs[2].id])
            #expect(pass.active == 2)
            // Concurrent passes never admit beyond maxJobs.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 { group.addTask { _ = try await Self.dispatch(store, environment) } }
                try await group.waitForAll()
            }
            let admitted = try await store.client.query(
                "select count(*) as n from jobs where environment = $1 and admitted_at is not null",
                [.text(environment.id)])
            #expect(try admitted[0].int("n") == 3)
            // A job that finishes frees its slot for the next one.
            guard
                case .claimed(let first) = try await store.claim(
                    jobID: jobs[0].id, workerID: "\(environment.id)-w1", lease: .seconds(60))
            else { throw TestFailure("claim failed") }
            try await store.finish(JobClaim(first), result: ExecutionResult(status: .finished, outcome: .succeeded))
            pass = try await Self.dispatch(store, environment)
            #expect(pass.admitted.map(\.id) == [jobs[3].id])
            // A hand-back clears the dispatch: the next pass publishes it again at once; an old dispatch is
            // published again after the threshold.
            guard
                case .claimed(let second) = try await store.claim(
                    jobID: jobs[1].id, workerID: "\(environment.id)-w1", lease: .seconds(60))
            else { throw TestFailure("claim failed") }
            try await store.release(JobClaim(second))
            pass = try await Self.dispatch(store, environment)
            #expect(pass.redispatched.map(\.id) == [jobs[1].id])
            #expect(pass.admitted.isEmpty)
            pass = try await Self.dispatch(store, environment, redispatchAfter: .zero)
            #expect(Set(pass.redispatched.map(\.id)) == [jobs[1].id, jobs[2].id, jobs[3].id])
            // A stale worker's slots do not count.
            try await store.client.execute(
                "update workers set last_seen = now() - interval '1 hour' where $1 = any(environments)",
                [.text(environment.id)])
            try await store.finish(
                JobClaim(jobID: jobs[2].id, attempt: 0, number: 0, workerID: nil),
                result: ExecutionResult(status: .finished, outcome: .stopped))
            pass = try await Self.dispatch(store, environment)
            #expect(pass.admitted.isEmpty && pass.freeWorkerSlots == 0)
        }
    }

    @Test("admission order: higher priority first, then the owner with the fewest admitted jobs, then the oldest")
    func admissionOrder() async throws {
        try await Self.withStore { store, environment in
            let capped = ComputeEnvironment(id: environment.id, maxJobs: 100)
            try await store.upsertEnvironments([capped])
            try await store.registerWorker(
                id: "\(environment.id)-w", environments: [environment.id], slots: 100, executor: "local")
            // Owner a submits 20 jobs, then b 2 jobs, then c one urgent job.
            let a = (0..<20).map { _ in Self.newJob(environment, owner: "a") }
            try await store.insertBatch(a, batchID: nil)
            let b = (0..<2).map { _ in Self.newJob(environment, owner: "b") }
            try await store.insertBatch(b, batchID: nil)
            let urgent = Self.newJob(environment, owner: "c", priority: 9)
            try await store.insert(urgent)
            // a already runs 3 jobs.
            let running = (0..<3).map { _ in Self.newJob(environment, owner: "a") }
            try await store.insertBatch(running, batchID: nil)
            try await store.markAdmitted(running.map(\.id))

            let pass = try await Self.dispatch(store, environment, limit: 8)
            let owners = try await pass.admitted.asyncMap { try await store.job($0.id)?.owner ?? "?" }
            // c's priority 9 first; then b (0 admitted) twice before a (3 admitted) gets any, then a.
            #expect(owners == ["c", "b", "b", "a", "a", "a", "a", "a"])
            #expect(pass.admitted.first?.id == urgent.id)
            #expect(pass.admitted.filter { $0.id != urgent.id }.prefix(2).map(\.id) == b.map(\.id))
            #expect(pass.admitted.suffix(5).map(\.id) == Array(a.prefix(5).map(\.id)))

            // A waiting job's priority can change; an admitted one's cannot.
            let late = a[10]
            #expect(try await store.setPriority(jobID: late.id, priority: 5)?.priority == 5)
            let next = try await Self.dispatch(store, environment, limit: 1)
            #expect(next.admitted.map(\.id) == [late.id])
            await #expect(throws: NotWaitingError.self) {
                _ = try await store.setPriority(jobID: late.id, priority: 1)
            }
        }
    }

    @Test("a stale attempt's write is rejected, the current attempt's is applied")
    func fencing() async throws {
        try await Self.withStore { store, environment in
            let job = Self.newJob(environment)
            try await store.insert(job)
            try await store.markAdmitted([job.id])
            guard case .claimed(let first) = try await store.claim(jobID: job.id, workerID: "a", lease: .seconds(1))
            else { throw TestFailure("first claim failed") }
            #expect(first.attempt == 1 && first.claimNumber == 1)
            // A live lease keeps others out.
            guard
                case .heldByLiveWorker(_, let owner) = try await store.claim(
                    jobID: job.id, workerID: "b", lease: .seconds(60))
            else { throw TestFailure("second claim should wait for the lease") }
            #expect(owner == "a")
            try await Task.sleep(for: .milliseconds(1200))
            guard case .claimed(let second) = try await store.claim(jobID: job.id, workerID: "b", lease: .seconds(60))
            else { throw TestFailure("claim after lease expiry failed") }
            #expect(second.attempt == 2 && second.claimNumber == 2)

            await #expect(throws: FencingError.self) {
                try await store.recordStatus(JobClaim(first), status: .provisioningSuccess)
            }
            #expect(try await store.renewLeases(workerID: "a", claims: [JobClaim(first)], lease: .seconds(60)).isEmpty)
            try await store.recordStatus(JobClaim(second), status: .provisioningSuccess)
            await #expect(throws: IllegalTransition.self) {
                try await store.recordStatus(JobClaim(second), status: .configuringVolumes)
            }
            await #expect(throws: FencingError.self) {
                try await store.finish(JobClaim(first), result: ExecutionResult(status: .finished, outcome: .succeeded))
            }
            try await store.finish(
                JobClaim(second), result: ExecutionResult(status: .finished, outcome: .failed, exitCode: 2))
            let finished = try #require(try await store.job(job.id))
            #expect(finished.status == .finished)
            #expect(finished.outcome == .failed)
            #expect(finished.exitCode == 2)
            // A message for a finished job is dropped by the claim.
            guard case .finished = try await store.claim(jobID: job.id, workerID: "c", lease: .seconds(60)) else {
                throw TestFailure("claim of a finished job should report it finished")
            }
        }
    }

    @Test("after an adoption of the same attempt, the old holder can write nothing: status, finish, renewal, release")
    func fencingAfterAdoption() async throws {
        try await Self.withStore { store, environment in
            let job = Self.newJob(environment)
            try await store.insert(job)
            try await store.markAdmitted([job.id])
            guard case .claimed(let stale) = try await store.claim(jobID: job.id, workerID: "a", lease: .seconds(60))
            else { throw TestFailure("claim failed") }
            try await store.markLaunched(JobClaim(stale))
            try await store.recordStatus(JobClaim(stale), status: .provisioningSuccess)
            // Worker a is cut off; its lease lapses and b adopts the launched attempt: same attempt, new claim.
            try await store.client.execute(
                "update jobs set lease_until = now() - interval '1 second' where id = $1", [.uuid(job.id.uuid)])
            guard case .claimed(let adopter) = try await store.claim(jobID: job.id, workerID: "b", lease: .seconds(60))
            else { throw TestFailure("adoption failed") }
            #expect(adopter.attempt == stale.attempt && adopter.claimNumber == stale.claimNumber + 1)

            // a comes back: every write is refused, though its attempt is the current one.
            await #expect(throws: FencingError.self) {
                try await store.recordStatus(JobClaim(stale), status: .runningAlgorithm)
            }
            await #expect(throws: FencingError.self) {
                try await store.finish(
                    JobClaim(stale), result: ExecutionResult(status: .algorithmFailed, outcome: .failed, exitCode: 1))
            }
            await #expect(throws: FencingError.self) { try await store.markLaunched(JobClaim(stale)) }
            #expect(try await store.renewLeases(workerID: "a", claims: [JobClaim(stale)], lease: .seconds(60)).isEmpty)
            try await store.release(JobClaim(stale))
            #expect(try await store.job(job.id)?.workerID == "b", "a stale hand-back does not release b's job")
            // Even a stale holder that names the adopter's claim number is not the adopter.
            var forged = JobClaim(adopter)
            forged.workerID = "a"
            await #expect(throws: FencingError.self) { try await store.recordStatus(forged, status: .runningAlgorithm) }

            // b's writes land.
            try await store.recordStatus(JobClaim(adopter), status: .runningAlgorithm)
            try await store.finish(
                JobClaim(adopter), result: ExecutionResult(status: .finished, outcome: .succeeded, exitCode: 0))
            let done = try #require(try await store.job(job.id))
            #expect(done.outcome == .succeeded && done.exitCode == 0)
        }
    }

    @Test("a pass first analyzes jobs when the table holds over twice the rows its statistics counted")
    func passAnalyzesOutgrownStatistics() async throws {
        try await Self.withStore { store, environment in
            let client = store.client
            func counted() async throws -> Int {
                try await client.query(
                    "select greatest(reltuples, 0)::bigint as n from pg_class where oid = 'jobs'::regclass")[0].int("n")
            }
            // Autovacuum must not analyze the table between this test's own ANALYZE and the pass.
            try await client.execute("alter table jobs set (autovacuum_enabled = false)")
            do {
                try await client.execute("analyze jobs")
                let before = try await counted()
                let added = before + Int(PostgresJobStore.statisticsSlack) + 1_000
                for start in stride(from: 0, to: added, by: 5_000) {
                    let jobs = (start..<min(added, start + 5_000)).map { _ in Self.newJob(environment) }
                    try await store.insertBatch(jobs, batchID: nil)
                }
                // The server counts live rows a moment after the inserting backend reports them.
                let deadline = ContinuousClock.now + .seconds(20)
                while try await client.query("select pg_stat_get_live_tuples('jobs'::regclass) as n")[0].int("n")
                    <= 2 * before + Int(PostgresJobStore.statisticsSlack)
                {
                    guard ContinuousClock.now < deadline else { throw TestFailure("live rows were never reported") }
                    try await Task.sleep(for: .milliseconds(100))
                }
                // A pass skips the ANALYZE while an autovacuum that started earlier still holds the table; the
                // next pass checks again.
                let passes = ContinuousClock.now + .seconds(30)
                repeat {
                    _ = try await Self.dispatch(store, environment)
                    // ANALYZE estimates from a sample: the added rows are counted, give or take a few percent.
                    if try await counted() >= before + added / 2 { break }
                    try await Task.sleep(for: .milliseconds(200))
                } while ContinuousClock.now < passes
                #expect(try await counted() >= before + added / 2)
            } catch {
                _ = try? await client.execute("alter table jobs reset (autovacuum_enabled)")
                throw error
            }
            try await client.execute("alter table jobs reset (autovacuum_enabled)")
        }
    }

    @Test("statements about one job probe jobs_pkey even when the statistics saw the partial indexes empty")
    func oneJobStatementsProbeThePrimaryKey() async throws {
        try await Self.withStore { store, environment in
            func insert(_ count: Int, admitted: String, finished: String) -> String {
                """
                insert into jobs (id, environment, owner, workflow, admitted_at, finished_at, outcome)
                select gen_random_uuid(), '\(environment.id)', 'tester', '{}', \(admitted), \(finished),
                    case when \(finished) is not null then 'succeeded' end
                from generate_series(1, \(count)) n;
                """
            }
            // After a quiet spell the statistics saw only finished jobs; then waiting and admitted jobs arrive.
            let quiet = """
                update jobs set finished_at = now(), outcome = 'succeeded' where finished_at is null;
                \(insert(30_000, admitted: "now()", finished: "now()"))
                analyze jobs;
                \(insert(30_000, admitted: "case when n % 2 = 0 then now() end", finished: "null"))
                """
            // Before the first jobs finish the statistics saw none finished; then many finish.
            let busy = """
                delete from jobs where finished_at is not null;
                \(insert(30_000, admitted: "null", finished: "null"))
                analyze jobs;
                \(insert(30_000, admitted: "now()", finished: "now()"))
                """
            let cases = [
                // a claim
                (
                    quiet,
                    """
                    update jobs set worker_id = 'w' where id = $1 and finished_at is null and admitted_at is not null
                        and (lease_until is null or lease_until < now())
                    """
                ),
                // a priority change
                (quiet, "update jobs set priority = 1 where id = $1 and admitted_at is null and finished_at is null"),
                // a status write
                (quiet, "update jobs set status = 30 where id = $1 and finished_at is null"),
                // result expiry's lock
                (busy, "select id from jobs where id = any($1::uuid[]) and finished_at is not null and not removed"),
            ]
            let id = UUID().uuidString.lowercased()
            for (setUp, statement) in cases {
                let plan = try await store.client.withSession { session in
                    // In a transaction that is rolled back, so the table and its statistics are as they were.
                    try await session.executeScript("begin")
                    do {
                        try await session.executeScript(setUp)
                        let explained = statement.replacingOccurrences(
                            of: "$1", with: statement.contains("any($1") ? "array['\(id)']" : "'\(id)'")
                        let rows = try await session.query("explain (costs off) \(explained)")
                        try await session.executeScript("rollback")
                        return try rows.map { try $0.string("QUERY PLAN") }.joined(separator: "\n")
                    } catch {
                        try? await session.executeScript("rollback")
                        throw error
                    }
                }
                #expect(plan.contains("jobs_pkey"), "\(statement)\n\(plan)")
            }
        }
    }

    @Test("migrations applied twice are a no-op")
    func migrationsTwice() async throws {
        try await Self.withStore { store, _ in
            let again = try await TestDatabase.migrate(store.client)
            #expect(again.isEmpty)
        }
    }
}

extension Sequence {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var values: [T] = []
        for element in self { values.append(try await transform(element)) }
        return values
    }
}
