import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Kubernetes
import KubernetesEmulator
import Logging
import NIOCore
import NIOHTTP1
import Persistence
import TestSupport
import Testing
import Worker

/// The Kubernetes executor end to end: real Postgres and RabbitMQ, real `c2d` processes, and the Kubernetes API
/// emulator in this process standing in for the cluster. The emulator runs c2d's own steps (`c2d pod configure`,
/// `await-inputs`, `signal-end`, `relay-log`, `publish`) as real processes of the test's `c2d` binary, so the
/// workflow download, the coordination through the volume, the relayed algorithm log and the uploads to the gateway
/// are the real thing; only the algorithm is simulated (its `echo … > FILE` lines land in the volume).
@Suite("Kubernetes executor", .serialized)
struct KubernetesExecutorTests {
    /// An emulator, a kubeconfig for it, and a client to look at what c2d created.
    struct Cluster {
        let emulator: KubernetesEmulator
        let client: KubernetesClient
        let namespace: String
        let kubeconfig: URL
        let steps: URL

        static func with(
            realSteps: Bool = true, configure: (inout KubernetesEmulatorConfiguration) -> Void = { _ in },
            _ body: (Cluster) async throws -> Void
        ) async throws {
            var configuration = KubernetesEmulatorConfiguration()
            let steps = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-steps-\(UUID())")
            if realSteps {
                configuration.stepRunner = .init(executable: C2DProcess.binary.path, workDirectory: steps.path)
            }
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
                namespace: namespace, kubeconfig: kubeconfig, steps: steps)
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
            try? FileManager.default.removeItem(at: steps)
        }

        func environment(gateway port: Int) -> [String: String] {
            [
                "C2D_EXECUTOR": "kubernetes", "KUBECONFIG": kubeconfig.path, "C2D_KUBERNETES_NAMESPACE": namespace,
                "C2D_WORKER_SLOTS": "16", "C2D_IMAGE_PULL_TIMEOUT_SECONDS": "2",
                "C2D_RESULTS_URL": "http://127.0.0.1:\(port)",
            ]
        }

        /// Names of the objects of `kind` that belong to the job.
        func objects<R: KubernetesResource>(_ kind: R.Type, job: String) async throws -> [String] {
            try await client.listAll(
                kind, namespace: namespace, options: ListOptions(labelSelector: "\(ClusterNaming.jobIDLabel)=\(job)")
            ).items.compactMap(\.metadata.name)
        }

        /// Waits until the job has no Job or Pod left.
        func waitUntilGone(_ id: String, within timeout: Duration = .seconds(15)) async throws -> [String] {
            let deadline = ContinuousClock.now + timeout
            var left: [String] = []
            repeat {
                left = try await objects(Kubernetes.Job.self, job: id) + objects(Pod.self, job: id)
                if left.isEmpty { break }
                try await Task.sleep(for: .milliseconds(100))
            } while ContinuousClock.now < deadline
            return left
        }
    }

    /// A job whose algorithm runs `entrypoint` in `image`.
    /// Migrates, then starts a gateway and a scheduler as processes of their own (workers are the test's).
    static func startGatewayAndScheduler(_ deployment: Deployment) async throws {
        let migrate = try deployment.start("migrate", ["migrate"])
        #expect(await migrate.waitForExit(timeout: .seconds(60)))
        try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
        try await deployment.waitUntilHealthy()
        try deployment.start("scheduler", ["scheduler"])
    }

    static func request(
        _ deployment: Deployment, entrypoint: String, image: String = "python", maxtime: Int? = nil,
        inputs: [[String: Any]] = []
    ) -> [String: Any] {
        var stage: [String: Any] = [
            "index": 0, "input": inputs,
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

    static func statuses(_ deployment: Deployment, _ id: String) async throws -> [Int] {
        let jobID = try #require(JobID(id))
        return try await deployment.postgres.query(
            "select status from job_events where job_id = $1 order by id", [.uuid(jobID.uuid)]
        ).map { try $0.int("status") }
    }

    static func withKubernetesDeployment(
        realSteps: Bool = true, configure: (inout KubernetesEmulatorConfiguration) -> Void = { _ in },
        maxJobDuration: Int = 60, environment: [String: String] = [:], environmentFields: String = "",
        dev: Bool = true, _ body: (Deployment, Cluster) async throws -> Void
    ) async throws {
        let port = try TestEnvironment.freePort()
        try await Cluster.with(realSteps: realSteps, configure: configure) { cluster in
            try await Deployment.with(
                maxJobDuration: maxJobDuration,
                extraEnvironment: cluster.environment(gateway: port).merging(environment) { $1 },
                environmentFields: environmentFields, port: port
            ) { deployment in
                if dev { try await deployment.startDev() }
                try await body(deployment, cluster)
            }
        }
    }

    @Test("success, non-zero exit, OOM, time-out and image pull failure: statuses, results, three writes a job")
    func outcomes() async throws {
        try await Self.withKubernetesDeployment(maxJobDuration: 30) { deployment, cluster in
            let writesBefore = await Self.writes(cluster)
            let ok = try await deployment.submit(
                Self.request(
                    deployment,
                    entrypoint: "sleep 0.2; echo hello from the algorithm; echo 42 > /data/outputs/answer.txt; exit 0"))
            let okJob = try await deployment.waitForJob(ok)
            let writes = await Self.writes(cluster) - writesBefore
            let failing = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 0.1; exit 3"))
            let oom = try await deployment.submit(
                Self.request(deployment, entrypoint: "head -c 4096M /dev/zero | tail"))
            let slow = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 30", maxtime: 1))
            let unpullable = try await deployment.submit(
                Self.request(deployment, entrypoint: "python3 $ALGO", image: "registry.invalid/nothing"))

            #expect(okJob["status"] as? Int == 70)
            #expect(okJob["outcome"] as? String == "succeeded", "\(okJob)\n\(deployment.logs)")
            #expect(okJob["exitCode"] as? Int == 0)
            #expect(try await Self.statuses(deployment, ok) == [1, 20, 30, 40, 60, 70])
            #expect(try await deployment.download(ok, name: "answer.txt") == "42\n")
            #expect(try await deployment.download(ok, name: "algorithm.log").contains("hello from the algorithm"))
            #expect(try await deployment.download(ok, name: "publish.log").contains("published"))
            let kinds = try await deployment.results(ok).compactMap { $0["type"] as? String }
            #expect(kinds == ["output", "algorithmLog", "configrationLog", "publishLog"], "Ocean's order: \(kinds)")
            // The happy path: the attempt's Job and its algorithm pod created, the Job deleted once recorded.
            #expect(writes == 3, "API writes for one job: \(writes)")
            // The worker made sure of the namespace's algorithm policies at start: isolation, and egress for pods
            // with network allowed.
            let policies = try await cluster.client.listAll(NetworkPolicy.self, namespace: cluster.namespace).items
            #expect(
                Set(policies.compactMap(\.metadata.name))
                    == [JobManifests.algorithmIsolationName, JobManifests.algorithmEgressName])
            let egress = policies.first { $0.metadata.name == JobManifests.algorithmEgressName }
            #expect(egress?.spec == JobManifests.algorithmEgress(namespace: cluster.namespace).spec)

            let failed = try await deployment.waitForJob(failing)
            #expect(failed["status"] as? Int == 70)
            #expect(failed["outcome"] as? String == "failed", "\(failed)\n\(deployment.logs)")
            #expect(failed["exitCode"] as? Int == 3)
            #expect((failed["failureReason"] as? String ?? "").contains("code 3"), "\(failed)")

            let oomed = try await deployment.waitForJob(oom)
            #expect(oomed["outcome"] as? String == "failed", "\(oomed)\n\(deployment.logs)")
            #expect(oomed["oomKilled"] as? Bool == true, "\(oomed)")
            #expect((oomed["failureReason"] as? String ?? "").contains("memory"))

            let timedOut = try await deployment.waitForJob(slow)
            #expect(timedOut["outcome"] as? String == "timed_out", "\(timedOut)")
            #expect(timedOut["stopreq"] as? Int == 2)

            let pull = try await deployment.waitForJob(unpullable)
            #expect(pull["status"] as? Int == 11, "\(pull)")
            #expect((pull["failureReason"] as? String ?? "").contains("registry.invalid/nothing"))

            // Every attempt's objects are gone once it ended: its Job owned them all.
            for id in [ok, failing, oom, slow, unpullable] {
                let left = try await cluster.waitUntilGone(id)
                #expect(left.isEmpty, "objects left for \(id): \(left)")
            }
            // Monitoring is by watch: a handful of lists, never a GET per job per interval.
            let stats = await cluster.emulator.statistics()
            #expect(stats.requests(verb: "get", resource: "jobs") == 0, "\(stats.requests)")
            #expect(stats.requests(verb: "get", resource: "pods") == 0, "\(stats.requests)")
        }
    }

    /// Creates, updates, patches and deletes the emulator served so far.
    static func writes(_ cluster: Cluster) async -> Int {
        let requests = await cluster.emulator.statistics().requests
        return requests.filter { ["create", "update", "patch", "delete"].contains($0.key.split(separator: " ").first) }
            .values.reduce(0, +)
    }

    @Test("a native sidecar's postStart hook holds the main container back until it returned, as the kubelet does")
    func postStartHookOrder() async throws {
        try await Cluster.with { cluster in
            // The hook is a real c2d step that waits for a mark we write (await-inputs), so it can be held open.
            let hook = ["c2d", "pod", "await-inputs", "--seconds", "30"]
            let side = Container(
                name: "side", image: "c2d", command: ["sleep", "3600"], env: [EnvVar(name: "VOLUME", value: "/data")],
                volumeMounts: [VolumeMount(name: "data", mountPath: "/data")], restartPolicy: "Always",
                lifecycle: Lifecycle(postStart: LifecycleHandler(exec: ExecAction(command: hook))))
            let pod = Pod(
                metadata: ObjectMeta(name: "hooked", namespace: cluster.namespace),
                spec: PodSpec(
                    containers: [Container(name: "main", image: "busybox", command: ["sh", "-c", "exit 0"])],
                    initContainers: [side], volumes: [Volume(name: "data", emptyDir: EmptyDirVolumeSource())],
                    restartPolicy: "Never"))
            let created = try await cluster.client.create(pod, namespace: cluster.namespace)
            func statuses() async throws -> (side: ContainerStatus?, main: ContainerStatus?) {
                let status = try await cluster.client.get(Pod.self, name: "hooked", namespace: cluster.namespace).status
                return (status?.initContainerStatuses?.first, status?.containerStatuses?.first)
            }
            var deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, try await statuses().side?.state?.running == nil {
                try await Task.sleep(for: .milliseconds(50))
            }
            // The sidecar runs, its hook does not return: not started, and the main container does not start.
            try await Task.sleep(for: .seconds(1))
            var now = try await statuses()
            #expect(now.side?.state?.running != nil)
            #expect(now.side?.started == false)
            #expect(now.main?.state?.waiting?.reason == "PodInitializing", "\(String(describing: now.main))")

            let uid = try #require(created.metadata.uid)
            let marks = cluster.steps.appendingPathComponent("pods/\(uid)/volumes/data/.c2d")
            try FileManager.default.createDirectory(at: marks, withIntermediateDirectories: true)
            try Data().write(to: marks.appendingPathComponent(ClusterNaming.Marker.configured))
            deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, try await statuses().main?.state?.terminated == nil {
                try await Task.sleep(for: .milliseconds(50))
            }
            now = try await statuses()
            #expect(now.main?.state?.terminated?.exitCode == 0, "the hook returned: the main container ran")
        }
    }

    @Test("a stop while configuring, running and publishing deletes the objects and keeps the logs")
    func stopInEachPhase() async throws {
        // Simulated steps take 3 s each here; a 3 s lease is renewed (and a stop request seen) every second.
        try await Self.withKubernetesDeployment(
            realSteps: false, configure: { $0.defaultPodDuration = .seconds(3) },
            environment: ["C2D_LEASE_SECONDS": "3"]
        ) { deployment, cluster in
            for status in [20, 40, 60] {
                let id = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 3"))
                try await Self.waitForStatus(deployment, id, status)
                if status == 20 {
                    // Stop only once the attempt's Job exists, so it is a running step that is stopped.
                    let deadline = ContinuousClock.now + .seconds(10)
                    while try await cluster.objects(Pod.self, job: id).count < 2, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                let stop = try await deployment.post("/v1/jobs/\(id)/stop", json: [:] as [String: Any])
                #expect(stop.status == 202)
                let job = try await deployment.waitForJob(id)
                #expect(job["outcome"] as? String == "stopped", "stopped at \(status): \(job)\n\(deployment.logs)")
                #expect(job["stopreq"] as? Int == 1)
                let left = try await cluster.waitUntilGone(id)
                #expect(left.isEmpty, "objects left after a stop at \(status): \(left)")
            }
        }
    }

    @Test("a follow of the algorithm step receives its output while it runs, through the algorithm-log sidecar")
    func liveAlgorithmLog() async throws {
        try await Self.withKubernetesDeployment { deployment, cluster in
            let id = try await deployment.submit(
                Self.request(deployment, entrypoint: "echo live from the algorithm; sleep 6; echo done; exit 0"))
            try await Self.waitForStatus(deployment, id, 40)
            // The relay is c2d's own command, reads the logs read-only and holds no credentials.
            let pod = try await cluster.client.get(
                Pod.self, name: ClusterNaming.algorithmPodName(jobID: try #require(JobID(id)), attempt: 1),
                namespace: cluster.namespace)
            let relay = try #require(
                pod.spec?.initContainers?.first { $0.name == ClusterNaming.Container.algorithmLog })
            #expect(relay.command == ["c2d", "pod", "relay-log"])
            #expect(relay.restartPolicy == "Always")
            #expect(relay.volumeMounts?.allSatisfy { $0.readOnly == true } == true)
            #expect(relay.env?.contains { $0.valueFrom != nil } == false)
            var request = HTTPClientRequest(url: deployment.baseURL + "/v1/jobs/\(id)/logs/algorithm?follow=true")
            request.headers.add(name: "authorization", value: try await deployment.defaultAuthorization())
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            #expect(response.status == .ok)
            var iterator = response.body.makeAsyncIterator()
            var seen = ""
            while !seen.contains("live from the algorithm"), let chunk = try await iterator.next() {
                seen += String(buffer: chunk)
            }
            #expect(seen.contains("live from the algorithm"), "\(seen)\n\(deployment.logs)")
            // The first line arrived while the algorithm still ran, not from the archive at the job's end.
            let running = try await deployment.get("/v1/jobs/\(id)").json
            #expect(running["status"] as? Int == 40, "\(running)")
            #expect(!(running["dateFinished"] is String), "\(running)")
            // The follow ends with the step, the sidecar having relayed what the algorithm wrote last.
            while let chunk = try await iterator.next() { seen += String(buffer: chunk) }
            #expect(seen.contains("done"), "\(seen)")
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            // What publish uploaded is the same file, so the archive and the live stream agree.
            #expect(try await deployment.download(id, name: "algorithm.log") == "live from the algorithm\ndone\n")
        }
    }

    @Test("ocean-node's computeStreamableLogs streams the running algorithm's output on Kubernetes")
    func oceanNodeStreamableLogs() async throws {
        let ocean = OceanNodeAPITests()
        // A fresh key: nonces are kept per signer, and runs share the nonces table.
        let key = (UUID().uuidString + UUID().uuidString).replacingOccurrences(of: "-", with: "").lowercased()
        let consumer = try OceanNodeAPITests.Consumer(key: "0x" + key)
        let fields = """
            "free": {"maxJobs": 1, "maxJobDuration": 60,
                     "resources": [{"id": "cpu", "max": 1}, {"id": "ram", "max": 1}, {"id": "disk", "max": 1}]}
            """
        try await Self.withKubernetesDeployment(environmentFields: fields) { deployment, _ in
            let algorithm: [String: Any] = [
                "meta": [
                    "rawcode": "print(1)",
                    "container": ["entrypoint": "echo live from the node; sleep 6; echo done", "image": "python"],
                ]
            ]
            let start = try ocean.startBody(deployment, consumer, algorithm: algorithm)
            let credentials = try consumer.credentials("getComputeStreamableLogs", form: "text")
            let accepted = try await ocean.post(deployment, "/api/services/freeCompute", start)
            let jobID = try #require(ocean.jobs(accepted).first?["jobId"] as? String, "\(accepted.text)")
            _ = try await ocean.waitForStatus(deployment, jobID) { $0["status"] as? Int == 40 }
            let (streamed, statusAtFirstLine) = try await ocean.followStreamableLogs(
                deployment, credentials: credentials, jobID: jobID, firstLine: "live from the node")
            #expect(statusAtFirstLine == 40, "the first line came while the job was at \(statusAtFirstLine ?? -1)")
            #expect(streamed == "live from the node\ndone\n", "\(streamed)")
        }
    }

    @Test("publish fails (62): the worker archives the algorithm's output from the algorithm-log sidecar")
    func publishFailureKeepsTheAlgorithmLog() async throws {
        // The gateway refuses files above 3,000 bytes (413): the algorithm's log is the one file over it.
        try await Self.withKubernetesDeployment(environment: ["C2D_MAX_UPLOAD_BYTES": "3000"]) { deployment, _ in
            let id = try await deployment.submit(
                Self.request(deployment, entrypoint: Self.oversizedLogEntrypoint(sleep: 0.2)))
            let job = try await deployment.waitForJob(id)
            #expect(job["status"] as? Int == 62, "\(job)\n\(deployment.logs)")
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("first line") && log.contains(Self.longLine) && log.contains("last line"), "\(log)")
            #expect(try await deployment.download(id, name: "publish.log").contains("failed to store algorithm.log"))
            let kinds = try await deployment.results(id).compactMap { $0["type"] as? String }
            #expect(kinds == ["output", "algorithmLog", "configrationLog", "publishLog"], "Ocean's order: \(kinds)")
        }
    }

    /// 4,000 bytes on one line: above the upload limit of the publish-failure tests.
    static let longLine = String(repeating: "x", count: 4000)

    static func oversizedLogEntrypoint(sleep seconds: Double) -> String {
        "echo first line; sleep \(seconds); echo \(longLine); echo 1 > /data/outputs/one.txt; echo last line; exit 0"
    }

    @Test("a stopped attempt's publish step uploads the logs on SIGTERM, not the outputs")
    func stopKeepsTheLogs() async throws {
        try await Self.withKubernetesDeployment(environment: ["C2D_LEASE_SECONDS": "3"]) { deployment, cluster in
            let id = try await deployment.submit(
                Self.request(deployment, entrypoint: "echo started; echo x > /data/outputs/partial.txt; sleep 30"))
            try await Self.waitForStatus(deployment, id, 40)
            let stop = try await deployment.post("/v1/jobs/\(id)/stop", json: [:] as [String: Any])
            #expect(stop.status == 202)
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "stopped", "\(job)\n\(deployment.logs)")
            let names = try await deployment.results(id).compactMap { $0["filename"] as? String }
            #expect(names.contains("publish.log"), "\(names)")
            #expect(names.contains("configure.log"), "\(names)")
            #expect(!names.contains("partial.txt"), "a stop keeps no outputs: \(names)")
            #expect(try await cluster.waitUntilGone(id).isEmpty)
        }
    }

    @Test("a watch that expires mid-run (410) is relisted without missing the job's end")
    func watchGone() async throws {
        try await Self.withKubernetesDeployment(realSteps: false) { deployment, cluster in
            let id = try await deployment.submit(Self.request(deployment, entrypoint: "sleep 2; echo done"))
            try await Self.waitForStatus(deployment, id, 40)
            let listsBefore = await cluster.emulator.statistics().requests(verb: "list", resource: "pods")
            await cluster.emulator.expireWatches()
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)")
            let listsAfter = await cluster.emulator.statistics().requests(verb: "list", resource: "pods")
            #expect(listsAfter > listsBefore, "the informer relisted after 410 Gone")
        }
    }

    @Test("a 429 storm slows the worker down but every job converges")
    func throttled() async throws {
        try await Self.withKubernetesDeployment(realSteps: false) { deployment, cluster in
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
        }
    }

    @Test("path inputs: refused at submit without the environment's datasets volume, read from it with one")
    func pathInputs() async throws {
        try await Self.withKubernetesDeployment { deployment, _ in
            let refused = try await deployment.post(
                "/v1/jobs",
                json: Self.request(deployment, entrypoint: "true", inputs: [["id": "did:op:x", "path": "x.csv"]]))
            #expect(refused.status == 400)
            #expect(refused.json["code"] as? String == "path_inputs_unavailable", "\(refused.text)")
            #expect(try await deployment.jobCount() == 0)
        }
        try await Self.withKubernetesDeployment(environmentFields: "\"dataVolumeClaim\": \"datasets\"") {
            deployment, cluster in
            // The publisher's datasets claim, with one file on it.
            _ = try await cluster.client.create(
                PersistentVolumeClaim(
                    metadata: ObjectMeta(name: "datasets"),
                    spec: .init(
                        accessModes: ["ReadOnlyMany"],
                        resources: VolumeResourceRequirements(requests: ["storage": "1Gi"])
                    )), namespace: cluster.namespace)
            let volume = cluster.steps.appendingPathComponent("volumes/\(cluster.namespace)_datasets")
            try FileManager.default.createDirectory(at: volume, withIntermediateDirectories: true)
            try Data("a,b\n1,2\n".utf8).write(to: volume.appendingPathComponent("x.csv"))
            let id = try await deployment.submit(
                Self.request(deployment, entrypoint: "echo ok", inputs: [["id": "did:op:x", "path": "x.csv"]]))
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            #expect(try await deployment.download(id, name: "configure.log").contains("x.csv"))
        }
    }

    @Test("a workflow naming no image runs python, so an allow-list without it refuses the workflow at submit")
    func defaultImageAllowList() async throws {
        try await Self.withKubernetesDeployment(environmentFields: #""images": [{"image": "node", "tag": "20"}]"#) {
            deployment, _ in
            var request = Self.request(deployment, entrypoint: "true")
            request["workflow"] = [
                "stages": [
                    [
                        "index": 0, "input": [Any](),
                        "algorithm": ["rawcode": "print(1)", "container": ["entrypoint": "true"]],
                    ]
                ]
            ]
            let refused = try await deployment.post("/v1/jobs", json: request)
            #expect(refused.status == 400)
            #expect(refused.json["code"] as? String == "image_not_allowed", "\(refused.text)")
            #expect((refused.json["message"] as? String ?? "").contains("without container.image runs 'python'"))
            #expect(try await deployment.jobCount() == 0)
        }
    }

    @Test("a worker killed mid-run: another worker adopts the attempt, its publish step's token stays valid")
    func adoption() async throws {
        try await Self.withKubernetesDeployment(
            environment: ["C2D_LEASE_SECONDS": "3", "C2D_LEASE_GRACE_SECONDS": "1"], dev: false
        ) { deployment, cluster in
            try await Self.startGatewayAndScheduler(deployment)
            let first = try deployment.start("worker-1", ["worker"])
            // Only the first worker runs at first, so it is the one that claims.
            try await Task.sleep(for: .seconds(1))
            let id = try await deployment.submit(
                Self.request(
                    deployment, entrypoint: "sleep 20; echo survived; echo the result > /data/outputs/result.txt"))
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
            let jobs = try await cluster.objects(Kubernetes.Job.self, job: id)
            #expect(jobs == [ClusterNaming.attemptName(jobID: jobID, attempt: 1)], "one attempt, once: \(jobs)")
            let pods = try await cluster.objects(Pod.self, job: id)
            #expect(pods.filter { $0 == ClusterNaming.algorithmPodName(jobID: jobID, attempt: 1) }.count == 1)

            // The real publish step uploads with the token the first worker registered, and the result is served.
            let job = try await deployment.waitForJob(id, timeout: .seconds(60))
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            #expect(job["attempt"] as? Int == 1, "the attempt was adopted, not started again")
            #expect(try await deployment.download(id, name: "result.txt") == "the result\n")
            #expect(try await deployment.download(id, name: "algorithm.log").contains("survived"))
            _ = second
        }
    }

    @Test("a worker killed mid-run with no other worker: the scheduler records the attempt's end and its results")
    func schedulerFinalizes() async throws {
        try await Self.withKubernetesDeployment(
            environment: ["C2D_LEASE_SECONDS": "3", "C2D_LEASE_GRACE_SECONDS": "1"], dev: false
        ) { deployment, cluster in
            try await Self.startGatewayAndScheduler(deployment)
            let worker = try deployment.start("worker", ["worker"])
            let id = try await deployment.submit(
                Self.request(deployment, entrypoint: "sleep 4; echo done; echo 7 > /data/outputs/seven.txt; exit 5"))
            try await Self.waitForStatus(deployment, id, 40)
            await worker.kill9()

            let job = try await deployment.waitForJob(id, timeout: .seconds(60))
            // The same reading as the worker's: a non-zero exit is 70, failed, with its code.
            #expect(job["status"] as? Int == 70, "\(job)\n\(deployment.logs)")
            #expect(job["outcome"] as? String == "failed")
            #expect(job["exitCode"] as? Int == 5)
            // The same results: what publish uploaded, served by the same routes.
            #expect(try await deployment.download(id, name: "seven.txt") == "7\n")
            #expect(try await deployment.download(id, name: "algorithm.log").contains("done"))
            #expect(try await cluster.waitUntilGone(id).isEmpty)
        }
    }

    @Test("publish fails (62) with no worker left: the scheduler archives the algorithm's output from its sidecar")
    func schedulerKeepsTheAlgorithmLog() async throws {
        try await Self.withKubernetesDeployment(
            environment: [
                "C2D_LEASE_SECONDS": "3", "C2D_LEASE_GRACE_SECONDS": "1", "C2D_MAX_UPLOAD_BYTES": "3000",
            ], dev: false
        ) { deployment, cluster in
            try await Self.startGatewayAndScheduler(deployment)
            let worker = try deployment.start("worker", ["worker"])
            let id = try await deployment.submit(
                Self.request(deployment, entrypoint: Self.oversizedLogEntrypoint(sleep: 4)))
            try await Self.waitForStatus(deployment, id, 40)
            await worker.kill9()

            let job = try await deployment.waitForJob(id, timeout: .seconds(60))
            #expect(job["status"] as? Int == 62, "\(job)\n\(deployment.logs)")
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("first line") && log.contains(Self.longLine) && log.contains("last line"), "\(log)")
            #expect(try await deployment.download(id, name: "one.txt") == "1\n")
            #expect(try await cluster.waitUntilGone(id).isEmpty)
        }
    }
}
