import Domain
import Foundation
import Kubernetes
import KubernetesEmulator
import Logging
import Scheduler
import Storage
import TestSupport
import Testing
import Worker

@testable import Persistence

/// One schema, one emulated cluster, the Kubernetes adapter, a file result store, and a leader.
final class ReconcileWorld {
    let makeClient: TestDatabase.Clients
    let client: PostgresClient
    let store: PostgresJobStore
    let emulator: KubernetesEmulator
    let kubernetes: KubernetesClient
    let results: FileResultStore
    let cluster: KubernetesReconcileCluster
    let namespace = "c2d-test"

    /// Short grace periods instead of the production minutes (lease 1 s, missing objects 1 s, orphans 0 s).
    static let planner = ReconcilePlanner.Configuration(
        leaseGrace: .seconds(1), missingObjectGrace: .seconds(1), orphanGrace: .zero, timeoutGrace: .zero,
        maxAttempts: 2)

    let following: Task<Void, Never>

    private init(makeClient: TestDatabase.Clients, emulator: KubernetesEmulator, port: Int) throws {
        self.makeClient = makeClient
        self.client = makeClient()
        self.store = PostgresJobStore(client: client)
        self.emulator = emulator
        self.kubernetes = try KubernetesClient(
            configuration: KubernetesConfiguration(
                server: "http://127.0.0.1:\(port)", namespace: "c2d-test", requestTimeout: .seconds(5),
                maxRetries: 1),
            logger: TestDatabase.logger)
        self.results = FileResultStore(
            root: FileManager.default.temporaryDirectory.appendingPathComponent("c2d-reconcile-\(UUID().uuidString)"))
        let cluster = KubernetesReconcileCluster(
            configuration: .init(namespace: "c2d-test", pageSize: 7), client: kubernetes, resultStore: results,
            store: store, logger: TestDatabase.logger)
        self.cluster = cluster
        self.following = Task { await cluster.run() }
    }

    /// The adapter follows the emulator with its informer from the start, as the scheduler does.
    static func with(_ body: (ReconcileWorld) async throws -> Void) async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            var configuration = KubernetesEmulatorConfiguration()
            configuration.defaultPodDuration = .milliseconds(20)
            let emulator = KubernetesEmulator(configuration: configuration, logger: TestDatabase.logger)
            let port = try await emulator.start()
            let world = try ReconcileWorld(makeClient: makeClient, emulator: emulator, port: port)
            await world.cluster.informer.waitUntilSynced()
            func cleanUp() async {
                world.following.cancel()
                _ = await world.following.value
                try? await world.kubernetes.shutdown()
                await emulator.shutdown()
                try? FileManager.default.removeItem(at: world.results.root)
            }
            do {
                try await body(world)
            } catch {
                await cleanUp()
                throw error
            }
            await cleanUp()
        }
    }

    // MARK: Leaders

    func leader(_ holder: String, lease: Duration = .seconds(10)) -> (SchedulerLeadership, Task<Void, any Error>) {
        let leadership = SchedulerLeadership(
            configuration: .init(leaseDuration: lease, holderID: holder), client: makeClient(holder),
            logger: TestDatabase.logger)
        return (leadership, Task { try await leadership.run() })
    }

    func reconciler(
        _ leadership: SchedulerLeadership, cluster: (any ReconcileCluster)? = nil,
        planner: ReconcilePlanner.Configuration = ReconcileWorld.planner
    ) -> Reconciler {
        Reconciler(
            configuration: .init(planner: planner), store: PostgresReconcileStore(client: makeClient()),
            leadership: leadership, cluster: cluster ?? self.cluster,
            removeFiles: Reconciler.removeFiles(from: results), logger: TestDatabase.logger)
    }

    static func epoch(of leadership: SchedulerLeadership) async throws -> Int64 {
        #expect(await eventually(within: .seconds(15)) { leadership.role.epoch != nil })
        return try #require(leadership.role.epoch)
    }

    // MARK: Rows

    func insert(_ environment: String = "env") async throws -> Domain.Job {
        let job = ReconcilerTests.job(environment)
        try await store.insert(job)
        return job
    }

    /// Claimed by `worker`, launched (status 40) and, with `expired`, its lease lapsed 20 s ago.
    func launch(_ job: Domain.Job, worker: String = "w1", expired: Bool) async throws {
        try await store.markAdmitted([job.id])
        guard case .claimed(let claimed) = try await store.claim(jobID: job.id, workerID: worker, lease: .seconds(30))
        else {
            Issue.record("claim of \(job.id) failed")
            return
        }
        try await store.markLaunched(JobClaim(claimed))
        try await sql("update jobs set status = 40 where id = $1", job)
        if expired { try await sql("update jobs set lease_until = now() - interval '20 s' where id = $1", job) }
    }

    func sql(_ statement: String, _ job: Domain.Job) async throws {
        try await client.execute(statement, [.uuid(job.id.uuid)])
    }

    func row(_ job: Domain.Job) async throws -> PostgresRow {
        try await client.query(
            """
            select status, attempt, outcome, failure_reason, stopreq, exit_code, oom_killed, worker_id, removed,
                launched_attempt, finished_at is not null as finished,
                admitted_at is not null as admitted, admitted_at is not null and dispatched_at is null as owed, lapses,
                (select count(*) from job_events
                    where job_id = jobs.id and status in (2, 11, 31, 32, 41, 42, 62, 70)) as terminal_events
            from jobs where id = $1
            """,
            [.uuid(job.id.uuid)])[0]
    }

    // MARK: Cluster objects, made with the client and the manifests the worker's executor uses

    /// Launches an attempt as the executor does (its Job, then its algorithm pod): the algorithm runs `entrypoint`
    /// (simulated), and `configureExitCode` makes the simulated configure step fail.
    func createObjects(
        jobID: JobID, attempt: Int = 1, environment: String = "env", entrypoint: String = "sleep 0.05",
        configureExitCode: Int? = nil
    ) async throws {
        let job = Domain.Job(
            id: jobID, environment: environment, owner: "tester", attempt: attempt,
            workflow: Workflow(stages: [
                .init(
                    input: [],
                    algorithm: .init(rawcode: "print(1)", container: .init(entrypoint: entrypoint, image: "python")))
            ]))
        let manifests = JobManifests(
            job: job, environment: ComputeEnvironment(id: environment, maxJobDuration: 3600),
            configuration: KubernetesExecutorConfiguration(namespace: namespace))
        var root = manifests.rootJob(uploadToken: "c2d_test")
        if let configureExitCode {
            root.spec?.template.metadata?.annotations = ["sim.c2d.io/exit-code.configure": String(configureExitCode)]
        }
        let created = try await kubernetes.create(root, namespace: namespace)
        let owner = OwnerReference(
            apiVersion: "batch/v1", kind: "Job", name: manifests.rootName, uid: created.metadata.uid ?? "")
        _ = try await kubernetes.create(manifests.algorithmPod(owner: owner), namespace: namespace)
    }

    func attempt(of jobID: JobID, attempt: Int = 1) -> ObservedAttempt? {
        cluster.informer.observed(AttemptKey(jobID: jobID, attempt: attempt))
    }

    /// Waits until the attempt's io pod is over (publish ended, or configure failed).
    func waitUntilFinished(_ jobID: JobID) async throws {
        let done = await eventually(within: .seconds(20)) {
            self.attempt(of: jobID)?.observation.ioPod.isOver == true
                && self.attempt(of: jobID)?.observation.algorithmPod.isOver == true
        }
        #expect(done, "the emulator never finished \(jobID)")
    }

    /// Live attempts' job ids.
    func liveJobs() async throws -> Set<JobID> {
        Set(try await cluster.listObjects().filter(\.isLive).map(\.key.jobID))
    }
}

/// Every duty end to end through `runOnce`, against Postgres rows and objects in the Kubernetes emulator.
@Suite("Reconciling against the Kubernetes emulator", .serialized)
struct KubernetesReconcileTests {
    @Test func performsEachDutyAgainstRowsAndClusterObjects() async throws {
        try await ReconcileWorld.with { world in
            let store = world.store
            try await store.upsertEnvironments([
                ComputeEnvironment(id: "env", maxJobDuration: 600, maxJobs: 100, storageExpiry: 3600),
                ComputeEnvironment(id: "cap", maxJobs: 1), ComputeEnvironment(id: "old"),
            ])
            try await world.client.execute(
                "update environments set definition = definition || '{\"maxQueueWait\": 300}' where id = 'env'")
            try await world.client.execute(
                "update environments set last_seen = now() - interval '1 hour' where id = 'old'")

            // Duty 4: objects of a job nobody knows.
            let stranger = JobID()
            try await world.createObjects(jobID: stranger, entrypoint: "sleep 600")
            // Duty 5: launched, objects gone; one retried (attempt 1 < 2), one failed as lost (attempt 2).
            let vanished = try await world.insert()
            try await world.launch(vanished, expired: false)
            let lost = try await world.insert()
            try await world.launch(lost, expired: false)
            try await world.sql("update jobs set attempt = 2, launched_attempt = 2 where id = $1", lost)
            // Duty 6: ended attempts, worker gone: a crash (exit 3), an OOM, a success, a failed configure.
            let crashed = try await world.insert()
            try await world.launch(crashed, expired: true)
            try await world.createObjects(jobID: crashed.id, entrypoint: "sleep 0.05; exit 3")
            let oom = try await world.insert()
            try await world.launch(oom, expired: true)
            try await world.createObjects(jobID: oom.id, entrypoint: "head -c 4096M /dev/zero | tail")
            let succeeded = try await world.insert()
            try await world.launch(succeeded, expired: true)
            try await world.createObjects(jobID: succeeded.id)
            let unconfigured = try await world.insert()
            try await world.launch(unconfigured, expired: true)
            try await world.createObjects(jobID: unconfigured.id, configureExitCode: 32)
            // Duty 7: past maxJobDuration (600 s), still running in the cluster, worker alive.
            let overdue = try await world.insert()
            try await world.launch(overdue, expired: false)
            try await world.sql(
                "update jobs set started_at = now() - interval '700 s', attempt_started_at = now() - interval '700 s' "
                    + "where id = $1", overdue)
            try await world.createObjects(jobID: overdue.id, entrypoint: "sleep 600")
            // Duty 8: stop requested, worker gone, algorithm running: stopped first, finalized once stopped.
            let stopped = try await world.insert()
            try await world.launch(stopped, expired: true)
            try await world.sql("update jobs set stopreq = 1 where id = $1", stopped)
            try await world.createObjects(jobID: stopped.id, entrypoint: "sleep 600")
            // Duty 3: lease expired, objects running: handed over (the next claim adopts attempt 1).
            let handed = try await world.insert()
            try await world.launch(handed, expired: true)
            try await world.createObjects(jobID: handed.id, entrypoint: "sleep 600")
            // Duty 9: never claimed within maxQueueWait.
            let expired = try await world.insert()
            try await world.sql("update jobs set created_at = now() - interval '400 s' where id = $1", expired)
            // Duty 10, as reported: capacity 1 in "cap": one running, two waiting for admission.
            let capRunning = try await world.insert("cap")
            try await world.launch(capRunning, expired: false)
            try await world.createObjects(jobID: capRunning.id, environment: "cap", entrypoint: "sleep 600")
            var capWaiting: [Domain.Job] = []
            for _ in 0..<2 {
                capWaiting.append(try await world.insert("cap"))
            }
            // Duty 11: finished long ago with stored results.
            let old = try await world.insert()
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-result-\(UUID().uuidString)")
            try Data("result".utf8).write(to: file)
            let stored = try await world.results.store(jobID: old.id, name: "0/outputs/out.txt", from: file)
            try await store.finish(
                JobClaim(old),
                result: ExecutionResult(
                    status: .finished, outcome: .succeeded,
                    results: [
                        .init(
                            index: 0, name: "out.txt", kind: .output, size: stored.size, sha256: stored.sha256,
                            location: stored.location)
                    ]))
            try await world.sql("update jobs set finished_at = now() - interval '4000 s' where id = $1", old)
            // Duty 11 also removes uploads that never became results: a job stopped after its publish uploaded an
            // output (only logs are copied then), and a retried attempt's upload; their rows and tokens go too.
            let oldStopped = try await world.insert()
            var uploads: [StoredObject] = []
            for (attempt, name) in [(1, "out.csv"), (2, "out.csv")] {
                try Data("partial".utf8).write(to: file)
                uploads.append(
                    try await world.results.store(jobID: oldStopped.id, name: "\(attempt)/outputs/\(name)", from: file))
                try await world.client.execute(
                    """
                    insert into attempt_uploads (job_id, attempt, name, kind, size, sha256, location)
                    values ($1, $2, 'out.csv', 'output', 7, 'ab', $3)
                    """, [.uuid(oldStopped.id.uuid), .int(Int64(attempt)), .text(uploads.last!.location)])
                try await world.client.execute(
                    "insert into attempt_tokens (job_id, attempt, token_hash) values ($1, $2, '\\x00'::bytea)",
                    [.uuid(oldStopped.id.uuid), .int(Int64(attempt))])
            }
            // And a job whose only file was uploaded by an attempt that died before registering it: recorded nowhere.
            let oldUnrecorded = try await world.insert()
            try Data("unregistered".utf8).write(to: file)
            uploads.append(
                try await world.results.store(jobID: oldUnrecorded.id, name: "1/outputs/late.csv", from: file))
            try? FileManager.default.removeItem(at: file)
            for job in [oldStopped, oldUnrecorded] {
                try await store.finish(
                    JobClaim(job), result: ExecutionResult(status: .finished, outcome: .stopped, results: []))
                try await world.sql("update jobs set finished_at = now() - interval '4000 s' where id = $1", job)
            }
            // The succeeded attempt's publish step uploaded its output before the worker died.
            try await world.client.execute(
                """
                insert into attempt_uploads (job_id, attempt, name, kind, size, sha256, location)
                values ($1, 1, 'out.csv', 'output', 2, 'ab', 'x/out.csv'), ($1, 1, 'publish.log', 'publishLog', 1, 'c', 'x/p')
                """, [.uuid(succeeded.id.uuid)])

            for job in [crashed, oom, succeeded, unconfigured] { try await world.waitUntilFinished(job.id) }

            let (leadership, leading) = world.leader("reconciler")
            let epoch = try await ReconcileWorld.epoch(of: leadership)
            let reconciler = world.reconciler(leadership)

            let first = try await reconciler.runOnce(epoch: epoch)
            #expect(first.failSafe == nil)
            #expect(first.failed == 0)
            #expect(
                first.applied == [
                    .deleteOrphan: 1, .finalizeFromCluster: 4, .intervene: 1, .timeOut: 1, .handOver: 1,
                    .expireInQueue: 1, .removeResults: 3, .hideEnvironment: 1,
                ], "\(first)")
            #expect(first.capacity["cap"]?.running == 1)
            #expect(first.capacity["cap"]?.waiting == capWaiting.map(\.id))
            // The stopped attempt's pods go (publish would upload the logs meanwhile); then it is finalized. The
            // vanished attempts' grace period started with the first pass; after it, duty 5 acts.
            try await Task.sleep(for: .milliseconds(1100))
            var applied: [ReconcileAction.Kind: Int] = [:]
            var passes = 1
            var focusedPasses = 0
            let settled = try await eventually(within: .seconds(20), every: .milliseconds(200)) {
                let result = try await reconciler.runOnce(epoch: epoch)
                passes += 1
                if result.focused { focusedPasses += 1 }
                for (kind, count) in result.applied { applied[kind, default: 0] += count }
                return applied[.finalizeFromCluster] == 1 && applied[.retryLost] == 1 && applied[.failLost] == 1
            }
            #expect(settled, "\(applied)")
            // After the first (full) pass, the reconciler plans over what changed; the duties above were done so.
            #expect(focusedPasses == passes - 1, "\(focusedPasses) of \(passes - 1) later passes were focused")

            var r = try await world.row(crashed)
            #expect(
                try r.int("status") == 70 && r.optionalInt("exit_code") == 3 && r.optionalString("outcome") == "failed")
            #expect(try r.optionalString("failure_reason") == "algorithm exited with code 3")
            r = try await world.row(oom)
            #expect(try r.int("status") == 70 && r.bool("oom_killed"))
            #expect(try r.optionalString("failure_reason") == "the algorithm ran out of memory (limit 1024Mi)")
            r = try await world.row(succeeded)
            #expect(try r.int("status") == 70 && r.optionalString("outcome") == "succeeded")
            // One result path: the attempt's uploads are the job's results.
            #expect(try await store.results(of: succeeded.id).map(\.name) == ["out.csv", "publish.log"])
            r = try await world.row(unconfigured)
            #expect(try r.int("status") == 32 && r.optionalInt("exit_code") == 32)
            r = try await world.row(overdue)
            #expect(try r.optionalString("outcome") == "timed_out" && r.int("stopreq") == 2 && r.int("status") == 70)
            r = try await world.row(stopped)
            #expect(try r.optionalString("outcome") == "stopped" && r.int("status") == 70 && r.int("stopreq") == 1)
            r = try await world.row(handed)
            // Its dispatch is cleared, so the dispatcher publishes it again; one lost lease is counted.
            #expect(try r.optionalString("worker_id") == nil && !r.bool("finished") && r.bool("owed"))
            #expect(try r.int("lapses") == 1)
            #expect(try r.optionalInt("launched_attempt") == 1)
            r = try await world.row(expired)
            #expect(try r.int("status") == 2)
            r = try await world.row(vanished)
            #expect(try r.int("status") == 1 && r.optionalInt("launched_attempt") == nil && !r.bool("finished"))
            #expect(try r.bool("owed"))
            r = try await world.row(lost)
            #expect(try r.optionalString("failure_reason") == "lost" && r.optionalString("outcome") == "failed")
            for job in capWaiting { #expect(try await !world.row(job).bool("admitted")) }
            r = try await world.row(old)
            #expect(try r.bool("removed"))
            #expect(
                !FileManager.default.fileExists(atPath: world.results.root.appendingPathComponent(stored.location).path)
            )
            #expect(try await world.row(oldStopped).bool("removed"))
            for upload in uploads {
                let path = world.results.root.appendingPathComponent(upload.location).path
                #expect(!FileManager.default.fileExists(atPath: path), "\(path)")
            }
            for table in ["attempt_uploads", "attempt_tokens", "job_results"] {
                let left = try await world.client.query(
                    "select count(*) as n from \(table) where job_id = any($1::text[]::uuid[])",
                    [.textArray([old.id.uuid.uuidString, oldStopped.id.uuid.uuidString])])
                #expect(try left[0].int("n") == 0, "\(table)")
            }
            #expect(try await world.client.query("select hidden from environments where id = 'old'")[0].bool("hidden"))

            // The cluster keeps only the objects of live attempts: the handed-over job's and the capacity runner's.
            let remaining = try await eventually(within: .seconds(10)) {
                try await world.liveJobs() == [handed.id, capRunning.id]
            }
            #expect(remaining)

            // Nothing is applied twice: a full pass from a new reconciler finds nothing to do, and each finished
            // job has exactly one terminal event.
            let again = try await world.reconciler(leadership).runOnce(epoch: epoch)
            #expect(again.applied.isEmpty, "\(again)")
            // Passes are answered from the informer: no LIST at all once it synced.
            let lists = await world.emulator.statistics().requests(verb: "list", resource: "jobs")
            let incremental = try await reconciler.runOnce(epoch: epoch)
            #expect(!incremental.fullPass && incremental.focused && incremental.applied.isEmpty, "\(incremental)")
            #expect(await world.emulator.statistics().requests(verb: "list", resource: "jobs") == lists)
            for job in [crashed, oom, succeeded, unconfigured, overdue, stopped, lost, expired] {
                #expect(try await world.row(job).int("terminal_events") == 1)
            }

            // The leader's view is on /metrics through the state row.
            let metrics = try await store.metricsSnapshot()
            let lease = try #require(metrics.leases.first { $0.name == "scheduler" })
            #expect(lease.holder == "reconciler" && lease.isHeld && lease.epoch == epoch)
            let pass = try #require(metrics.passes.first { $0.lease == "scheduler" })
            // Four finalized in the first pass, the stopped one once its pods were gone.
            #expect(pass.applied["finalizeFromCluster"] == 5)
            // The passes above, the new reconciler's and the incremental one.
            #expect(pass.passesTotal == passes + 2)
            #expect(pass.capacity["cap"]?.waiting == 2)
            #expect(pass.failSafe == nil)
            leadership.stop()
            _ = await leading.result
        }
    }

    @Test func aStandbyFinishesTheWorkOfALeaderThatDiedMidPassWithoutRepeatingIt() async throws {
        try await ReconcileWorld.with { world in
            try await world.store.upsertEnvironments([ComputeEnvironment(id: "env", maxJobs: 100)])
            var finished: [Domain.Job] = []
            for index in 0..<4 {
                let job = try await world.insert()
                try await world.launch(job, expired: true)
                try await world.createObjects(jobID: job.id, entrypoint: "sleep 0.05; echo run \(index)")
                finished.append(job)
            }
            var handed: [Domain.Job] = []
            for _ in 0..<3 {
                let job = try await world.insert()
                try await world.launch(job, expired: true)
                try await world.createObjects(jobID: job.id, entrypoint: "sleep 600")
                handed.append(job)
            }
            for job in finished { try await world.waitUntilFinished(job.id) }

            // Leader A stalls while archiving logs (after it applied the hand-overs), then dies without releasing.
            let gate = Gate()
            let stalling = StallingCluster(inner: world.cluster, gate: gate)
            let (a, aRunning) = world.leader("a", lease: .seconds(2))
            let aEpoch = try await ReconcileWorld.epoch(of: a)
            let aReconciler = world.reconciler(a, cluster: stalling)
            let aPass = Task { try await aReconciler.runOnce(epoch: aEpoch) }
            #expect(await eventually(within: .seconds(10)) { gate.waiting })
            a.stop(release: false)
            _ = await aRunning.result

            let (b, bRunning) = world.leader("b", lease: .seconds(2))
            let bEpoch = try await ReconcileWorld.epoch(of: b)
            #expect(bEpoch > aEpoch)
            let bPass = try await world.reconciler(b).runOnce(epoch: bEpoch)
            #expect(bPass.applied == [.finalizeFromCluster: 4], "\(bPass)")

            // A wakes up and tries to record what it planned: fenced off, nothing lands.
            gate.open()
            await #expect(throws: LeadershipError.self) { _ = try await aPass.value }

            for job in finished {
                let r = try await world.row(job)
                #expect(try r.int("terminal_events") == 1 && r.int("status") == 70)
            }
            for job in handed {
                let r = try await world.row(job)
                #expect(try r.bool("owed") && r.optionalString("worker_id") == nil)
                let events = try await world.client.query(
                    "select count(*) as n from job_events where job_id = $1 and reason like 'lease expired%'",
                    [.uuid(job.id.uuid)])
                #expect(try events[0].int("n") == 1)
            }
            // A deposed epoch cannot write even outside a pass.
            await #expect(throws: LeadershipError.self) {
                try await a.withFencedTransaction(epoch: aEpoch) { tx in
                    try await tx.execute("update environments set hidden = true")
                }
            }
            b.stop()
            _ = await bRunning.result
        }
    }

    @Test func anUnreachableClusterFailsNoJobAndEverythingConvergesWhenItReturns() async throws {
        try await ReconcileWorld.with { world in
            try await world.store.upsertEnvironments([ComputeEnvironment(id: "env", maxJobs: 100)])
            try await world.client.execute(
                "update environments set definition = definition || '{\"maxQueueWait\": 300}' where id = 'env'")
            let running = try await world.insert()
            try await world.launch(running, expired: false)
            try await world.createObjects(jobID: running.id, entrypoint: "sleep 600")
            let vanished = try await world.insert()
            try await world.launch(vanished, expired: false)
            let done = try await world.insert()
            try await world.launch(done, expired: true)
            try await world.createObjects(jobID: done.id)
            let stranger = JobID()
            try await world.createObjects(jobID: stranger, entrypoint: "sleep 600")
            let queued = try await world.insert()
            try await world.sql("update jobs set created_at = now() - interval '400 s' where id = $1", queued)
            try await world.waitUntilFinished(done.id)

            let (leadership, leading) = world.leader("reconciler")
            let epoch = try await ReconcileWorld.epoch(of: leadership)
            let reconciler = world.reconciler(leadership)

            var faults = KubernetesEmulatorFaults()
            faults.serverErrorFraction = 1
            await world.emulator.setFaults(faults)
            // An outage breaks open watches too; wait until the informer noticed and the cluster counts as unseen.
            await world.emulator.dropWatches()
            let down = await eventually(within: .seconds(20)) { (try? await world.cluster.listObjects()) == nil }
            #expect(down)
            // Three times the missing-object grace of API outage.
            let outageEnd = ContinuousClock.now + .seconds(3)
            var passes = 0
            while ContinuousClock.now < outageEnd {
                let result = try await reconciler.runOnce(epoch: epoch)
                passes += 1
                guard case .clusterUnavailable = result.failSafe else {
                    Issue.record("pass without fail-safe during the outage: \(result)")
                    break
                }
                for kind in [ReconcileAction.Kind.deleteOrphan, .retryLost, .failLost, .finalizeFromCluster] {
                    #expect(result.applied[kind] == nil, "\(kind) applied during the outage")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(passes > 1)
            // Postgres-only duties went on; no job failed or was retried.
            #expect(try await world.row(queued).int("status") == 2)
            for job in [running, vanished, done] {
                let r = try await world.row(job)
                #expect(try !r.bool("finished") && r.int("attempt") == 1 && r.int("status") == 40)
            }
            let metrics = try await world.store.metricsSnapshot()
            #expect(metrics.passes.first { $0.lease == "scheduler" }?.failSafe == "cluster_unavailable")

            await world.emulator.setFaults(KubernetesEmulatorFaults())
            var applied: [ReconcileAction.Kind: Int] = [:]
            let converged = try await eventually(within: .seconds(20), every: .milliseconds(200)) {
                let result = try await reconciler.runOnce(epoch: epoch)
                for (kind, count) in result.applied { applied[kind, default: 0] += count }
                return applied[.retryLost] == 1 && applied[.finalizeFromCluster] == 1 && applied[.deleteOrphan] != nil
            }
            #expect(converged, "\(applied)")
            #expect(try await world.row(done).optionalString("outcome") == "succeeded")
            #expect(try await world.row(vanished).int("status") == 1)
            let r = try await world.row(running)
            #expect(try !r.bool("finished") && !r.bool("owed"))
            let left = try await eventually(within: .seconds(10)) { try await world.liveJobs() == [running.id] }
            #expect(left)
            leadership.stop()
            _ = await leading.result
        }
    }
}

/// Holds callers of ``wait()`` until ``open()``.
final class Gate: Sendable {
    private let state = Locked((waiting: false, open: false))

    var waiting: Bool { state.withLock { $0.waiting } }

    func open() { state.withLock { $0.open = true } }

    func wait() async {
        state.withLock { $0.waiting = true }
        while !state.withLock({ $0.open }) { try? await Task.sleep(for: .milliseconds(10)) }
    }
}

/// The real cluster, except that archiving logs waits at the gate: a leader stopped in the middle of applying.
struct StallingCluster: ReconcileCluster {
    let inner: KubernetesReconcileCluster
    let gate: Gate

    func listObjects() async throws -> ObservedAttempts { try await inner.listObjects() }

    func delete(_ attempts: [AttemptKey]) async throws { try await inner.delete(attempts) }

    func intervene(_ attempt: AttemptKey, _ intervention: AttemptOutcome.Intervention) async throws {
        try await inner.intervene(attempt, intervention)
    }

    func archiveLogs(_ attempt: ObservedAttempt) async throws {
        await gate.wait()
        try await inner.archiveLogs(attempt)
    }
}
