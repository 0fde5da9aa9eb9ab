import Domain
import Foundation
import Kubernetes
import Logging
import Persistence
import Scheduler
import TestSupport
import Testing

/// A cluster that lists what the test put in it and records what the reconciler did to it.
final class FakeCluster: ReconcileCluster {
    struct Calls: Sendable {
        var archived: [JobID] = []
        var deleted: [AttemptKey] = []
        var interventions: [AttemptKey] = []
    }

    let objects: Locked<[ObservedAttempt]>
    let calls = Locked(Calls())

    init(_ objects: [ObservedAttempt]) { self.objects = Locked(objects) }

    func listObjects() async throws -> ObservedAttempts { ObservedAttempts(objects.withLock { $0 }) }

    func delete(_ attempts: [AttemptKey]) async throws {
        let keys = Set(attempts)
        objects.withLock { $0.removeAll { keys.contains($0.key) } }
        calls.withLock { $0.deleted += attempts }
    }

    func intervene(_ attempt: AttemptKey, _ intervention: AttemptOutcome.Intervention) async throws {
        calls.withLock { $0.interventions.append(attempt) }
    }

    func archiveLogs(_ attempt: ObservedAttempt) async throws {
        calls.withLock { $0.archived.append(attempt.key.jobID) }
    }
}

/// The reconciler end to end on a real schema: read, plan, apply under a fenced epoch.
@Suite("Reconciler", .serialized)
struct ReconcilerTests {
    static func job(_ environment: String) -> Domain.Job {
        Domain.Job(
            id: JobID(), environment: environment, owner: "tester",
            workflow: Workflow(stages: [
                .init(
                    input: [.init(id: "did:op:1", url: ["https://example.org/a.csv"])],
                    algorithm: .init(rawcode: "print(1)\n", container: .init(entrypoint: "python3 $ALGO")))
            ]))
    }

    @Test func appliesThePostgresDutiesAndTheClusterSideThroughTheProtocol() async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            let client = makeClient()
            let store = PostgresJobStore(client: client)
            try await store.upsertEnvironments([
                ComputeEnvironment(id: "env", maxJobs: 3, storageExpiry: 3600), ComputeEnvironment(id: "old"),
            ])
            try await client.execute(
                """
                update environments set definition = definition || '{"maxQueueWait": 300}' where id = 'env';
                """)
            try await client.execute("update environments set last_seen = now() - interval '1 hour' where id = 'old'")

            func insert() async throws -> Domain.Job {
                let job = Self.job("env")
                try await store.insert(job)
                return job
            }
            func claim(_ job: Domain.Job) async throws {
                try await store.markAdmitted([job.id])
                guard case .claimed = try await store.claim(jobID: job.id, workerID: "w1", lease: .seconds(30)) else {
                    Issue.record("claim failed")
                    return
                }
            }
            func sql(_ statement: String, _ job: Domain.Job) async throws {
                try await client.execute(statement, [.uuid(job.id.uuid)])
            }

            let expired = try await insert()
            try await sql("update jobs set created_at = now() - interval '400 s' where id = $1", expired)
            let overdue = try await insert()
            try await claim(overdue)
            try await sql(
                "update jobs set started_at = now() - interval '4000 s', attempt_started_at = now() - interval '4000 s' "
                    + "where id = $1", overdue)
            let stopped = try await insert()
            try await claim(stopped)
            try await sql(
                "update jobs set stopreq = 1, lease_until = now() - interval '20 s' where id = $1", stopped)
            let orphaned = try await insert()
            try await claim(orphaned)
            try await sql("update jobs set lease_until = now() - interval '20 s' where id = $1", orphaned)
            let failed = try await insert()
            try await claim(failed)
            try await sql("update jobs set lease_until = now() - interval '20 s' where id = $1", failed)
            let old = try await insert()
            try await store.finish(
                JobClaim(old),
                result: ExecutionResult(
                    status: .finished, outcome: .succeeded,
                    results: [.init(index: 0, name: "out", kind: .output, size: 1, sha256: "x", location: "r/1")]))
            try await sql("update jobs set finished_at = now() - interval '4000 s' where id = $1", old)
            let waiting = try await insert()
            try await sql("update jobs set created_at = now() - interval '100 s' where id = $1", waiting)

            // The failed job's publish step uploaded its log before the worker died.
            try await client.execute(
                """
                insert into attempt_uploads (job_id, attempt, name, kind, size, sha256, location)
                values ($1, 1, 'algorithm.log', 'algorithmLog', 3, 'abc', 'r/failed-log')
                """, [.uuid(failed.id.uuid)])

            let now = Date()
            func terminated(_ code: Int) -> ContainerObservation {
                .terminated(ContainerTermination(exitCode: code, reason: code == 0 ? "Completed" : "Error"))
            }
            let cluster = FakeCluster([
                ObservedAttempt(
                    key: AttemptKey(jobID: failed.id, attempt: 1),
                    observation: AttemptObservation(
                        root: .present, ioPod: PodObservation(presence: .present, phase: "Succeeded"),
                        algorithmPod: PodObservation(presence: .present, phase: "Failed"),
                        configure: terminated(0), algorithm: terminated(2), publish: terminated(0)),
                    createdAt: now),
                ObservedAttempt(
                    key: AttemptKey(jobID: JobID(), attempt: 1),
                    observation: AttemptObservation(
                        root: .present, ioPod: PodObservation(presence: .present, phase: "Running"),
                        configure: .running(startedAt: now)),
                    createdAt: now.addingTimeInterval(-3600)),
            ])
            let leadership = SchedulerLeadership(
                configuration: .init(holderID: "reconciler"), client: makeClient(), logger: TestDatabase.logger
            )
            let leading = Task { try await leadership.run() }
            #expect(await eventually(within: .seconds(10)) { leadership.role.epoch != nil })
            let epoch = try #require(leadership.role.epoch)
            let removed = Locked<[JobID]>([])
            let reconciler = Reconciler(
                store: PostgresReconcileStore(client: makeClient()), leadership: leadership, cluster: cluster,
                removeFiles: { jobs in removed.withLock { $0 += jobs } }, logger: TestDatabase.logger
            )

            let first = try await reconciler.runOnce(epoch: epoch)
            #expect(first.fullPass)
            #expect(first.failSafe == nil)
            #expect(first.failed == 0)
            #expect(
                first.applied == [
                    .expireInQueue: 1, .timeOut: 1, .finalizeStop: 1, .handOver: 1, .finalizeFromCluster: 1,
                    .deleteOrphan: 1, .removeResults: 1, .hideEnvironment: 1,
                ])

            func row(_ job: Domain.Job) async throws -> PostgresRow {
                try await client.query(
                    """
                    select status, outcome, failure_reason, stopreq, exit_code, worker_id, removed,
                        admitted_at is not null as admitted, admitted_at is not null and dispatched_at is null as owed
                    from jobs where id = $1
                    """,
                    [.uuid(job.id.uuid)])[0]
            }
            var r = try await row(expired)
            #expect(try r.int("status") == 2 && r.optionalString("outcome") == "failed")
            r = try await row(overdue)
            #expect(try r.optionalString("outcome") == "timed_out" && r.int("stopreq") == 2)
            r = try await row(stopped)
            #expect(try r.optionalString("outcome") == "stopped" && r.int("status") == 70)
            r = try await row(orphaned)
            #expect(try r.optionalString("worker_id") == nil && r.bool("owed"))
            r = try await row(failed)
            #expect(
                try r.int("status") == 70 && r.optionalString("outcome") == "failed" && r.optionalInt("exit_code") == 2)
            // One result path: the attempt's uploads became the job's results, as the worker's finish records them.
            let results = try await store.results(of: failed.id)
            #expect(results.map(\.name) == ["algorithm.log"])
            #expect(results.map(\.location) == ["r/failed-log"])
            r = try await row(old)
            #expect(try r.bool("removed"))
            // Waiting for admission is the dispatcher's business, not the reconciler's.
            r = try await row(waiting)
            #expect(try !r.bool("admitted") && !r.bool("owed"))
            #expect(removed.withLock { $0 } == [old.id])
            #expect(try await client.query("select hidden from environments where id = 'old'")[0].bool("hidden"))
            // A process that serves it again shows it at once, without waiting for a pass of the reconciler.
            try await store.upsertEnvironments([ComputeEnvironment(id: "old")])
            #expect(try await !client.query("select hidden from environments where id = 'old'")[0].bool("hidden"))
            // A pass that planned to hide it from a snapshot taken before that leaves it shown.
            let reconcileStore = PostgresReconcileStore(client: client)
            let hiddenLate = try await client.withTransaction { tx in
                try await reconcileStore.setHidden(["old"], hidden: true, staleAfter: .seconds(600), in: tx)
            }
            #expect(hiddenLate == 0)
            let calls = cluster.calls.withLock { $0 }
            #expect(calls.archived == [failed.id])
            #expect(calls.deleted.count == 2)

            // The next pass reads only what changed and finds nothing new to do.
            let second = try await reconciler.runOnce(epoch: epoch)
            #expect(!second.fullPass)
            #expect(second.applied.isEmpty)

            // A deposed epoch's pass cannot write: hand the lease to someone else and try.
            try await client.execute(
                "update scheduler_lease set holder = 'other', epoch = epoch + 1, lease_until = now() + interval '1 h'")
            let late = try await insert()
            try await sql("update jobs set created_at = now() - interval '400 s' where id = $1", late)
            await #expect(throws: LeadershipError.self) {
                _ = try await reconciler.runOnce(epoch: epoch)
            }
            leadership.stop()
            _ = await leading.result
        }
    }
}
