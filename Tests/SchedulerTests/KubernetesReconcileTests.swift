import Domain
import Foundation
import Kubernetes
import KubernetesEmulator
import Logging
import Persistence
import Scheduler
import Storage
import TestSupport
import Testing

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

    private init(makeClient: TestDatabase.Clients, emulator: KubernetesEmulator, port: Int, watch: Bool) throws {
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
        self.cluster = KubernetesReconcileCluster(
            configuration: .init(namespace: "c2d-test", pageSize: 7, watch: watch), client: kubernetes,
            resultStore: results,
            store: store, logger: TestDatabase.logger)
    }

    /// With `watch`, the adapter answers passes from its watches (as in production); else it lists every pass.
    static func with(watch: Bool = true, _ body: (ReconcileWorld) async throws -> Void) async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            var configuration = KubernetesEmulatorConfiguration()
            configuration.defaultPodDuration = .milliseconds(20)
            let emulator = KubernetesEmulator(configuration: configuration, logger: TestDatabase.logger)
            let port = try await emulator.start()
            let world = try ReconcileWorld(makeClient: makeClient, emulator: emulator, port: port, watch: watch)
            func cleanUp() async {
                world.cluster.stop()
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
                    where job_id = jobs.id and status in (2, 41, 70, 31, 62)) as terminal_events
            from jobs where id = $1
            """,
            [.uuid(job.id.uuid)])[0]
    }

    // MARK: Cluster objects, made with the client as the worker's executor would

    struct StepPlan {
        var step: ClusterNaming.Step
        var seconds: Double = 0
        var exitCode: Int = 0
        var oom = false
        var logs: String? = nil
    }

    /// The attempt's Secret and one Job per step, labelled as the executor labels them.
    func createObjects(jobID: JobID, attempt: Int = 1, environment: String = "env", steps: [StepPlan]) async throws {
        _ = try await kubernetes.create(
            Secret(
                metadata: ObjectMeta(
                    name: ClusterNaming.attemptName(jobID: jobID, attempt: attempt),
                    labels: ClusterNaming.labels(jobID: jobID, attempt: attempt, environment: environment, step: nil)),
                stringData: ["workflow.json": "{}"]),
            namespace: namespace)
        for plan in steps {
            let labels = ClusterNaming.labels(
                jobID: jobID, attempt: attempt, environment: environment, step: plan.step)
            var annotations = [
                "sim.c2d.io/duration": String(plan.seconds), "sim.c2d.io/exit-code": String(plan.exitCode),
            ]
            if plan.oom { annotations["sim.c2d.io/oom"] = "true" }
            if let logs = plan.logs { annotations["sim.c2d.io/logs"] = logs }
            _ = try await kubernetes.create(
                Kubernetes.Job(
                    metadata: ObjectMeta(
                        name: ClusterNaming.stepName(jobID: jobID, attempt: attempt, step: plan.step), labels: labels),
                    spec: JobSpec(
                        template: PodTemplateSpec(
                            metadata: ObjectMeta(labels: labels, annotations: annotations),
                            spec: PodSpec(
                                containers: [Container(name: plan.step.rawValue, image: "c2d:test")],
                                restartPolicy: "Never")),
                        backoffLimit: 0)),
                namespace: namespace)
        }
    }

    func objects(of jobID: JobID) async throws -> [ClusterObject] {
        try await cluster.listObjects().filter { $0.jobID == jobID }
    }

    /// Waits until every step Job of the attempt has finished in the emulator.
    func waitUntilFinished(_ jobID: JobID, steps: Int) async throws {
        let done = try await eventually(within: .seconds(20)) {
            let jobs = try await self.objects(of: jobID).filter { $0.kind == .job }
            return jobs.count == steps && jobs.allSatisfy { $0.phase?.isFinished == true }
        }
        #expect(done, "the emulator never finished \(jobID)")
    }

    func archivedLog(_ jobID: JobID, step: String) async throws -> String? {
        let rows = try await client.query(
            "select location from job_logs where job_id = $1 and step = $2", [.uuid(jobID.uuid), .text(step)])
        guard let location = try rows.first?.string("location") else { return nil }
        return try String(contentsOf: results.file(at: location), encoding: .utf8)
    }
}

/// Every duty end to end through `runOnce`, against Postgres rows and objects in the Kubernetes emulator.
@Suite("Reconciling against the Kubernetes emulator", .serialized)
struct KubernetesReconcileTests {
    @Test(arguments: [true, false])
    func performsEachDutyAgainstRowsAndClusterObjects(watch: Bool) async throws {
        try await ReconcileWorld.with(watch: watch) { world in
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
            try await world.createObjects(jobID: stranger, steps: [.init(step: .configure, seconds: 600)])
            // Duty 5: launched, objects gone; one retried (attempt 1 < 2), one failed as lost (attempt 2).
            let vanished = try await world.insert()
            try await world.launch(vanished, expired: false)
            let lost = try await world.insert()
            try await world.launch(lost, expired: false)
            try await world.sql("update jobs set attempt = 2, launched_attempt = 2 where id = $1", lost)
            // Duty 6: finished objects, worker gone: a crash (exit 3), an OOM, and a success.
            let crashed = try await world.insert()
            try await world.launch(crashed, expired: true)
            try await world.createObjects(
                jobID: crashed.id,
                steps: [
                    .init(step: .configure, logs: "inputs ready"), .init(step: .algorithm, exitCode: 3, logs: "boom"),
                ])
            let oom = try await world.insert()
            try await world.launch(oom, expired: true)
            try await world.createObjects(
                jobID: oom.id, steps: [.init(step: .configure), .init(step: .algorithm, oom: true, logs: "alloc")])
            let succeeded = try await world.insert()
            try await world.launch(succeeded, expired: true)
            try await world.createObjects(
                jobID: succeeded.id,
                steps: [.init(step: .configure), .init(step: .algorithm, logs: "42"), .init(step: .publish)])
            // Duty 7: past maxJobDuration (600 s), still running in the cluster, worker alive.
            let overdue = try await world.insert()
            try await world.launch(overdue, expired: false)
            try await world.sql(
                "update jobs set started_at = now() - interval '700 s', attempt_started_at = now() - interval '700 s' "
                    + "where id = $1", overdue)
            try await world.createObjects(
                jobID: overdue.id, steps: [.init(step: .configure), .init(step: .algorithm, seconds: 600)])
            // Duty 8: stop requested, worker gone, algorithm running.
            let stopped = try await world.insert()
            try await world.launch(stopped, expired: true)
            try await world.sql("update jobs set stopreq = 1 where id = $1", stopped)
            try await world.createObjects(
                jobID: stopped.id, steps: [.init(step: .configure), .init(step: .algorithm, seconds: 600)])
            // Duty 3: lease expired, objects running: handed over (the next claim adopts attempt 1).
            let handed = try await world.insert()
            try await world.launch(handed, expired: true)
            try await world.createObjects(jobID: handed.id, steps: [.init(step: .configure, seconds: 600)])
            // Duty 9: never claimed within maxQueueWait.
            let expired = try await world.insert()
            try await world.sql("update jobs set created_at = now() - interval '400 s' where id = $1", expired)
            // Duty 10, as reported: capacity 1 in "cap": one running, two waiting for admission.
            let capRunning = try await world.insert("cap")
            try await world.launch(capRunning, expired: false)
            try await world.createObjects(
                jobID: capRunning.id, environment: "cap", steps: [.init(step: .configure, seconds: 600)])
            var capWaiting: [Domain.Job] = []
            for _ in 0..<2 {
                capWaiting.append(try await world.insert("cap"))
            }
            // Duty 11: finished long ago with stored results.
            let old = try await world.insert()
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-result-\(UUID().uuidString)")
            try Data("result".utf8).write(to: file)
            let stored = try await world.results.store(jobID: old.id, name: "0/outputs/out.txt", from: file)
            try? FileManager.default.removeItem(at: file)
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

            for job in [crashed, oom] { try await world.waitUntilFinished(job.id, steps: 2) }
            try await world.waitUntilFinished(succeeded.id, steps: 3)

            let (leadership, leading) = world.leader("reconciler")
            let epoch = try await ReconcileWorld.epoch(of: leadership)
            let reconciler = world.reconciler(leadership)

            let first = try await reconciler.runOnce(epoch: epoch)
            #expect(first.failSafe == nil)
            #expect(first.failed == 0)
            #expect(
                first.applied == [
                    .deleteOrphan: 3, .finalizeFromCluster: 3, .timeOut: 1, .finalizeStop: 1, .handOver: 1,
                    .expireInQueue: 1, .removeResults: 1, .hideEnvironment: 1,
                ])
            #expect(first.capacity["cap"]?.running == 1)
            #expect(first.capacity["cap"]?.waiting == capWaiting.map(\.id))
            // The objects of the vanished attempts start their grace period now; after it, duty 5 acts.
            try await Task.sleep(for: .milliseconds(1100))
            let second = try await reconciler.runOnce(epoch: epoch)
            #expect(second.applied == [.retryLost: 1, .failLost: 1], "\(second)")

            var r = try await world.row(crashed)
            #expect(
                try r.int("status") == 41 && r.optionalInt("exit_code") == 3 && r.optionalString("outcome") == "failed")
            #expect(try await world.archivedLog(crashed.id, step: "algorithm")?.contains("boom") == true)
            #expect(try await world.archivedLog(crashed.id, step: "configure")?.contains("inputs ready") == true)
            r = try await world.row(oom)
            #expect(try r.int("status") == 41 && r.bool("oom_killed") && r.optionalString("failure_reason") == "oom")
            #expect(try await world.archivedLog(oom.id, step: "algorithm")?.contains("alloc") == true)
            r = try await world.row(succeeded)
            #expect(try r.int("status") == 70 && r.optionalString("outcome") == "succeeded")
            #expect(try await world.archivedLog(succeeded.id, step: "publish") != nil)
            r = try await world.row(overdue)
            #expect(try r.optionalString("outcome") == "timed_out" && r.int("stopreq") == 2 && r.int("status") == 70)
            r = try await world.row(stopped)
            #expect(try r.optionalString("outcome") == "stopped" && r.int("status") == 70)
            #expect(try await world.archivedLog(stopped.id, step: "configure") != nil)
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
            #expect(try await world.client.query("select hidden from environments where id = 'old'")[0].bool("hidden"))

            // The cluster keeps only the objects of live attempts: the handed-over job's and the capacity runner's.
            let remaining = try await eventually(within: .seconds(10)) {
                Set(try await world.cluster.listObjects().filter { !$0.deleting }.map(\.jobID))
                    == [handed.id, capRunning.id]
            }
            #expect(remaining)

            // Nothing is applied twice: a third pass (a full one from a new reconciler) finds nothing to do, and
            // each finished job has exactly one terminal event.
            let third = try await world.reconciler(leadership).runOnce(epoch: epoch)
            #expect(third.applied.isEmpty, "\(third)")
            // An incremental pass with watches is answered from them: no new LIST.
            let lists = await world.emulator.statistics().requests(verb: "list", resource: "jobs")
            let fourth = try await reconciler.runOnce(epoch: epoch)
            #expect(!fourth.fullPass && fourth.applied.isEmpty, "\(fourth)")
            let listed = await world.emulator.statistics().requests(verb: "list", resource: "jobs") - lists
            #expect(watch ? listed == 0 : listed > 0)
            for job in [crashed, oom, succeeded, overdue, stopped, lost, expired] {
                #expect(try await world.row(job).int("terminal_events") == 1)
            }

            // The leader's view is on /metrics through the state row.
            let metrics = try await store.metricsSnapshot()
            let lease = try #require(metrics.leases.first { $0.name == "scheduler" })
            #expect(lease.holder == "reconciler" && lease.isHeld && lease.epoch == epoch)
            let pass = try #require(metrics.passes.first { $0.lease == "scheduler" })
            #expect(pass.applied["finalizeFromCluster"] == 3)
            #expect(pass.passesTotal == 4)
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
                try await world.createObjects(
                    jobID: job.id,
                    steps: [
                        .init(step: .configure), .init(step: .algorithm, logs: "run \(index)"), .init(step: .publish),
                    ])
                finished.append(job)
            }
            var handed: [Domain.Job] = []
            for _ in 0..<3 {
                let job = try await world.insert()
                try await world.launch(job, expired: true)
                try await world.createObjects(jobID: job.id, steps: [.init(step: .configure, seconds: 600)])
                handed.append(job)
            }
            for job in finished { try await world.waitUntilFinished(job.id, steps: 3) }

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

    @Test(arguments: [true, false])
    func anUnreachableClusterFailsNoJobAndEverythingConvergesWhenItReturns(watch: Bool) async throws {
        try await ReconcileWorld.with(watch: watch) { world in
            try await world.store.upsertEnvironments([ComputeEnvironment(id: "env", maxJobs: 100)])
            try await world.client.execute(
                "update environments set definition = definition || '{\"maxQueueWait\": 300}' where id = 'env'")
            let running = try await world.insert()
            try await world.launch(running, expired: false)
            try await world.createObjects(jobID: running.id, steps: [.init(step: .configure, seconds: 600)])
            let vanished = try await world.insert()
            try await world.launch(vanished, expired: false)
            let done = try await world.insert()
            try await world.launch(done, expired: true)
            try await world.createObjects(
                jobID: done.id,
                steps: [.init(step: .configure), .init(step: .algorithm, logs: "ok"), .init(step: .publish)])
            let stranger = JobID()
            try await world.createObjects(jobID: stranger, steps: [.init(step: .configure, seconds: 600)])
            let queued = try await world.insert()
            try await world.sql("update jobs set created_at = now() - interval '400 s' where id = $1", queued)
            try await world.waitUntilFinished(done.id, steps: 3)

            let (leadership, leading) = world.leader("reconciler")
            let epoch = try await ReconcileWorld.epoch(of: leadership)
            let reconciler = world.reconciler(leadership)

            var faults = KubernetesEmulatorFaults()
            faults.serverErrorFraction = 1
            await world.emulator.setFaults(faults)
            // An outage breaks open watches too; wait until the adapter noticed and can no longer list.
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
            let left = try await eventually(within: .seconds(10)) {
                Set(try await world.cluster.listObjects().filter { !$0.deleting }.map(\.jobID)) == [running.id]
            }
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

    func listObjects() async throws -> [ClusterObject] { try await inner.listObjects() }

    func listObjects(full: Bool) async throws -> [ClusterObject] { try await inner.listObjects(full: full) }

    func delete(_ objects: [ClusterObject.Reference]) async throws { try await inner.delete(objects) }

    func archiveLogs(jobID: JobID, attempt: Int, objects: [ClusterObject.Reference]) async throws {
        await gate.wait()
        try await inner.archiveLogs(jobID: jobID, attempt: attempt, objects: objects)
    }
}
