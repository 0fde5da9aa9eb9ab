import AMQP
import ArgumentParser
import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Gateway
import Kubernetes
import KubernetesEmulator
import Logging
import NIOCore
import NIOHTTP1
import Persistence
import Scheduler
import ServiceLifecycle
import Storage

#if canImport(Glibc)
    import Glibc
#endif

/// `c2d bench cluster`: the Kubernetes executor against the emulator, on real Postgres and RabbitMQ. Runs the
/// emulator and a gateway in this process and a `c2d worker` as a child process (so its memory is its own), and
/// prints: submit → configure-Job-created latency at fixed submit rates, the worker's RSS per monitored job, and the
/// API requests per second the worker makes while it monitors jobs (which must not grow with their number).
struct BenchClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Measure the Kubernetes executor against the API emulator.")

    @Option(help: "Submit rates (jobs/s) for the latency phases.")
    var rates: [Int] = [100, 1_000]
    @Option(help: "Seconds per latency phase.")
    var seconds: Int = 5
    @Option(help: "Jobs monitored at once for the memory and request-rate phase (0 skips it).")
    var monitored: Int = 10_000
    @Option(help: "The c2d binary to run the worker with (default: this one).")
    var binary: String?

    func run() async throws {
        let settings = try Launcher.settings()
        var logger = Logger(label: "c2d-bench")
        logger.logLevel = .warning
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        let store = PostgresJobStore(client: postgres)
        let environment = ComputeEnvironment(
            id: "bench-\(UInt32.random(in: 0...UInt32.max))", maxJobDuration: 7_200, maxJobs: 1_000_000)
        try await store.upsertEnvironments([environment])
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-bench-\(environment.id)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)

        var emulatorConfiguration = KubernetesEmulatorConfiguration()
        emulatorConfiguration.compaction.maxEvents = 500_000
        let emulator = KubernetesEmulator(configuration: emulatorConfiguration, logger: logger)
        let emulatorPort = try await emulator.start()
        let namespace = "bench"
        let kubeconfig = work.appendingPathComponent("kubeconfig")
        try KubernetesEmulator.kubeconfig(server: "http://127.0.0.1:\(emulatorPort)", namespace: namespace)
            .write(to: kubeconfig, atomically: true, encoding: .utf8)
        let environments = work.appendingPathComponent("environments.json")
        try JSONEncoder().encode([environment]).write(to: environments)

        let port = try LoopbackPort.free()
        var gatewayConfiguration = GatewayConfiguration(
            port: port, environments: [environment], limits: settings.limits)
        gatewayConfiguration.maxBatchJobs = 10_000
        gatewayConfiguration.executor = .kubernetes
        let amqp = AMQPClient(
            configuration: settings.amqp, topology: .jobs(environments: [environment.id], deliveryLimit: 5),
            logger: logger)
        let gateway = Gateway.buildApplication(
            configuration: gatewayConfiguration, store: store,
            resultStore: FileResultStore(root: work.appendingPathComponent("results")), logger: logger)
        // The scheduler's dispatcher admits the submitted jobs and publishes them to the worker.
        let dispatcher = Dispatcher(configuration: .init(), store: store, amqp: amqp, logger: logger)
        let group = ServiceGroup(services: [amqp, dispatcher, gateway], logger: logger)
        let token = try await BenchSubmitCommand.createToken(store)
        let worker = try Self.startWorker(
            binary: binary ?? CommandLine.arguments[0], kubeconfig: kubeconfig, namespace: namespace,
            environments: environments, slots: max(monitored, 2_000) + 100,
            log: work.appendingPathComponent("worker.log"))
        var kubernetes = try KubernetesConfiguration.kubeconfig(path: kubeconfig.path)
        kubernetes.queriesPerSecond = 100_000
        kubernetes.burst = 100_000
        let client = try KubernetesClient(configuration: kubernetes, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer {
                kill(worker.processIdentifier, SIGKILL)
                worker.waitUntilExit()
            }
            do {
                try await amqp.waitUntilConnected(timeout: .seconds(10))
                let url = "http://127.0.0.1:\(port)"
                try await BenchSubmitCommand.waitUntilHealthy(url)
                try await Task.sleep(for: .seconds(3))  // the worker connects and starts its watches
                guard worker.isRunning else {
                    throw ValidationError("the worker exited; see \(work.appendingPathComponent("worker.log").path)")
                }
                Self.emit("cluster benchmark: emulator on :\(emulatorPort), worker pid \(worker.processIdentifier)")
                let baseline = Self.rss(of: worker.processIdentifier)
                for rate in rates {
                    try await latency(
                        rate: rate, url: url, token: token.value, environment: environment.id, client: client)
                }
                if monitored > 0 {
                    try await monitoring(
                        url: url, token: token.value, environment: environment.id, worker: worker.processIdentifier,
                        baseline: baseline, emulator: emulator, store: store)
                }
            } catch {
                Self.emit("benchmark failed: \(error); worker log: \(work.appendingPathComponent("worker.log").path)")
            }
            try? await BenchSubmitCommand.cleanUp(environment.id, token: token.id, store: store)
            try? await amqp.deleteQueue(JobQueueNames.queue(environment: environment.id))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        try? await client.shutdown()
        await emulator.shutdown()
        await postgres.shutdown()
        try? FileManager.default.removeItem(at: work)
    }

    /// Submits at a fixed rate (open loop) and measures until each job's configure Job appears on a watch. The jobs'
    /// algorithms run for an hour, so they stay monitored and later phases add to them.
    func latency(rate: Int, url: String, token: String, environment: String, client: KubernetesClient) async throws {
        let created = CreationLog()
        let watcher = Task {
            let stream = try await client.watch(
                Kubernetes.Job.self, as: JobName.self,
                options: WatchOptions(labelSelector: "\(ClusterNaming.stepLabel)=configure"))
            for try await event in stream {
                if case .added(let job) = event, let id = job.metadata.labels?[ClusterNaming.jobIDLabel] {
                    await created.record(id)
                }
            }
        }
        defer { watcher.cancel() }
        try await Task.sleep(for: .milliseconds(200))
        let body = try BenchSubmitCommand.body([
            "environment": environment,
            "workflow": [
                "stages": [
                    [
                        "index": 0, "input": [] as [Any],
                        "algorithm": [
                            "rawcode": "print(1)", "container": ["entrypoint": "sleep 3600", "image": "python"],
                        ],
                    ]
                ]
            ],
        ])
        let total = rate * seconds
        let interval = Duration.nanoseconds(1_000_000_000 / rate)
        let start = ContinuousClock.now
        let submitted = SubmitLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<total {
                try await Task.sleep(until: start + interval * index, clock: .continuous)
                group.addTask {
                    let sent = ContinuousClock.now
                    if let id = try await Self.submit(url: url, token: token, body: body) {
                        await submitted.record(id, sent)
                    }
                }
            }
            try await group.waitForAll()
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while await created.count < (await submitted.count), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        let latencies = await submitted.latencies(created)
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> String {
            sorted.isEmpty ? "n/a" : BenchSubmitCommand.ms(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))])
        }
        Self.emit(
            "submit → Job created at \(rate) jobs/s (\(total) jobs, \(sorted.count) created): p50 \(percentile(0.5)) ms, "
                + "p99 \(percentile(0.99)) ms  (target p99 ≤ \(rate <= 100 ? 50 : 250) ms)")
    }

    /// Keeps `monitored` jobs running (their algorithm sleeps an hour; the latency phases' jobs count), then reads
    /// the worker's RSS against its RSS before any job, and the API requests it makes per second.
    func monitoring(
        url: String, token: String, environment: String, worker: Int32, baseline: Int, emulator: KubernetesEmulator,
        store: PostgresJobStore
    ) async throws {
        let baselineRate = try await Self.requestRate(emulator)
        var submitted = 0
        let algorithm: [String: Any] = [
            "rawcode": "print(1)", "container": ["entrypoint": "sleep 3600", "image": "python"],
        ]
        let already = try await store.client.query(
            "select count(*) as n from jobs where environment = $1 and finished_at is null", [.text(environment)]
        )[0].int("n")
        submitted = min(already, monitored)
        while submitted < monitored {
            let count = min(500, monitored - submitted)
            let body = try BenchSubmitCommand.body([
                "environment": environment,
                "jobs": Array(
                    repeating: ["workflow": ["stages": [["index": 0, "input": [] as [Any], "algorithm": algorithm]]]],
                    count: count),
            ])
            var request = HTTPClientRequest(url: url + "/v1/batches")
            request.method = .POST
            request.headers.add(name: "authorization", value: "Bearer " + token)
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            _ = try await response.body.collect(upTo: 16 << 20)
            guard response.status == .created else { throw ValidationError("batch answered \(response.status)") }
            submitted += count
        }
        let deadline = ContinuousClock.now + .seconds(600)
        var running = 0
        while ContinuousClock.now < deadline {
            running = try await store.client.query(
                "select count(*) as n from jobs where environment = $1 and status = 40", [.text(environment)]
            )[0].int("n")
            if running >= monitored { break }
            try await Task.sleep(for: .seconds(1))
        }
        try await Task.sleep(for: .seconds(5))
        let loaded = Self.rss(of: worker)
        let rate = try await Self.requestRate(emulator)
        let perJob = Double(loaded - baseline) / Double(max(running, 1))
        Self.emit(
            "worker monitoring \(running) running jobs: RSS \(loaded / 1024) MiB (baseline \(baseline / 1024) MiB), "
                + String(format: "%.1f", perJob) + " KiB per job  (target ≤ 4 KiB)")
        Self.emit(
            "worker API requests/s: " + String(format: "%.1f", baselineRate) + " before loading, "
                + String(format: "%.1f", rate) + " while monitoring \(running) jobs  (target: does not grow)")
    }

    /// Requests per second the emulator served over 10 s.
    static func requestRate(_ emulator: KubernetesEmulator) async throws -> Double {
        let before = await emulator.statistics().requests.values.reduce(0, +)
        try await Task.sleep(for: .seconds(10))
        let after = await emulator.statistics().requests.values.reduce(0, +)
        return Double(after - before) / 10
    }

    /// Resident set size of a process in KiB.
    static func rss(of pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first { !$0.isEmpty }.map(String.init) ?? "") ?? 0
    }

    static func submit(url: String, token: String, body: [UInt8]) async throws -> String? {
        var request = HTTPClientRequest(url: url + "/v1/jobs")
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer " + token)
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .created,
            let object = try JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]
        else { return nil }
        return object["id"] as? String
    }

    static func startWorker(
        binary: String, kubeconfig: URL, namespace: String, environments: URL, slots: Int, log: URL
    ) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["worker"]
        var environment = ProcessInfo.processInfo.environment
        environment["C2D_EXECUTOR"] = "kubernetes"
        environment["KUBECONFIG"] = kubeconfig.path
        environment["C2D_KUBERNETES_NAMESPACE"] = namespace
        environment["C2D_KUBERNETES_QPS"] = "100000"
        environment["C2D_KUBERNETES_BURST"] = "100000"
        environment["C2D_ENVIRONMENTS"] = environments.path
        environment["C2D_WORKER_SLOTS"] = String(min(slots, 100_000))
        environment["C2D_LEASE_SECONDS"] = "60"
        environment["C2D_PG_MAX_CONNECTIONS"] = "16"
        environment["LOG_LEVEL"] = "warning"
        process.environment = environment
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Writes a line at once (unbuffered), so figures appear as they are measured, also through a pipe.
    static func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    struct JobName: Decodable, Sendable {
        struct Meta: Decodable, Sendable { var labels: [String: String]? }
        var metadata: Meta
    }

    actor CreationLog {
        var times: [String: ContinuousClock.Instant] = [:]
        var count: Int { times.count }
        func record(_ id: String) { times[id] = times[id] ?? .now }
        func time(_ id: String) -> ContinuousClock.Instant? { times[id] }
    }

    actor SubmitLog {
        var sent: [String: ContinuousClock.Instant] = [:]
        var count: Int { sent.count }
        func record(_ id: String, _ time: ContinuousClock.Instant) { sent[id] = time }
        func latencies(_ created: CreationLog) async -> [Duration] {
            var result: [Duration] = []
            for (id, time) in sent {
                if let createdAt = await created.time(id) { result.append(createdAt - time) }
            }
            return result
        }
    }
}
