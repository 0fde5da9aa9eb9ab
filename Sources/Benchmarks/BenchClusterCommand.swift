import AMQP
import App
import ArgumentParser
import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Kubernetes
import Logging
import NIOCore
import NIOHTTP1
import Persistence

#if canImport(Glibc)
    import Glibc
#endif

/// `c2d bench cluster`: the Kubernetes executor end to end with every part its own process — `c2d kube-sim`,
/// `c2d gateway`, `c2d scheduler`, `c2d worker` — on real Postgres and RabbitMQ, submitting over HTTP. Prints:
///
/// - submit → algorithm pod created latency (p50, p99) at fixed open-loop rates;
/// - a sustained run: jobs/s completed, API requests per job (writes and all) as kube-sim counted them, the rate
///   the client limit allows (QPS / writes per job), each process's CPU per job and RSS at start and end, and
///   the ceiling two cores give at that CPU per job;
/// - the worker's RSS per monitored (running) job at the given counts.
struct BenchClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Measure the Kubernetes executor against kube-sim, every part its own process.",
        discussion: """
            Needs Postgres and RabbitMQ (the usual variables) and runs `c2d migrate` first. Targets: <= 3 API \
            writes per job, submit -> algorithm pod p99 <= 250 ms at 1,000 jobs/s, 1,000 jobs/s sustained, \
            <= 4 KiB worker RSS per monitored job.
            """)

    @Option(help: "Open-loop submit rates (jobs/s) for the latency phases.")
    var latencyRates: [Int] = [100, 1_000]
    @Option(help: "Seconds per latency phase.")
    var latencySeconds: Int = 5
    @Option(help: "Submit rate (jobs/s) of the sustained phase (0 skips it).")
    var rate: Int = 1_000
    @Option(help: "Seconds of the sustained phase.")
    var seconds: Int = 60
    @Option(help: "Running jobs at which the worker's RSS per monitored job is measured (cumulative).")
    var monitored: [Int] = [10_000, 50_000]
    @Option(help: "C2D_KUBERNETES_QPS and _BURST of the worker and the scheduler.")
    var qps: Int = 100_000
    @Option(help: "The c2d binary to run the parts with (default: this one).")
    var binary: String?

    func run() async throws {
        let settings = try Launcher.settings()
        var logger = Logger(label: "c2d-bench")
        logger.logLevel = .warning
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        let store = PostgresJobStore(client: postgres)
        let rig = try Rig(
            binary: binary ?? CommandLine.arguments[0], qps: qps,
            slots: max(monitored.max() ?? 0, rate * 10, 2_000) + 1_000)
        do {
            try await BenchInterruption.cancellingOnSignals {
                try await rig.start(store: store, postgres: settings.postgres)
                try await measure(rig: rig, store: store)
            }
        } catch {
            Self.emit("benchmark failed: \(error)\nlogs in \(rig.directory.path)")
            await rig.stop(store: store)
            await postgres.shutdown()
            throw ExitCode.failure
        }
        await rig.stop(store: store)
        await postgres.shutdown()
        try? FileManager.default.removeItem(at: rig.directory)
    }

    func measure(rig: Rig, store: PostgresJobStore) async throws {
        let kubernetes = try KubernetesClient(
            configuration: {
                var configuration = try KubernetesConfiguration.kubeconfig(path: rig.kubeconfig.path)
                configuration.queriesPerSecond = 0
                return configuration
            }(), logger: Logger(label: "bench"))
        do {
            try await measure(rig: rig, store: store, kubernetes: kubernetes)
        } catch {
            try? await kubernetes.shutdown()
            throw error
        }
        try await kubernetes.shutdown()
    }

    func measure(rig: Rig, store: PostgresJobStore, kubernetes: KubernetesClient) async throws {
        let load = String(
            (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3)
                .joined(separator: " ") ?? "?")
        Self.emit(
            "cluster benchmark: kube-sim, gateway, scheduler and worker as processes; \(ProcessInfo.processInfo.activeProcessorCount) cores, load average \(load) at start"
        )
        for rate in latencyRates {
            try await latency(rate: rate, rig: rig, kubernetes: kubernetes, store: store)
        }
        if rate > 0 { try await sustained(rig: rig, store: store) }
        if !monitored.isEmpty { try await memory(rig: rig, store: store) }
    }

    // MARK: Latency

    /// Open-loop submits at `rate` for `latencySeconds`; each job's algorithm pod creation is seen on a watch.
    func latency(rate: Int, rig: Rig, kubernetes: KubernetesClient, store: PostgresJobStore) async throws {
        let created = TimeLog()
        let watcher = Task {
            let stream = try await kubernetes.watch(
                Pod.self, as: PodLabels.self,
                options: WatchOptions(labelSelector: "\(ClusterNaming.roleLabel)=algorithm", timeoutSeconds: 3600))
            for try await event in stream {
                if case .added(let pod) = event, let id = pod.metadata.labels?[ClusterNaming.jobIDLabel] {
                    created.record(id)
                }
            }
        }
        defer { watcher.cancel() }
        try await Task.sleep(for: .milliseconds(300))
        let submitted = try await rig.submitOpenLoop(rate: rate, seconds: latencySeconds, entrypoint: "exit 0")
        let deadline = ContinuousClock.now + .seconds(120)
        while created.count(of: submitted.ids) < submitted.ids.count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        var latencies: [Duration] = []
        for (id, sent) in submitted.sent {
            if let at = created.time(id) { latencies.append(at - sent) }
        }
        latencies.sort()
        func percentile(_ p: Double) -> String {
            latencies.isEmpty ? "n/a" : Rig.ms(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))])
        }
        Self.emit(
            "submit → algorithm pod created at \(rate) jobs/s offered (\(submitted.ids.count) accepted in "
                + "\(Rig.seconds(submitted.elapsed)) s, \(latencies.count) pods seen): p50 \(percentile(0.5)) ms, "
                + "p99 \(percentile(0.99)) ms (target p99 ≤ 250 ms at 1,000 jobs/s)")
        try await rig.drain(store: store)
    }

    // MARK: Sustained throughput

    func sustained(rig: Rig, store: PostgresJobStore) async throws {
        let statsBefore = try await rig.emulatorRequests()
        let cpuBefore = rig.cpu()
        let rssBefore = rig.rss()
        let finishedBefore = try await rig.finished(store: store)
        let start = ContinuousClock.now
        let submitted = try await rig.submitOpenLoop(rate: rate, seconds: seconds, entrypoint: "exit 0")
        // Completions inside the window, then the backlog drained (jobs/s counts the window only).
        let windowEnd = ContinuousClock.now
        let finishedInWindow = try await rig.finished(store: store) - finishedBefore
        let window = windowEnd - start
        let deadline = ContinuousClock.now + .seconds(max(120, seconds * 2))
        var finished = finishedInWindow
        while finished < submitted.ids.count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .seconds(1))
            finished = try await rig.finished(store: store) - finishedBefore
        }
        let drained = ContinuousClock.now - start
        let statsAfter = try await rig.emulatorRequests()
        let cpuAfter = rig.cpu()
        let rssAfter = rig.rss()
        let jobs = max(finished, 1)
        var writes = 0
        var all = 0
        var byVerb: [String: Int] = [:]
        for (key, count) in statsAfter {
            let delta = count - (statsBefore[key] ?? 0)
            guard delta > 0 else { continue }
            all += delta
            byVerb[key] = delta
            if ["create", "update", "patch", "delete"].contains(String(key.split(separator: " ").first ?? "")) {
                writes += delta
            }
        }
        let writesPerJob = Double(writes) / Double(jobs)
        Self.emit(
            "sustained: \(submitted.ids.count) jobs offered at \(rate)/s over \(Rig.seconds(window)) s; "
                + "\(finishedInWindow) finished in the window (\(String(format: "%.1f", Double(finishedInWindow) / Rig.seconds(window))) jobs/s), "
                + "all \(finished) in \(Rig.seconds(drained)) s (\(String(format: "%.1f", Double(finished) / Rig.seconds(drained))) jobs/s overall)"
        )
        Self.emit(
            "API requests per job: \(String(format: "%.2f", writesPerJob)) writes, \(String(format: "%.2f", Double(all) / Double(jobs))) in all "
                + "(\(byVerb.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))) (target ≤ 3 writes)"
                + (finished < submitted.ids.count
                    ? "; over by the creates of the \(submitted.ids.count - finished) jobs still unfinished at the drain's end"
                    : "")
        )
        Self.emit(
            "client rate limit: C2D_KUBERNETES_QPS \(qps) / \(String(format: "%.2f", writesPerJob)) writes per job = "
                + "\(String(format: "%.0f", Double(qps) / max(writesPerJob, 0.01))) jobs/s; at the default 50: "
                + "\(String(format: "%.1f", 50 / max(writesPerJob, 0.01))) jobs/s per worker")
        var total = 0.0
        for name in Rig.parts {
            let cpu = (cpuAfter[name] ?? 0) - (cpuBefore[name] ?? 0)
            let perJob = cpu / Double(jobs) * 1000
            total += perJob
            Self.emit(
                "  \(name): CPU \(String(format: "%.2f", perJob)) ms per job; RSS \(rssBefore[name] ?? 0) → "
                    + "\(rssAfter[name] ?? 0) KiB")
        }
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        Self.emit(
            "  c2d processes together: \(String(format: "%.2f", total)) ms CPU per job → ceiling on \(Int(cores)) "
                + "cores ≈ \(String(format: "%.0f", cores * 1000 / max(total, 0.001))) jobs/s (Postgres and RabbitMQ not counted)"
        )
    }

    // MARK: Memory per monitored job

    func memory(rig: Rig, store: PostgresJobStore) async throws {
        try await rig.drain(store: store)
        try await Task.sleep(for: .seconds(3))
        let baseline = rig.rss()[Rig.worker] ?? 0
        var running = 0
        // The baseline still holds what the sustained phase's burst left in malloc's free lists, and the worker
        // returns that to the system every 30 s; so the cost per job is also shown between two measured points.
        var previous: (rss: Int, running: Int)?
        for target in monitored.sorted() {
            try await rig.submitBatches(count: target - running, entrypoint: "sleep 36000")
            let deadline = ContinuousClock.now + .seconds(1800)
            var now = 0
            while ContinuousClock.now < deadline {
                now = try await rig.running(store: store)
                if now >= target { break }
                try await Task.sleep(for: .seconds(2))
            }
            running = now
            try await Task.sleep(for: .seconds(5))
            let rss = rig.rss()[Rig.worker] ?? 0
            let perJob = Double(rss - baseline) / Double(max(running, 1))
            let marginal = previous.map { previous in
                ", " + String(format: "%.2f", Double(rss - previous.rss) / Double(max(running - previous.running, 1)))
                    + " KiB per job since \(previous.running) running"
            }
            Self.emit(
                "worker monitoring \(running) running jobs: RSS \(rss / 1024) MiB (baseline \(baseline / 1024) MiB), "
                    + String(format: "%.2f", perJob) + " KiB per job\(marginal ?? "") (target ≤ 4 KiB)")
            previous = (rss, running)
        }
    }

    /// Writes a line at once (unbuffered), so figures appear as they are measured, also through a pipe.
    static func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    struct PodLabels: Decodable, Sendable {
        struct Meta: Decodable, Sendable { var labels: [String: String]? }
        var metadata: Meta
    }
}

/// When each job's algorithm pod was first seen.
final class TimeLog: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private var times: [String: ContinuousClock.Instant] = [:]

    func record(_ id: String) {
        lock.lock()
        if times[id] == nil { times[id] = .now }
        lock.unlock()
    }

    func time(_ id: String) -> ContinuousClock.Instant? {
        lock.lock()
        defer { lock.unlock() }
        return times[id]
    }

    func count(of ids: [String]) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return ids.reduce(0) { $0 + (times[$1] == nil ? 0 : 1) }
    }
}

/// The processes under test and how to talk to them.
final class Rig: @unchecked Sendable {
    // Set up once by `start` before any concurrent use.
    static let kubeSim = "kube-sim"
    static let gatewayName = "gateway"
    static let scheduler = "scheduler"
    static let worker = "worker"
    static let parts = [kubeSim, gatewayName, scheduler, worker]

    let binary: String
    let qps: Int
    let slots: Int
    let directory: URL
    let environment: ComputeEnvironment
    var processes: [String: Process] = [:]
    var kubeconfig: URL { directory.appendingPathComponent("kubeconfig") }
    var port = 0
    var gatewayURL: String { "http://127.0.0.1:\(port)" }
    var emulatorURL = ""
    var token: (id: UUID, value: String)?
    var lock: BenchEnvironmentLock?

    init(binary: String, qps: Int, slots: Int) throws {
        self.binary = binary
        self.qps = qps
        self.slots = min(slots, 100_000)
        environment = ComputeEnvironment(
            id: "bench-\(UInt32.random(in: 0...UInt32.max))", maxJobDuration: 86_400, maxJobs: 1_000_000)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-bench-\(environment.id)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func start(store: PostgresJobStore, postgres: PostgresConfiguration) async throws {
        try JSONEncoder().encode([environment]).write(to: directory.appendingPathComponent("environments.json"))
        let migrate = try launch("migrate", ["migrate"])
        migrate.waitUntilExit()
        guard migrate.terminationStatus == 0 else { throw ValidationError("c2d migrate failed") }
        lock = try await BenchEnvironmentLock.take(environment.id, postgres: postgres)
        try await store.upsertEnvironments([environment])
        token = try await BenchSubmitCommand.createToken(store)
        try launch(Self.kubeSim, ["kube-sim", "--port", "0", "--kubeconfig", kubeconfig.path, "--namespace", "bench"])
        let deadline = ContinuousClock.now + .seconds(30)
        while !FileManager.default.fileExists(atPath: kubeconfig.path), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let text = (try? String(contentsOf: kubeconfig, encoding: .utf8)) ?? ""
        emulatorURL =
            text.split(separator: "\n").first { $0.contains("server:") }
            .map { String($0.split(separator: " ").last ?? "") } ?? ""
        port = try LoopbackPort.free()
        try launch(Self.gatewayName, ["gateway", "--port", String(port)])
        try await BenchSubmitCommand.waitUntilHealthy(gatewayURL)
        try launch(Self.scheduler, ["scheduler"])
        try launch(Self.worker, ["worker"])
        try await Task.sleep(for: .seconds(3))
        for (name, process) in processes where !process.isRunning {
            throw ValidationError("\(name) exited; see \(directory.path)/\(name).log")
        }
    }

    @discardableResult
    func launch(_ name: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        // migrate and kube-sim run before the kubeconfig exists; they need no executor.
        environment["C2D_EXECUTOR"] = name == "migrate" || name == Self.kubeSim ? "local" : "kubernetes"
        environment["KUBECONFIG"] = kubeconfig.path
        environment["C2D_KUBERNETES_NAMESPACE"] = "bench"
        environment["C2D_KUBERNETES_QPS"] = String(qps)
        environment["C2D_KUBERNETES_BURST"] = String(qps)
        environment["C2D_ENVIRONMENTS"] = directory.appendingPathComponent("environments.json").path
        environment["C2D_RESULTS_DIR"] = directory.appendingPathComponent("results").path
        environment["C2D_RESULTS_URL"] = gatewayURL
        environment["C2D_WORKER_SLOTS"] = String(slots)
        environment["C2D_LEASE_SECONDS"] = "60"
        environment["C2D_PG_MAX_CONNECTIONS"] = "16"
        environment["C2D_MAX_BATCH_JOBS"] = "10000"
        environment["LOG_LEVEL"] = "warning"
        process.environment = environment
        let log = directory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        if name != "migrate" { processes[name] = process }
        return process
    }

    func stop(store: PostgresJobStore) async {
        for name in [Self.worker, Self.scheduler, Self.gatewayName, Self.kubeSim] {
            guard let process = processes[name], process.isRunning else { continue }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? await store.removeEnvironment(environment.id)
        await lock?.release()
        if let token { _ = try? await store.revokeToken(id: token.id) }
    }

    // MARK: Submitting

    func body(entrypoint: String) throws -> [UInt8] {
        try BenchSubmitCommand.body([
            "environment": environment.id,
            "workflow": [
                "stages": [
                    [
                        "index": 0, "input": [] as [Any],
                        "algorithm": [
                            "rawcode": "print(1)", "container": ["entrypoint": entrypoint, "image": "python"],
                        ],
                    ]
                ]
            ],
        ])
    }

    struct Submitted {
        var ids: [String]
        var sent: [(String, ContinuousClock.Instant)]
        var elapsed: Duration
    }

    /// Submits at `rate` jobs/s for `seconds` (open loop: the schedule does not wait for answers).
    func submitOpenLoop(rate: Int, seconds: Int, entrypoint: String) async throws -> Submitted {
        let body = try body(entrypoint: entrypoint)
        let token = self.token?.value ?? ""
        let total = rate * seconds
        let interval = Duration.nanoseconds(1_000_000_000 / Int64(max(rate, 1)))
        let start = ContinuousClock.now
        let url = gatewayURL
        let results = try await withThrowingTaskGroup(of: (String, ContinuousClock.Instant)?.self) { group in
            for index in 0..<total {
                try await Task.sleep(until: start + interval * index, clock: .continuous)
                group.addTask {
                    let sent = ContinuousClock.now
                    return try await Self.submit(url: url, token: token, body: body).map { ($0, sent) }
                }
            }
            var results: [(String, ContinuousClock.Instant)] = []
            for try await result in group { if let result { results.append(result) } }
            return results
        }
        return Submitted(ids: results.map(\.0), sent: results, elapsed: ContinuousClock.now - start)
    }

    static func submit(url: String, token: String, body: [UInt8]) async throws -> String? {
        var request = HTTPClientRequest(url: url + "/v1/jobs")
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer " + token)
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .created,
            let object = try JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]
        else { return nil }
        return object["id"] as? String
    }

    /// Long-running jobs in batches of 1,000.
    func submitBatches(count: Int, entrypoint: String) async throws {
        guard count > 0 else { return }
        let algorithm: [String: Any] = [
            "rawcode": "print(1)", "container": ["entrypoint": entrypoint, "image": "python"],
        ]
        var submitted = 0
        while submitted < count {
            let size = min(1_000, count - submitted)
            let body = try BenchSubmitCommand.body([
                "environment": environment.id,
                "jobs": Array(
                    repeating: ["workflow": ["stages": [["index": 0, "input": [] as [Any], "algorithm": algorithm]]]],
                    count: size),
            ])
            var request = HTTPClientRequest(url: gatewayURL + "/v1/batches")
            request.method = .POST
            request.headers.add(name: "authorization", value: "Bearer " + (token?.value ?? ""))
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
            _ = try await response.body.collect(upTo: 16 << 20)
            guard response.status == .created else { throw ValidationError("batch answered \(response.status)") }
            submitted += size
        }
    }

    // MARK: Reading

    func finished(store: PostgresJobStore) async throws -> Int {
        try await store.counts(environment: environment.id).finished
    }

    func running(store: PostgresJobStore) async throws -> Int {
        try await store.counts(environment: environment.id).running
    }

    /// Waits until no job of the benchmark is unfinished.
    func drain(store: PostgresJobStore) async throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while ContinuousClock.now < deadline {
            if try await store.counts(environment: environment.id).unfinished == 0 { return }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// kube-sim's request counts by `"<verb> <resource>"`.
    func emulatorRequests() async throws -> [String: Int] {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: emulatorURL + "/_emulator/stats"), timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        let object = try JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]
        return (object?["requests"] as? [String: Int]) ?? [:]
    }

    /// CPU seconds (user + system) each part has used.
    func cpu() -> [String: Double] {
        var result: [String: Double] = [:]
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        for (name, process) in processes {
            guard let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
                let close = text.lastIndex(of: ")")
            else { continue }
            let fields = text[text.index(after: close)...].split(separator: " ")
            // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
            guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
            result[name] = (user + system) / ticks
        }
        return result
    }

    /// Resident memory of each part, in KiB.
    func rss() -> [String: Int] {
        var result: [String: Int] = [:]
        for (name, process) in processes {
            guard
                let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
            else { continue }
            result[name] = Int(line.split(separator: " ").dropFirst().first { !$0.isEmpty }.map(String.init) ?? "")
        }
        return result
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func ms(_ duration: Duration) -> String { String(format: "%.1f", seconds(duration) * 1000) }
}
