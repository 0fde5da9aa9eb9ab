import Domain
import Foundation
import Logging
import Persistence
import Testing

/// The job SQL against real Postgres: claims are exclusive, writes are fenced by attempt.
@Suite("Postgres job store", .serialized)
struct JobStoreTests {
    static func withStore(_ body: (PostgresJobStore, ComputeEnvironment) async throws -> Void) async throws {
        var configuration = PostgresConfiguration.fromEnvironment()
        configuration.maximumConnections = 10
        let client = PostgresClient(configuration: configuration, logger: Logger(label: "test"))
        do {
            _ = try await MigrationRunner(
                client: client, directory: TestEnvironment.repositoryRoot.appendingPathComponent("migrations"),
                logger: Logger(label: "test")
            ).apply()
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

    /// The test's jobs (and so their outbox rows, which no queue would route) go with it.
    static func removeEnvironment(_ environment: ComputeEnvironment, client: PostgresClient) async throws {
        try await client.execute("delete from jobs where environment = $1", [.text(environment.id)])
        try await client.execute("delete from environments where id = $1", [.text(environment.id)])
    }

    static func newJob(_ environment: ComputeEnvironment) -> Job {
        Job(
            id: JobID(), environment: environment.id, owner: "tester",
            workflow: Workflow(stages: [
                .init(
                    input: [], algorithm: .init(rawcode: "print(1)", container: .init(entrypoint: "python3 $ALGO")))
            ]))
    }

    static func outbox(_ job: Job) -> PostgresJobStore.OutboxMessage {
        .init(jobID: job.id, exchange: "c2d.jobs", routingKey: job.environment, headers: [:], body: "{}")
    }

    @Test("8 concurrent claimers over 1,000 jobs: each job is claimed exactly once")
    func exclusiveClaims() async throws {
        try await Self.withStore { store, environment in
            var ids: [JobID] = []
            for _ in 0..<1000 {
                let job = Self.newJob(environment)
                _ = try await store.insert(job, outbox: Self.outbox(job))
                ids.append(job.id)
            }
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

    @Test("an environment's maxJobs: a claim beyond it is refused and the job stays queued; adoption is not refused")
    func capacity() async throws {
        try await Self.withStore { store, environment in
            let first = Self.newJob(environment)
            let second = Self.newJob(environment)
            for job in [first, second] { _ = try await store.insert(job, outbox: Self.outbox(job)) }
            guard
                case .claimed(let running) = try await store.claim(
                    jobID: first.id, workerID: "a", lease: .seconds(60), maxRunning: 1)
            else { throw TestFailure("the first claim should win") }
            guard
                case .atCapacity = try await store.claim(
                    jobID: second.id, workerID: "b", lease: .seconds(60), maxRunning: 1)
            else { throw TestFailure("a second running job would exceed maxJobs 1") }
            #expect(try await store.job(second.id)?.attempt == 0, "the refused job stays queued, untouched")
            // The first job's attempt is launched on a cluster; its lease lapses; another worker adopts it even
            // though the environment is full (the job is already running there).
            try await store.markLaunched(jobID: first.id, attempt: running.attempt, workerID: "a")
            _ = try await store.client.execute(
                "update jobs set lease_until = now() - interval '1 second' where id = $1", [.uuid(first.id.uuid)])
            guard
                case .claimed(let adopted) = try await store.claim(
                    jobID: first.id, workerID: "c", lease: .seconds(60), maxRunning: 1)
            else { throw TestFailure("adoption must not be refused for capacity") }
            #expect(adopted.attempt == running.attempt)
            try await store.finish(
                jobID: first.id, attempt: adopted.attempt,
                result: ExecutionResult(status: .finished, outcome: .succeeded, exitCode: 0))
            guard
                case .claimed = try await store.claim(
                    jobID: second.id, workerID: "b", lease: .seconds(60), maxRunning: 1)
            else { throw TestFailure("with the first job finished there is room") }
        }
    }

    @Test("a stale attempt's write is rejected, the current attempt's is applied")
    func fencing() async throws {
        try await Self.withStore { store, environment in
            let job = Self.newJob(environment)
            _ = try await store.insert(job, outbox: Self.outbox(job))
            guard case .claimed(let first) = try await store.claim(jobID: job.id, workerID: "a", lease: .seconds(1))
            else { throw TestFailure("first claim failed") }
            #expect(first.attempt == 1)
            // A live lease keeps others out.
            guard
                case .heldByLiveWorker(_, let owner) = try await store.claim(
                    jobID: job.id, workerID: "b", lease: .seconds(60))
            else { throw TestFailure("second claim should wait for the lease") }
            #expect(owner == "a")
            try await Task.sleep(for: .milliseconds(1200))
            guard case .claimed(let second) = try await store.claim(jobID: job.id, workerID: "b", lease: .seconds(60))
            else { throw TestFailure("claim after lease expiry failed") }
            #expect(second.attempt == 2)

            await #expect(throws: FencingError.self) {
                try await store.recordStatus(jobID: job.id, attempt: 1, status: .provisioningSuccess)
            }
            #expect(try await store.renewLease(jobID: job.id, attempt: 1, workerID: "a", lease: .seconds(60)) == .lost)
            try await store.recordStatus(jobID: job.id, attempt: 2, status: .provisioningSuccess)
            await #expect(throws: IllegalTransition.self) {
                try await store.recordStatus(jobID: job.id, attempt: 2, status: .configuringVolumes)
            }
            await #expect(throws: FencingError.self) {
                try await store.finish(
                    jobID: job.id, attempt: 1, result: ExecutionResult(status: .finished, outcome: .succeeded))
            }
            try await store.finish(
                jobID: job.id, attempt: 2, result: ExecutionResult(status: .finished, outcome: .failed, exitCode: 2))
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

    @Test("migrations applied twice are a no-op")
    func migrationsTwice() async throws {
        try await Self.withStore { store, _ in
            let again = try await MigrationRunner(
                client: store.client, directory: TestEnvironment.repositoryRoot.appendingPathComponent("migrations"),
                logger: Logger(label: "test")
            ).apply()
            #expect(again.isEmpty)
        }
    }
}
