import App
import ArgumentParser
import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Gateway
import Kubernetes
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Persistence

/// `c2d bench chaos`: jobs through two gateways, two schedulers and three workers (separate processes of this
/// binary) while a driver SIGKILLs workers, the leading scheduler and a gateway, restarts RabbitMQ and Postgres once
/// each, and — with `--executor kubernetes` — injects 500s, a 429 storm and expired watches into the kube-sim it
/// runs. Then it checks every accepted job: terminal exactly once, succeeded with its own result (each job writes
/// `result.txt` with its index; on Kubernetes kube-sim runs c2d's real configure and publish steps, so the result
/// is uploaded through a gateway as in a cluster), nothing left behind (workspaces on disk; on Kubernetes, c2d's
/// Jobs and Pods in kube-sim), and prints accepted / lost / duplicated / stuck / wrong / orphans and the time to
/// drain. Target: 0 of each. RabbitMQ and Postgres are restarted with `C2D_SERVICES_SCRIPT` (`scripts/services
/// env` exports it).
struct BenchChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Kill and restart parts of c2d while jobs run; count lost, duplicated and stuck jobs.")

    @Option(help: "Jobs to submit.")
    var jobs: Int = 1000
    @Option(help: "Submissions per second.")
    var rate: Double = 25
    @Option(help: "Seconds each job's algorithm sleeps.")
    var jobSeconds: Double = 0.3
    @Option(help: "Executor: local (bubblewrap) or kubernetes (against a c2d kube-sim this bench starts).")
    var executor: String = "local"
    @Option(help: "Seed for the fault schedule.")
    var seed: UInt64 = 1
    @Option(help: "Most seconds to wait for every job to end after the last submission.")
    var drainTimeout: Double = 900
    @Option(help: "Most seconds to wait, after the drain, for workspaces and Kubernetes objects to be cleaned up.")
    var cleanupTimeout: Double = 120
    @Option(help: "The c2d binary to run (default: this one).")
    var binary: String?
    @Option(help: "The script that stops and starts RabbitMQ and Postgres (default: $C2D_SERVICES_SCRIPT).")
    var servicesScript: String?

    func run() async throws {
        let settings = try Launcher.settings()
        var logger = Logger(label: "c2d-bench")
        logger.logLevel = .critical
        guard executor == "local" || executor == "kubernetes" else {
            throw ValidationError("--executor must be 'local' or 'kubernetes'")
        }
        guard
            let script = servicesScript ?? ProcessInfo.processInfo.environment["C2D_SERVICES_SCRIPT"],
            FileManager.default.isExecutableFile(atPath: script)
        else {
            throw ValidationError(
                "restarting RabbitMQ and Postgres needs --services-script or C2D_SERVICES_SCRIPT "
                    + "(eval \"$(scripts/services env)\" sets it)")
        }
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        let store = PostgresJobStore(client: postgres)
        let token = try await BenchSubmitCommand.createToken(store)
        let run = try Chaos(
            configuration: self, binary: binary ?? CommandLine.arguments[0], script: script, store: store,
            token: token.value)
        do {
            try await BenchInterruption.cancellingOnSignals { try await run.execute() }
        } catch {
            await run.stopAll()
            // A failed run keeps its jobs for a look at what went wrong; an interrupted one is removed.
            if (error as? BenchError)?.code == .interrupted { try? await store.removeEnvironment(run.environment.id) }
            _ = try? await store.revokeToken(id: token.id)
            await postgres.shutdown()
            throw error
        }
        await run.stopAll()
        _ = try? await store.revokeToken(id: token.id)
        await postgres.shutdown()
    }
}

/// One chaos run: its processes, its fault schedule and its verdict.
final class Chaos: @unchecked Sendable {
    // @unchecked: processes are started and replaced by the run's own tasks, under `lock`.
    let configuration: BenchChaosCommand
    let binary: String
    let script: String
    let store: PostgresJobStore
    let token: String
    let environment: ComputeEnvironment
    let work: URL
    let ports: [Int]
    private let lock = NSLock()
    private var processes: [String: ChildProcess] = [:]
    private var variables: [String: String] = [:]
    private var faults: [String] = []
    /// Processes between their kill and their new start, which the fleet's keeper leaves alone.
    private var restarting: Set<String> = []
    /// When the last job was accepted.
    private var lastAccepted: ContinuousClock.Instant?
    private var random: SplitMix

    init(configuration: BenchChaosCommand, binary: String, script: String, store: PostgresJobStore, token: String)
        throws
    {
        self.configuration = configuration
        self.binary = binary
        self.script = script
        self.store = store
        self.token = token
        environment = ComputeEnvironment(
            id: "chaos-\(UInt32.random(in: 0...UInt32.max))", maxJobDuration: 600, maxJobs: 0)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-bench-chaos-\(environment.id)")
        ports = [try LoopbackPort.free(), try LoopbackPort.free()]
        random = SplitMix(seed: configuration.seed)
    }

    var kubernetes: Bool { configuration.executor == "kubernetes" }

    func execute() async throws {
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let environments = work.appendingPathComponent("environments.json")
        try JSONEncoder().encode([environment]).write(to: environments)
        variables = [
            "C2D_ENVIRONMENTS": environments.path,
            "C2D_WORK_DIR": work.appendingPathComponent("work").path,
            "C2D_RESULTS_DIR": work.appendingPathComponent("results").path,
            // Short leases, so killed workers' jobs are handed over within seconds.
            "C2D_LEASE_SECONDS": "6", "C2D_LEASE_GRACE_SECONDS": "2", "C2D_SCHEDULER_LEASE_SECONDS": "4",
            "C2D_SCHEDULER_RECONCILE_INTERVAL_SECONDS": "1",
            // Workers are killed at random: a job may lose several before it runs to the end.
            "C2D_POISON_ATTEMPTS": "20", "C2D_WORKER_SLOTS": "4", "LOG_LEVEL": "warning",
        ]
        if kubernetes {
            let kubeconfig = work.appendingPathComponent("kube-sim.kubeconfig")
            // c2d's own steps run for real, so that each job's result is uploaded and can be checked; only the
            // algorithm is simulated (its `echo … > FILE` lands in the volume).
            try start(
                "kube-sim",
                [
                    "kube-sim", "--port", "0", "--kubeconfig", kubeconfig.path, "--namespace", "chaos",
                    "--run-c2d-steps", "--steps-directory", work.appendingPathComponent("steps").path,
                ])
            try await BenchE2ECommand.waitFor("kube-sim's kubeconfig", timeout: .seconds(30)) {
                FileManager.default.fileExists(atPath: kubeconfig.path)
            }
            variables["C2D_EXECUTOR"] = "kubernetes"
            variables["KUBECONFIG"] = kubeconfig.path
            variables["C2D_KUBERNETES_NAMESPACE"] = "chaos"
            // Publish steps upload to gateway-2, which is never killed: in a cluster they reach the gateways
            // through a Service that routes around a dead replica.
            variables["C2D_RESULTS_URL"] = "http://127.0.0.1:\(ports[1])"
        }
        for (index, port) in ports.enumerated() { try start("gateway-\(index + 1)", ["gateway", "--port", "\(port)"]) }
        for index in 1...2 { try start("scheduler-\(index)", ["scheduler"]) }
        for index in 1...3 { try start("worker-\(index)", ["worker"]) }
        for port in ports { try await BenchSubmitCommand.waitUntilHealthy("http://127.0.0.1:\(port)") }

        print(
            "c2d bench chaos: \(configuration.jobs) jobs at \(configuration.rate)/s, executor \(configuration.executor), "
                + "2 gateways, 2 schedulers, 3 workers, seed \(configuration.seed)")
        let started = ContinuousClock.now
        let submitting = ContinuousClock.now + .seconds(Double(configuration.jobs) / configuration.rate)
        let accepted = try await withThrowingTaskGroup(of: [Int: JobID].self) { group in
            group.addTask { try await self.submitAll() }
            group.addTask {
                try await self.injectFaults(until: submitting)
                return [:]
            }
            var accepted: [Int: JobID] = [:]
            for try await part in group { accepted.merge(part) { a, _ in a } }
            return accepted
        }
        let submitted = lock.withLock { lastAccepted } ?? ContinuousClock.now
        print(
            "submitted: \(accepted.count) accepted in \(format(submitted - started)) (faults went on until "
                + "\(format(ContinuousClock.now - started))); faults: \(faults.count)")
        for fault in faults { print("  \(fault)") }
        // Drain: every accepted job must end.
        let deadline = ContinuousClock.now + .seconds(configuration.drainTimeout)
        let ids = Array(accepted.values)
        while ContinuousClock.now < deadline {
            if try await store.unfinishedCount(of: ids) == 0 { break }
            try await keepFleetRunning()
            try await Task.sleep(for: .milliseconds(500))
        }
        let drained = ContinuousClock.now
        try await Task.sleep(for: .seconds(2))
        try await report(accepted: accepted, drain: drained - submitted, total: drained - started)
    }

    // MARK: Processes

    func start(_ name: String, _ arguments: [String]) throws {
        let process = try ChildProcess(
            name: name, executable: binary, arguments: arguments, environment: variables,
            log: work.appendingPathComponent("\(name).log"))
        lock.withLock { processes[name] = process }
    }

    func process(_ name: String) -> ChildProcess? { lock.withLock { processes[name] } }

    func restart(_ name: String, after delay: Duration) async throws {
        guard let old = process(name), lock.withLock({ restarting.insert(name).inserted }) else { return }
        defer { _ = lock.withLock { restarting.remove(name) } }
        await old.kill9()
        _ = await old.waitForExit(timeout: .seconds(10))
        try await Task.sleep(for: delay)
        let arguments: [String]
        if name.hasPrefix("gateway") {
            arguments = ["gateway", "--port", "\(ports[Int(name.dropFirst("gateway-".count))! - 1])"]
        } else if name.hasPrefix("scheduler") {
            arguments = ["scheduler"]
        } else {
            arguments = ["worker"]
        }
        try start(name, arguments)
    }

    /// Processes that exited on their own (e.g. while Postgres was down at their start) are started again.
    func keepFleetRunning() async throws {
        let dead = lock.withLock {
            processes.filter { !$0.value.isRunning && $0.key != "kube-sim" && !restarting.contains($0.key) }.map(\.key)
        }
        for name in dead { try await restart(name, after: .zero) }
    }

    func stopAll() async {
        let all = lock.withLock { Array(processes.values) }
        for process in all where process.name != "kube-sim" { await process.stop(timeout: .seconds(10)) }
        for process in all where process.name == "kube-sim" { await process.stop(timeout: .seconds(10)) }
        try? await store.removeWorkers(environment: environment.id)
    }

    // MARK: Submissions

    /// Submits every job, alternating gateways, each with its own idempotency key; a failed attempt (a gateway
    /// killed, Postgres restarting) is retried on the other gateway until accepted.
    func submitAll() async throws -> [Int: JobID] {
        var accepted: [Int: JobID] = [:]
        let interval = Duration.seconds(1 / configuration.rate)
        var next = ContinuousClock.now
        for index in 0..<configuration.jobs {
            try await Task.sleep(until: next)
            next += interval
            var gateway = index % 2
            var tries = 0
            while true {
                tries += 1
                if let id = try? await submit(index, port: ports[gateway]) {
                    accepted[index] = id
                    lock.withLock { lastAccepted = ContinuousClock.now }
                    break
                }
                // As a supervisor would, start again what exited on its own (a gateway restarted while Postgres
                // was down stops at once), rather than sending every other job to a dead port.
                try await keepFleetRunning()
                guard tries < 600 else { throw ValidationError("job \(index) was never accepted") }
                gateway = 1 - gateway
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        return accepted
    }

    func submit(_ index: Int, port: Int) async throws -> JobID? {
        let algorithm: [String: Any]
        if kubernetes {
            // The emulator runs no algorithm containers; it simulates the pod from its command.
            algorithm = [
                "rawcode": "pass",
                "container": [
                    "entrypoint": "sleep \(configuration.jobSeconds); echo chaos-\(index) > /data/outputs/result.txt",
                    "image": "python", "tag": "3.11",
                ],
            ]
        } else {
            algorithm = [
                "rawcode":
                    "import time\ntime.sleep(\(configuration.jobSeconds))\n"
                    + "open('/data/outputs/result.txt', 'w').write('chaos-\(index)')\n",
                "container": ["entrypoint": "python3 $ALGO"],
            ]
        }
        let body = try JSONSerialization.data(
            withJSONObject: [
                "environment": environment.id, "workflow": ["stages": [["input": [], "algorithm": algorithm]]],
            ])
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/jobs")
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer " + token)
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "idempotency-key", value: "\(environment.id)-\(index)")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let answer = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .created || response.status == .ok,
            let object = try? JSONSerialization.jsonObject(with: Data(buffer: answer)) as? [String: Any],
            let id = (object["id"] as? String).flatMap(JobID.init)
        else { return nil }
        return id
    }

    // MARK: Faults

    func note(_ text: String, since start: ContinuousClock.Instant) {
        lock.withLock { faults.append("\(format(ContinuousClock.now - start)): \(text)") }
    }

    /// The fault schedule over the submission window: workers killed every 5 to 10 s (restarted 1 to 3 s later),
    /// the leading scheduler at a quarter, a gateway at two fifths, RabbitMQ restarted at half, Postgres at seven
    /// tenths; with Kubernetes, 20 % of API requests answer 500 for 10 s at three tenths, a 429 storm at three
    /// fifths and every watch expired (410) at four fifths. Each one-off fault runs in a task of its own, so worker
    /// kills go on while a broker restarts; the schedule ends when the window is over and every fault has run.
    func injectFaults(until end: ContinuousClock.Instant) async throws {
        let start = ContinuousClock.now
        let window = end - start
        var once: [(Double, String)] = [(0.25, "leader"), (0.4, "gateway"), (0.5, "rabbitmq"), (0.7, "postgres")]
        if kubernetes { once += [(0.3, "errors"), (0.6, "throttle"), (0.8, "watches")] }
        once.sort { $0.0 < $1.0 }
        try await withThrowingTaskGroup(of: Void.self) { faults in
            var nextWorkerKill = start + .seconds(Double(random.next(5, 10)))
            while ContinuousClock.now < end || !once.isEmpty {
                try await Task.sleep(for: .milliseconds(200))
                let elapsed = (ContinuousClock.now - start) / window
                while let (at, what) = once.first, elapsed >= at {
                    once.removeFirst()
                    faults.addTask { try await self.inject(what, since: start) }
                }
                if ContinuousClock.now >= nextWorkerKill && ContinuousClock.now < end {
                    let name = "worker-\(random.next(1, 3))"
                    let delay = Duration.seconds(Double(random.next(1, 3)))
                    note("SIGKILL \(name), restarted after \(format(delay))", since: start)
                    faults.addTask { try await self.restart(name, after: delay) }
                    nextWorkerKill = ContinuousClock.now + .seconds(Double(random.next(5, 10)))
                }
            }
            try await faults.waitForAll()
        }
    }

    func inject(_ what: String, since start: ContinuousClock.Instant) async throws {
        switch what {
        case "leader":
            let holder = try? await store.metricsSnapshot().leases.first?.holder
            let leader = lock.withLock {
                processes.first { name, process in
                    name.hasPrefix("scheduler") && holder?.contains("-\(process.pid)-") == true
                }?.key
            }
            let name = leader ?? "scheduler-1"
            note("SIGKILL the leading scheduler (\(name)), restarted after 2 s", since: start)
            try await restart(name, after: .seconds(2))
        case "gateway":
            note("SIGKILL gateway-1, restarted after 2 s", since: start)
            try await restart("gateway-1", after: .seconds(2))
        case "rabbitmq", "postgres":
            note("restart \(what)", since: start)
            try await services("stop", what)
            try await Task.sleep(for: .seconds(2))
            try await services("start", what)
            note("\(what) is back", since: start)
        case "errors":
            note("kube-sim: 20 % of requests answer 500 for 10 s", since: start)
            try await emulatorFaults(["serverErrorFraction": 0.2])
            Task {
                try? await Task.sleep(for: .seconds(10))
                try? await self.emulatorFaults([:])
            }
        case "throttle":
            note("kube-sim: 429 storm on half the requests for 10 s", since: start)
            try await emulatorFaults(["throttle": ["fraction": 0.5, "durationSeconds": 10]])
        case "watches":
            note("kube-sim: every watch expired (410 Gone)", since: start)
            try await emulatorFaults(["dropWatches": true, "compact": true])
        default:
            break
        }
    }

    func services(_ verb: String, _ name: String) async throws {
        let process = try ChildProcess(
            name: "services-\(verb)-\(name)", executable: script, arguments: [verb, name], environment: [:],
            log: work.appendingPathComponent("services-\(verb)-\(name).log"))
        guard await process.waitForExit(timeout: .seconds(120)) else {
            throw ValidationError("\(script) \(verb) \(name) did not finish: \(process.logTail())")
        }
    }

    func emulatorFaults(_ body: [String: Any]) async throws {
        let kubeconfig = try String(contentsOf: work.appendingPathComponent("kube-sim.kubeconfig"), encoding: .utf8)
        guard
            let server = kubeconfig.split(separator: "\n").first(where: { $0.contains("server:") })?
                .split(separator: " ").last
        else { return }
        var request = HTTPClientRequest(url: "\(server)/_emulator/faults")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        _ = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    }

    // MARK: Verdict

    /// What the run left wrong; the target is all zeros.
    struct Verdict: Sendable, Hashable {
        var lost = 0
        var duplicated = 0
        var stuck = 0
        /// Jobs that failed, or succeeded without their own result.
        var wrong = 0
        /// Workspaces left on disk, and on Kubernetes c2d's Jobs and Pods left in the cluster.
        var orphans = 0

        var met: Bool { lost == 0 && duplicated == 0 && stuck == 0 && wrong == 0 && orphans == 0 }
    }

    func report(accepted: [Int: JobID], drain: Duration, total: Duration) async throws {
        let audits = try await store.audits(of: Array(accepted.values), outputName: "result.txt")
        let found = Dictionary(uniqueKeysWithValues: audits.map { ($0.id, $0) })
        var verdict = Verdict()
        var failures: [String: Int] = [:]
        var missingResults = 0
        var attempts = 0
        let results = work.appendingPathComponent("results")
        for (index, id) in accepted {
            guard let audit = found[id] else {
                verdict.lost += 1
                continue
            }
            attempts += audit.attempt
            guard audit.finished else {
                verdict.stuck += 1
                continue
            }
            if audit.terminalEvents != 1 || audit.resultAttempts > 1 { verdict.duplicated += 1 }
            guard audit.outcome == "succeeded" else {
                failures[String(audit.failureReason.prefix(60)), default: 0] += 1
                verdict.wrong += 1
                continue
            }
            // The local sandbox writes the text as is; kube-sim's simulated `echo` adds a newline.
            let content = audit.outputLocation.flatMap {
                try? String(contentsOf: results.appendingPathComponent($0), encoding: .utf8)
            }
            if content?.trimmingCharacters(in: .newlines) != "chaos-\(index)" {
                missingResults += 1
                verdict.wrong += 1
            }
        }
        let leftovers = try await leftovers()
        verdict.orphans = leftovers.workspaces + leftovers.kubernetesJobs + leftovers.kubernetesPods
        let failed = failures.values.reduce(0, +)
        print(
            "accepted \(accepted.count), lost \(verdict.lost), duplicated \(verdict.duplicated), "
                + "stuck \(verdict.stuck), wrong \(verdict.wrong), orphans \(verdict.orphans)")
        print(
            "succeeded \(accepted.count - verdict.lost - verdict.stuck - failed), of them with a missing or wrong "
                + "result \(missingResults); failed \(failed); attempts \(attempts) "
                + "(\(attempts - accepted.count) retries)")
        for (reason, count) in failures.sorted(by: { $0.value > $1.value }) { print("  failed \(count): \(reason)") }
        var orphans = "orphans: \(leftovers.workspaces) workspaces left on disk"
        if kubernetes {
            orphans += ", \(leftovers.kubernetesJobs) Jobs and \(leftovers.kubernetesPods) Pods left in kube-sim"
        }
        print(orphans + " (after waiting up to \(format(.seconds(configuration.cleanupTimeout))) for cleanup)")
        print("time to drain after the last submission: \(format(drain)); whole run \(format(total))")
        print(
            "target 0 lost, 0 duplicated, 0 stuck, 0 wrong, 0 orphans: \(verdict.met ? "met" : "MISSED")")
        try? await store.removeEnvironment(environment.id)
    }

    struct Leftovers: Sendable, Hashable {
        var workspaces = 0
        var kubernetesJobs = 0
        var kubernetesPods = 0

        var isEmpty: Bool { workspaces == 0 && kubernetesJobs == 0 && kubernetesPods == 0 }
    }

    /// What is left behind once every job ended, after the time cleanup takes: workspaces of killed workers go at
    /// the workers' next sweep (a minute); on Kubernetes the attempts' Jobs go once their ends are recorded (by
    /// their worker, or by the scheduler for a killed one's) and their pods with them.
    func leftovers() async throws -> Leftovers {
        guard kubernetes else { return try await leftovers(cluster: nil) }
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration.kubeconfig(
                path: work.appendingPathComponent("kube-sim.kubeconfig").path),
            logger: Logger(label: "c2d-bench-chaos"))
        do {
            let left = try await leftovers(cluster: client)
            try? await client.shutdown()
            return left
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    func leftovers(cluster: KubernetesClient?) async throws -> Leftovers {
        let deadline = ContinuousClock.now + .seconds(configuration.cleanupTimeout)
        let options = ListOptions(labelSelector: ClusterNaming.selector)
        var left = Leftovers()
        repeat {
            left.workspaces =
                (try? FileManager.default.contentsOfDirectory(atPath: work.appendingPathComponent("work").path))?
                .count ?? 0
            if let cluster {
                left.kubernetesJobs =
                    try await cluster.listAll(Kubernetes.Job.self, namespace: "chaos", options: options).items.count
                left.kubernetesPods =
                    try await cluster.listAll(Pod.self, namespace: "chaos", options: options).items.count
            }
            if left.isEmpty { break }
            try await Task.sleep(for: .seconds(1))
        } while ContinuousClock.now < deadline
        return left
    }

    func format(_ duration: Duration) -> String {
        String(format: "%.1f s", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}

/// A small seeded generator, so a fault schedule can be run again.
struct SplitMix {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next(_ low: Int, _ high: Int) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return low + Int(z % UInt64(high - low + 1))
    }
}
