import AMQP
import App
import ArgumentParser
import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Gateway
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Persistence
import Scheduler

/// `c2d bench e2e`: the whole system as separate processes — one gateway, one scheduler and N workers of this
/// binary — on the real services, running short jobs end to end. For each environment profile and each N it submits
/// one batch and prints jobs/s, the ratio to one worker, and how long a waiting job took to start after a slot
/// freed (waiting → running). Targets: three workers at least 0.9× one when the environment's `maxJobs` caps the
/// fleet (capped), at least 2.5× with c2d's defaults, where the environment has room; waiting → running p99 at most
/// 100 ms. The dense profile (8 slots per worker) shows the machine's ceiling for such jobs.
struct BenchE2ECommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e",
        abstract: "Measure jobs/s end to end with 1..N workers as separate processes, and the slot-to-start delay.")

    @Option(help: "Worker counts to run, comma-separated.")
    var workers: String = "1,2,3,4"
    @Option(help: "Jobs per run.")
    var jobs: Int = 200
    @Option(help: "Seconds each job's algorithm sleeps.")
    var jobSeconds: Double = 0.2
    @Option(
        help: """
            Environment profiles, comma-separated: capped (maxJobs 2, the defaults otherwise), default (c2d's \
            defaults: no environment cap, default worker slots), dense (no cap, 8 slots per worker).
            """)
    var profiles: String = "capped,default,dense"
    @Option(help: "Executor: local (bubblewrap) or kubernetes (against a c2d kube-sim this bench starts).")
    var executor: String = "local"
    @Option(help: "The c2d binary to run (default: this one).")
    var binary: String?
    @Option(help: "Most seconds one run may take.")
    var timeout: Double = 600

    struct Profile {
        var name: String
        var maxJobs: Int
        /// Nil: the executor's default (`C2D_WORKER_SLOTS` unset).
        var slots: Int?
        /// Least speed-up of three workers over one; nil: no target (the profile shows a ceiling).
        var target: Double?
    }

    struct Figures {
        var jobsPerSecond: Double
        var failed: Int
        /// Waiting → running after a slot freed, seconds.
        var waits: [Double]
        /// Status change committed → its event received from `c2d.events`, seconds.
        var eventDelays: [Double] = []
    }

    func run() async throws {
        let settings = try Launcher.settings()
        var logger = Logger(label: "c2d-bench")
        logger.logLevel = .warning
        let (counts, chosen) = try parsedOptions()
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        let store = PostgresJobStore(client: postgres)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-bench-e2e-\(UUID())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        await BenchCleanCommand.warnAboutLeftovers(store)
        let token = try await BenchSubmitCommand.createToken(store)
        var cluster: ChildProcess?
        var extra: [String: String] = ["LOG_LEVEL": "warning"]
        let binary = self.binary ?? CommandLine.arguments[0]
        do {
            if executor == "kubernetes" {
                let (process, variables) = try await Self.startCluster(binary: binary, work: work)
                cluster = process
                extra.merge(variables) { $1 }
            }
            let extra = extra
            try await BenchInterruption.cancellingOnSignals {
                print(
                    "c2d bench e2e: executor \(executor), \(jobs) jobs per run sleeping \(jobSeconds) s, "
                        + "\(ProcessInfo.processInfo.activeProcessorCount) cores shared by every process")
                print(
                    "profile  maxJobs  slots/worker  workers  jobs/s   x one worker  failed  wait→run p50    p99"
                        + "        event p50   p99")
                var verdicts: [String] = []
                var allEventDelays: [Double] = []
                for profile in chosen {
                    var baseline: Double?
                    for count in counts {
                        let figures = try await measure(
                            profile: profile, workers: count, binary: binary, extra: extra, work: work, store: store,
                            token: token.value, postgres: settings.postgres, amqp: settings.amqp)
                        baseline = baseline ?? figures.jobsPerSecond
                        let ratio = figures.jobsPerSecond / max(baseline ?? 1, 0.0001)
                        let waits = figures.waits.sorted()
                        allEventDelays += figures.eventDelays
                        print(Self.row(profile: profile, workers: count, figures: figures, ratio: ratio))
                        if count == 3, let target = profile.target {
                            verdicts.append(
                                "\(profile.name): 3 workers \(Self.format(ratio, 2))× one (target ≥ \(target): "
                                    + "\(ratio >= target ? "met" : "MISSED"))")
                        }
                        if let p99 = waits.isEmpty ? nil : Self.percentile(waits, 0.99) {
                            verdicts.append(
                                "\(profile.name), \(count) worker\(count == 1 ? "" : "s"): waiting → running p99 "
                                    + "\(Self.format(p99 * 1000)) ms (target ≤ 100: \(p99 <= 0.1 ? "met" : "MISSED"))")
                        }
                    }
                }
                if !allEventDelays.isEmpty {
                    let p99 = Self.percentile(allEventDelays.sorted(), 0.99)
                    verdicts.append(
                        "status change → c2d.events over \(allEventDelays.count) events: p99 \(Self.format(p99 * 1000)) ms "
                            + "(target ≤ 50: \(p99 <= 0.05 ? "met" : "MISSED"))")
                }
                for verdict in verdicts { print(verdict) }
            }
        } catch {
            if let cluster { await cluster.stop() }
            _ = try? await store.revokeToken(id: token.id)
            await postgres.shutdown()
            throw error
        }
        if let cluster { await cluster.stop() }
        _ = try? await store.revokeToken(id: token.id)
        try? FileManager.default.removeItem(at: work)
        await postgres.shutdown()
    }

    /// The worker counts and profiles asked for, checked.
    private func parsedOptions() throws -> (counts: [Int], profiles: [Profile]) {
        let counts = workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 && $0 <= 32 }) else {
            throw ValidationError("--workers must list counts from 1 to 32, e.g. 1,2,3,4")
        }
        guard executor == "local" || executor == "kubernetes" else {
            throw ValidationError("--executor must be 'local' or 'kubernetes'")
        }
        let known = [
            "capped": Profile(name: "capped", maxJobs: 2, slots: nil, target: 0.9),
            "default": Profile(name: "default", maxJobs: 0, slots: nil, target: 2.5),
            "dense": Profile(name: "dense", maxJobs: 0, slots: 8, target: nil),
        ]
        let chosen = try profiles.split(separator: ",").map { name in
            guard let profile = known[String(name)] else {
                throw ValidationError("unknown profile '\(name)'; use capped, default or dense")
            }
            return profile
        }
        return (counts, chosen)
    }

    /// A `c2d kube-sim` for the run, and the variables that point c2d's processes at it.
    private static func startCluster(binary: String, work: URL) async throws -> (ChildProcess, [String: String]) {
        let kubeconfig = work.appendingPathComponent("kube-sim.kubeconfig")
        let cluster = try ChildProcess(
            name: "kube-sim", executable: binary,
            arguments: ["kube-sim", "--port", "0", "--kubeconfig", kubeconfig.path, "--namespace", "bench"],
            environment: [:], log: work.appendingPathComponent("kube-sim.log"))
        do {
            try await waitFor("kube-sim's kubeconfig", timeout: .seconds(30)) {
                FileManager.default.fileExists(atPath: kubeconfig.path)
            }
        } catch {
            await cluster.stop()
            throw error
        }
        return (
            cluster,
            ["C2D_EXECUTOR": "kubernetes", "KUBECONFIG": kubeconfig.path, "C2D_KUBERNETES_NAMESPACE": "bench"]
        )
    }

    /// One line of the table.
    private static func row(profile: Profile, workers: Int, figures: Figures, ratio: Double) -> String {
        func milliseconds(_ values: [Double], _ quantile: Double) -> String {
            values.isEmpty ? "-" : "\(format(percentile(values, quantile) * 1000)) ms"
        }
        let waits = figures.waits.sorted()
        let events = figures.eventDelays.sorted()
        return [
            pad(profile.name, 8), pad(profile.maxJobs == 0 ? "none" : "\(profile.maxJobs)", 7),
            pad(profile.slots.map(String.init) ?? "default", 12), pad("\(workers)", 7),
            pad(format(figures.jobsPerSecond, 2), 7), pad(format(ratio, 2), 12), pad("\(figures.failed)", 6),
            pad(milliseconds(waits, 0.5), 13), pad(milliseconds(waits, 0.99), 10), pad(milliseconds(events, 0.5), 10),
            milliseconds(events, 0.99),
        ].joined(separator: "  ")
    }

    /// One run: a fresh environment, its processes, one batch of jobs, the figures, and clean-up.
    func measure(
        profile: Profile, workers count: Int, binary: String, extra: [String: String], work: URL,
        store: PostgresJobStore, token: String, postgres: PostgresConfiguration, amqp: AMQPConfiguration
    ) async throws -> Figures {
        let environment = ComputeEnvironment(
            id: "bench-e2e-\(UInt32.random(in: 0...UInt32.max))", maxJobDuration: 600, maxJobs: profile.maxJobs)
        let directory = work.appendingPathComponent(environment.id)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let environments = directory.appendingPathComponent("environments.json")
        try JSONEncoder().encode([environment]).write(to: environments)
        let port = try LoopbackPort.free()
        var variables = extra
        variables["C2D_ENVIRONMENTS"] = environments.path
        variables["C2D_WORK_DIR"] = directory.appendingPathComponent("work").path
        variables["C2D_RESULTS_DIR"] = directory.appendingPathComponent("results").path
        if let slots = profile.slots { variables["C2D_WORKER_SLOTS"] = String(slots) }
        var processes: [ChildProcess] = []
        func start(_ name: String, _ arguments: [String]) throws {
            processes.append(
                try ChildProcess(
                    name: name, executable: binary, arguments: arguments, environment: variables,
                    log: directory.appendingPathComponent("\(name).log")))
        }
        // Before the gateway and scheduler make the environment, so that `bench clean` never sees it unheld.
        let lock = try await BenchEnvironmentLock.take(environment.id, postgres: postgres)
        do {
            try start("gateway", ["gateway", "--port", String(port)])
            try start("scheduler", ["scheduler"])
            for index in 1...count { try start("worker-\(index)", ["worker"]) }
            let url = "http://127.0.0.1:\(port)"
            try await BenchSubmitCommand.waitUntilHealthy(url)
            // Every worker registered before the clock starts, so each run measures the same fleet.
            try await Self.waitFor("\(count) workers to register", timeout: .seconds(60)) {
                (try? await store.registeredWorkerCount(environment: environment.id)) == count
            } orFail: {
                processes.map { "--- \($0.name)\n\($0.logTail())" }.joined(separator: "\n")
            }
            // A tail of the run's events, as an operator's would be: how long after a change commits it arrives.
            let delays = try await Self.followEvents(environment: environment.id, amqp: amqp) {
                try await submitBatch(url: url, token: token, environment: environment.id)
                let deadline = ContinuousClock.now + .seconds(timeout)
                while true {
                    if try await store.counts(environment: environment.id).unfinished == 0 { break }
                    guard ContinuousClock.now < deadline else {
                        throw ValidationError("the run did not finish within \(timeout) s")
                    }
                    if let dead = processes.first(where: { !$0.isRunning }) {
                        throw ValidationError("\(dead.name) exited:\n\(dead.logTail())")
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                // The last events are still on their way.
                try await Task.sleep(for: .milliseconds(500))
            }
            let slots = count * (profile.slots ?? Settings.defaultWorkerSlots(kubernetes: executor == "kubernetes"))
            var figures = try await Self.figures(
                store: store, environment: environment.id,
                capacity: profile.maxJobs > 0 ? min(profile.maxJobs, slots) : slots)
            figures.eventDelays = delays
            for process in processes { await process.stop() }
            try await Self.cleanUp(environment.id, store: store)
            await lock.release()
            return figures
        } catch {
            let processes = processes
            await BenchInterruption.cleaningUp {
                for process in processes { await process.stop() }
                try? await Self.cleanUp(environment.id, store: store)
                await lock.release()
            }
            throw error
        }
    }

    func submitBatch(url: String, token: String, environment: String) async throws {
        let stage: [String: Any]
        if executor == "kubernetes" {
            // The emulator runs no containers; it simulates a pod from its command (`sleep N`).
            stage = [
                "input": [],
                "algorithm": [
                    "rawcode": "pass",
                    "container": ["entrypoint": "sleep \(jobSeconds)", "image": "python", "tag": "3.11"],
                ],
            ]
        } else {
            stage = [
                "input": [],
                "algorithm": [
                    "rawcode": "import time\ntime.sleep(\(jobSeconds))\n",
                    "container": ["entrypoint": "python3 $ALGO"],
                ],
            ]
        }
        let body = try JSONSerialization.data(
            withJSONObject: [
                "environment": environment,
                "jobs": Array(repeating: ["workflow": ["stages": [stage]]], count: jobs),
            ])
        var request = HTTPClientRequest(url: url + "/v1/batches")
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer " + token)
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let answer = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .created else {
            throw ValidationError("batch submit answered \(response.status): \(String(buffer: answer))")
        }
    }

    /// Jobs/s from the first creation to the last finish, failures, and for every job that started while the fleet
    /// was full, how long after a slot freed it started: replaying claims and ends in time order with `capacity`
    /// slots, a claim takes the slot that has been free longest, and waited since that slot freed (or since the job
    /// was created, if later).
    static func figures(store: PostgresJobStore, environment: String, capacity: Int) async throws -> Figures {
        var created: [Date] = []
        var finished: [Date] = []
        var failed = 0
        enum Event { case claim(created: Date), end }
        var events: [(Date, Event)] = []
        for job in try await store.timelines(environment: environment) {
            created.append(job.created)
            if let end = job.finished {
                finished.append(end)
                events.append((end, .end))
            }
            if job.outcome != "succeeded" { failed += 1 }
            if let claimed = job.claimed { events.append((claimed, .claim(created: job.created))) }
        }
        guard let first = created.min(), let last = finished.max(), last > first else {
            return Figures(jobsPerSecond: 0, failed: failed, waits: [])
        }
        events.sort { a, b in
            if a.0 != b.0 { return a.0 < b.0 }
            if case .end = a.1 { return true }
            return false
        }
        // Free slots as the times they freed; slots never used count as free since the start.
        var free: [Date] = []
        var neverUsed = capacity
        var waits: [Double] = []
        for (time, event) in events {
            switch event {
            case .end:
                free.append(time)
            case .claim(let createdAt):
                if neverUsed > 0 {
                    neverUsed -= 1
                } else if !free.isEmpty {
                    let freedAt = free.removeFirst()
                    waits.append(max(0, time.timeIntervalSince(max(freedAt, createdAt))))
                }
            }
        }
        return Figures(
            jobsPerSecond: Double(created.count) / last.timeIntervalSince(first), failed: failed, waits: waits)
    }

    /// Runs `body` while a queue bound to the environment's events on `c2d.events` is consumed; returns, per event,
    /// the time from its commit (the event's own timestamp) to its arrival.
    static func followEvents(
        environment: String, amqp: AMQPConfiguration, _ body: () async throws -> Void
    ) async throws -> [Double] {
        let queue = "c2d.bench.events.\(environment)"
        let topology = AMQPTopology(
            queues: [AMQPQueue(name: queue, durable: false, arguments: ["x-expires": .int(600_000)])],
            bindings: [AMQPBinding(queue: queue, exchange: EventNames.exchange, routingKey: "job.\(environment).#")])
        var logger = Logger(label: "c2d-bench")
        logger.logLevel = .critical
        return try await AMQPClient.withConnectedClient(configuration: amqp, topology: topology, logger: logger) {
            client in
            let consumer = client.consume(queue: queue, prefetch: 500)
            let collecting = Task {
                var delays: [Double] = []
                for try await delivery in consumer {
                    let received = Date()
                    if let event = try? JSONDecoder().decode(JobEvent.self, from: Data(delivery.message.body)) {
                        delays.append(max(0, received.timeIntervalSince(event.time)))
                    }
                    try? await delivery.ack()
                }
                return delays
            }
            do {
                try await body()
            } catch {
                consumer.cancel()
                _ = try? await collecting.value
                try? await client.deleteQueue(queue)
                throw error
            }
            consumer.cancel()
            let delays = try await collecting.value
            try? await client.deleteQueue(queue)
            return delays
        }
    }

    static func cleanUp(_ environment: String, store: PostgresJobStore) async throws {
        try await store.removeEnvironment(environment)
    }

    static func waitFor(
        _ what: String, timeout: Duration, _ condition: () async -> Bool, orFail details: () -> String = { "" }
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while await !condition() {
            guard ContinuousClock.now < deadline else {
                throw ValidationError("timed out waiting for \(what)\n\(details())")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
    }

    static func format(_ value: Double, _ decimals: Int = 0) -> String {
        String(format: "%.\(decimals)f", value)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}
