import ChildProcesses
import Domain
import Foundation
import Kubernetes
import KubernetesEmulator
import Logging
import NIOHTTP1
import Persistence
import TestSupport
import Testing

/// The Kubernetes executor end to end: real Postgres and RabbitMQ, real `c2d` processes, and the Kubernetes API
/// emulator in this process standing in for the cluster.
@Suite("Kubernetes executor", .serialized)
struct KubernetesExecutorTests {
    /// An emulator, a kubeconfig for it, and a client to look at what c2d created.
    struct Cluster {
        let emulator: KubernetesEmulator
        let client: KubernetesClient
        let namespace: String
        let kubeconfig: URL

        static func with(
            configure: (inout KubernetesEmulatorConfiguration) -> Void = { _ in },
            _ body: (Cluster) async throws -> Void
        ) async throws {
            var configuration = KubernetesEmulatorConfiguration()
            configure(&configuration)
            var logger = Logger(label: "emulator")
            logger.logLevel = .warning
            let emulator = KubernetesEmulator(configuration: configuration, logger: logger)
            let port = try await emulator.start()
            let namespace = "c2d-\(UInt32.random(in: 0...UInt32.max))"
            let kubeconfig = FileManager.default.temporaryDirectory.appendingPathComponent("kubeconfig-\(namespace)")
            try KubernetesEmulator.kubeconfig(server: "http://127.0.0.1:\(port)", namespace: namespace)
                .write(to: kubeconfig, atomically: true, encoding: .utf8)
            var client = try KubernetesConfiguration.kubeconfig(path: kubeconfig.path)
            client.namespace = namespace
            let cluster = Cluster(
                emulator: emulator, client: try KubernetesClient(configuration: client, logger: logger),
                namespace: namespace, kubeconfig: kubeconfig)
            do {
                try await body(cluster)
            } catch {
                await cluster.close()
                throw error
            }
            await cluster.close()
        }

        func close() async {
            try? await client.shutdown()
            await emulator.shutdown()
            try? FileManager.default.removeItem(at: kubeconfig)
        }

        var environment: [String: String] {
            [
                "C2D_EXECUTOR": "kubernetes", "KUBECONFIG": kubeconfig.path, "C2D_KUBERNETES_NAMESPACE": namespace,
                "C2D_WORKER_SLOTS": "16", "C2D_IMAGE_PULL_TIMEOUT_SECONDS": "2",
                "C2D_RESULTS_URL": "http://127.0.0.1:1",
            ]
        }

        /// Names of the objects of `kind` that belong to the job.
        func objects<R: KubernetesResource>(_ kind: R.Type, job: String) async throws -> [String] {
            try await client.listAll(
                kind, namespace: namespace, options: ListOptions(labelSelector: "\(ClusterNaming.jobIDLabel)=\(job)")
            ).items.compactMap(\.metadata.name)
        }
    }

    /// A job whose algorithm runs `entrypoint` in `image`.
    static func request(
        _ deployment: Deployment, entrypoint: String, image: String = "python", maxtime: Int? = nil
    ) -> [String: Any] {
        var stage: [String: Any] = [
            "index": 0, "input": [] as [Any],
            "algorithm": ["rawcode": "print(1)", "container": ["entrypoint": entrypoint, "image": image]],
        ]
        if let maxtime { stage["compute"] = ["maxtime": maxtime] }
        return ["environment": deployment.environmentID, "workflow": ["stages": [stage]]]
    }

    static func waitForStatus(_ deployment: Deployment, _ id: String, _ status: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if try await deployment.get("/v1/jobs/\(id)").json["status"] as? Int == status { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("job \(id) never reached status \(status):\n\(deployment.logs)")
    }

    static func withKubernetesDeployment(
        configure: (inout KubernetesEmulatorConfiguration) -> Void = { _ in }, maxJobDuration: Int = 60,
        environment: [String: String] = [:], _ body: (Deployment, Cluster) async throws -> Void
    ) async throws {
        try await Cluster.with(configure: configure) { cluster in
            try await Deployment.with(
                maxJobDuration: maxJobDuration, extraEnvironment: cluster.environment.merging(environment) { $1 }
            ) {
                deployment in
                try await deployment.startDev()
                try await body(deployment, cluster)
            }
        }
    }

    @Test("success, non-zero exit, OOM, deadline and image pull failure end with the right status and reason")
    func outcomes() async throws {
        try await Self.withKubernetesDeployment(maxJobDuration: 30) { deployment, cluster in
            let ok = try await deployment.submit(
                Self.request(deployment, entrypoint: "sleep 0.2; echo hello from the algorithm; exit 0"))
            let failing = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 0.1; exit 3"))
            let oom = try await deployment.submit(
                Self.request(deployment, entrypoint: "head -c 4096M /dev/zero | tail"))
            let slow = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 30", maxtime: 1))
            let unpullable = try await deployment.submit(
                Self.request(deployment, entrypoint: "python3 $ALGO", image: "registry.invalid/nothing"))

            let succeeded = try await deployment.waitForJob(ok)
            #expect(succeeded["status"] as? Int == 70)
            #expect(succeeded["outcome"] as? String == "succeeded", "\(succeeded)")
            #expect(succeeded["exitCode"] as? Int == 0)
            #expect(try await deployment.download(ok, name: "algorithm.log").contains("hello from the algorithm"))
            let kinds = try await deployment.results(ok).compactMap { $0["type"] as? String }
            #expect(kinds == ["algorithmLog", "configrationLog", "publishLog"], "Ocean's order: \(kinds)")

            let failed = try await deployment.waitForJob(failing)
            #expect(failed["outcome"] as? String == "failed")
            #expect(failed["exitCode"] as? Int == 3)
            #expect((failed["failureReason"] as? String ?? "").contains("code 3"), "\(failed)")

            let oomed = try await deployment.waitForJob(oom)
            #expect(oomed["outcome"] as? String == "failed")
            #expect(oomed["oomKilled"] as? Bool == true, "\(oomed)")
            #expect((oomed["failureReason"] as? String ?? "").contains("memory"))

            let timedOut = try await deployment.waitForJob(slow)
            #expect(timedOut["outcome"] as? String == "timed_out", "\(timedOut)")
            #expect(timedOut["stopreq"] as? Int == 2)

            let pull = try await deployment.waitForJob(unpullable)
            #expect(pull["status"] as? Int == 11, "\(pull)")
            #expect((pull["failureReason"] as? String ?? "").contains("registry.invalid/nothing"))

            // Every attempt's objects are gone once it ended: the Secret owned them all.
            for id in [ok, failing, oom, slow, unpullable] {
                let deadline = ContinuousClock.now + .seconds(10)
                var left: [String] = []
                repeat {
                    left =
                        try await cluster.objects(Secret.self, job: id) + cluster.objects(Kubernetes.Job.self, job: id)
                    if left.isEmpty { break }
                    try await Task.sleep(for: .milliseconds(100))
                } while ContinuousClock.now < deadline
                #expect(left.isEmpty, "objects left for \(id): \(left)")
            }
            // Monitoring is by watch: a handful of lists, never a GET per job per interval.
            let stats = await cluster.emulator.statistics()
            #expect(stats.requests(verb: "get", resource: "jobs") == 0, "\(stats.requests)")
        }
    }

    @Test("a stop in each of the three steps deletes the objects and records the job as stopped")
    func stopInEachStep() async throws {
        // Configure and publish take 3 s each here, the algorithm 3 s; a 3 s lease is renewed (and a stop request
        // seen) every second.
        try await Self.withKubernetesDeployment(
            configure: { $0.defaultPodDuration = .seconds(3) }, environment: ["C2D_LEASE_SECONDS": "3"]
        ) {
            deployment, cluster in
            for status in [20, 40, 60] {
                let id = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 3"))
                try await Self.waitForStatus(deployment, id, status)
                if status == 20 {
                    // Stop only once the configure Job exists, so it is a running step that is stopped.
                    let deadline = ContinuousClock.now + .seconds(10)
                    while try await cluster.objects(Kubernetes.Job.self, job: id).isEmpty,
                        ContinuousClock.now < deadline
                    {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                let stop = try await deployment.post("/v1/jobs/\(id)/stop", json: [:] as [String: Any])
                #expect(stop.status == 202)
                let job = try await deployment.waitForJob(id)
                #expect(job["outcome"] as? String == "stopped", "stopped at \(status): \(job)")
                #expect(job["stopreq"] as? Int == 1)
                let deadline = ContinuousClock.now + .seconds(10)
                var left = ["?"]
                while ContinuousClock.now < deadline {
                    left = try await cluster.objects(Kubernetes.Job.self, job: id) + cluster.objects(Pod.self, job: id)
                    if left.isEmpty { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(left.isEmpty, "objects left after a stop at \(status): \(left)")
            }
        }
    }

    @Test("a watch that expires mid-run (410) is relisted without missing the job's end")
    func watchGone() async throws {
        try await Self.withKubernetesDeployment { deployment, cluster in
            let id = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 2; echo done"))
            try await Self.waitForStatus(deployment, id, 40)
            let listsBefore = await cluster.emulator.statistics().requests(verb: "list", resource: "jobs")
            await cluster.emulator.expireWatches()
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)")
            let listsAfter = await cluster.emulator.statistics().requests(verb: "list", resource: "jobs")
            #expect(listsAfter > listsBefore, "the monitor relisted after 410 Gone")
        }
    }

    @Test("a 429 storm slows the worker down but every job converges")
    func throttled() async throws {
        try await Self.withKubernetesDeployment { deployment, cluster in
            var faults = KubernetesEmulatorFaults()
            faults.throttle = .init(fraction: 1, durationSeconds: 3)
            faults.retryAfterSeconds = 1
            await cluster.emulator.setFaults(faults)
            var ids: [String] = []
            for _ in 0..<5 {
                ids.append(try await deployment.submit(Self.request(deployment, entrypoint: "sleep 0.1")))
            }
            for id in ids {
                let job = try await deployment.waitForJob(id)
                #expect(job["outcome"] as? String == "succeeded", "\(job)")
            }
            let stats = await cluster.emulator.statistics()
            #expect(stats.requests.values.reduce(0, +) > 0)
        }
    }

    @Test("a worker killed mid-job: another worker adopts the running attempt, no duplicate objects")
    func adoption() async throws {
        try await Cluster.with { cluster in
            var environment = cluster.environment
            environment["C2D_LEASE_SECONDS"] = "3"
            environment["C2D_LEASE_GRACE_SECONDS"] = "1"
            try await Deployment.with(extraEnvironment: environment) { deployment in
                let migrate = try deployment.start("migrate", ["migrate"])
                #expect(await migrate.waitForExit(timeout: .seconds(60)))
                try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
                try await deployment.waitUntilHealthy()
                try deployment.start("scheduler", ["scheduler"])
                let first = try deployment.start("worker-1", ["worker"])
                // Only the first worker runs at first, so it is the one that claims.
                try await Task.sleep(for: .seconds(1))
                let id = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 6; echo survived"))
                try await Self.waitForStatus(deployment, id, 40)
                let second = try deployment.start("worker-2", ["worker"])
                await first.kill9()

                // Wait for the adoption, then look at the cluster while the attempt still runs.
                let jobID = try #require(JobID(id))
                var reasons: [String] = []
                let deadline = ContinuousClock.now + .seconds(30)
                while ContinuousClock.now < deadline, !reasons.contains(where: { $0.hasPrefix("adopted by") }) {
                    try await Task.sleep(for: .milliseconds(100))
                    reasons = try await deployment.postgres.query(
                        "select coalesce(reason, '') as reason from job_events where job_id = $1 order by id",
                        [.uuid(jobID.uuid)]
                    ).map { try $0.string("reason") }
                }
                #expect(reasons.contains { $0.hasPrefix("adopted by") }, "\(reasons)\n\(deployment.logs)")
                let steps = try await cluster.objects(Kubernetes.Job.self, job: id)
                #expect(
                    Set(steps).isSubset(
                        of: ClusterNaming.Step.allCases.map {
                            ClusterNaming.stepName(jobID: jobID, attempt: 1, step: $0)
                        }), "only attempt 1's step Jobs exist, each once: \(steps)")

                let job = try await deployment.waitForJob(id, timeout: .seconds(60))
                #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
                #expect(job["attempt"] as? Int == 1, "the attempt was adopted, not started again")
                #expect(try await deployment.download(id, name: "algorithm.log").contains("survived"))
                _ = second
            }
        }
    }
}
