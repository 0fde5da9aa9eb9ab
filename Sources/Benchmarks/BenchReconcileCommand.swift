import App
import ArgumentParser
import Domain
import Foundation
import Kubernetes
import KubernetesEmulator
import Logging
import Persistence
import Scheduler

/// `c2d bench reconcile`: the scheduler's reconcile pass at scale against the in-process Kubernetes
/// emulator.
///
/// It makes its own schema (`bench_reconcile_<random>`, migrated, dropped at the end), so no other job or scheduler
/// lease is touched, inserts N running jobs in one environment, preloads N step Jobs labelled for them, and measures
/// a full pass, an incremental pass after 1,000 rows changed, and the process's memory during the full pass.
struct BenchReconcileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Benchmark the scheduler's reconcile pass: full and incremental, with N active jobs and N Jobs.",
        discussion: """
            Connects like every c2d command (DATABASE_URL, else the PG* variables) and needs CREATE on the database. \
            Targets: full pass over 100,000 active jobs <= 3 s with <= 150 MiB transient RSS; incremental \
            pass over 1,000 changed rows <= 50 ms.
            """
    )

    @Option(help: "Active jobs (and Kubernetes Jobs).")
    var jobs: Int = 100_000

    @Option(help: "Rows changed before the incremental pass.")
    var changes: Int = 1_000

    @Option(help: "Full and incremental passes to measure (the median and the worst are printed).")
    var runs: Int = 3

    @Option(help: "Items per Kubernetes list page.")
    var pageSize: Int = 500

    func validate() throws {
        guard (1...2_000_000).contains(jobs) else { throw ValidationError("--jobs must be in 1...2000000") }
        guard (1...jobs).contains(changes) else { throw ValidationError("--changes must be in 1...jobs") }
        guard (1...50).contains(runs) else { throw ValidationError("--runs must be in 1...50") }
        guard (1...100_000).contains(pageSize) else { throw ValidationError("--page-size must be in 1...100000") }
    }

    func run() async throws {
        var logger = Logger(label: "c2d.bench")
        logger.logLevel = .error
        let schema = ScratchSchema(prefix: "bench_reconcile")
        // libpq reads PGOPTIONS for every connection made from now on: all of them work in the bench schema.
        setenv("PGOPTIONS", "-c search_path=\(schema.name)", 1)
        var configuration = try Settings.load().postgres
        configuration.statementTimeout = .seconds(300)
        configuration.maximumConnections = 4
        let client = PostgresClient(configuration: configuration, logger: logger)
        let bench = ReconcileBench(
            client: client, schema: schema, jobs: jobs, changes: changes, runs: runs, pageSize: pageSize, logger: logger
        )
        do {
            try await BenchInterruption.cancellingOnSignals { try await bench.run() }
        } catch {
            await bench.cleanUp()
            await client.shutdown()
            // An interruption is no misuse of the command: its message, without the usage text.
            if let error = error as? BenchError, error.code == .interrupted { throw error }
            throw ValidationError("bench reconcile: \(error)")
        }
        await bench.cleanUp()
        await client.shutdown()
    }
}

private struct ReconcileBench {
    let client: PostgresClient
    let schema: ScratchSchema
    let jobs: Int
    let changes: Int
    let runs: Int
    let pageSize: Int
    let logger: Logger
    let namespace = "bench"
    let emulator: KubernetesEmulator

    init(
        client: PostgresClient, schema: ScratchSchema, jobs: Int, changes: Int, runs: Int, pageSize: Int, logger: Logger
    ) {
        self.client = client
        self.schema = schema
        self.jobs = jobs
        self.changes = changes
        self.runs = runs
        self.pageSize = pageSize
        self.logger = logger
        self.emulator = KubernetesEmulator(configuration: KubernetesEmulatorConfiguration(), logger: logger)
    }

    func run() async throws {
        let setupStart = ContinuousClock.now
        try await schema.create(using: client)
        _ = try await MigrationRunner(
            client: client, directory: Settings.load().migrationsDirectory, logger: logger
        ).apply()
        let store = PostgresJobStore(client: client)
        let environment = ComputeEnvironment(id: "bench", maxJobDuration: 86_400, maxJobs: 0)
        try await store.upsertEnvironments([environment])
        let ids = try await insertJobs(store: store, environment: environment.id)
        let port = try await emulator.start()
        try await preloadJobs(ids, environment: environment.id)
        print(
            "c2d bench reconcile: \(jobs) active jobs, \(jobs) Kubernetes Jobs (in-process emulator), "
                + "list pages of \(pageSize); set up in \(Self.format((ContinuousClock.now - setupStart).seconds, 1)) s"
        )

        var kubernetesConfiguration = KubernetesConfiguration(server: "http://127.0.0.1:\(port)", namespace: namespace)
        kubernetesConfiguration.queriesPerSecond = 100_000
        kubernetesConfiguration.burst = 100_000
        kubernetesConfiguration.requestTimeout = .seconds(60)
        let kubernetes = try KubernetesClient(configuration: kubernetesConfiguration, logger: logger)
        do {
            try await measure(kubernetes: kubernetes, store: store)
        } catch {
            try? await kubernetes.shutdown()
            throw error
        }
        try await kubernetes.shutdown()
    }

    private func measure(kubernetes: KubernetesClient, store: PostgresJobStore) async throws {
        let cluster = KubernetesReconcileCluster(
            configuration: .init(namespace: namespace, pageSize: pageSize), client: kubernetes,
            resultStore: NoResultStore(), store: store, logger: logger)
        let following = Task { await cluster.run() }
        defer { following.cancel() }
        await cluster.informer.waitUntilSynced()

        let leadership = SchedulerLeadership(
            configuration: .init(leaseDuration: .seconds(60), holderID: "bench"), client: client, logger: logger)
        let leading = Task { try await leadership.run() }
        defer { leadership.stop() }
        let epoch = try await Self.epoch(of: leadership)

        // Cluster listing alone, for reference.
        let listStart = ContinuousClock.now
        let listed = try await cluster.listObjects(full: true)
        let listSeconds = (ContinuousClock.now - listStart).seconds
        print("list of c2d objects alone: \(listed.count) objects in \(Self.format(listSeconds * 1000)) ms")

        var full: [Double] = []
        var incremental: [Double] = []
        var rssPeak: [Int] = []
        var lastFull: ReconcileResult?
        var lastIncremental: ReconcileResult?
        for _ in 0..<runs {
            // A new reconciler starts with a full pass (as a new leader does: it lists the cluster and reads every
            // unfinished job); the next is incremental (the cluster from the watches, the rows changed since).
            let reconciler = Reconciler(
                configuration: .init(fullPassInterval: .seconds(3600)), store: PostgresReconcileStore(client: client),
                leadership: leadership, cluster: cluster, removeFiles: { _ in }, logger: logger)
            let baseline = Memory.resetPeak()
            let sampler = Task { await Memory.sampleWhileRunning() }
            let start = ContinuousClock.now
            lastFull = try await reconciler.runOnce(epoch: epoch)
            full.append((ContinuousClock.now - start).seconds)
            sampler.cancel()
            let sampled = await sampler.value
            rssPeak.append(max(Memory.peak() ?? 0, sampled) - baseline)

            try await store.extendRandomLeases(count: changes, by: .seconds(7_200))
            let incrementalStart = ContinuousClock.now
            lastIncremental = try await reconciler.runOnce(epoch: epoch)
            incremental.append((ContinuousClock.now - incrementalStart).seconds)
        }
        try await localExecutorPasses(store: store, leadership: leadership, epoch: epoch)
        // For reference: the watched listing, and the planner's full walk over every cached job and object.
        let cachedStart = ContinuousClock.now
        let cached = try await cluster.listObjects(full: false)
        let cachedSeconds = (ContinuousClock.now - cachedStart).seconds
        let rows = try await PostgresReconcileStore(client: client).jobs(changedAfter: nil, limit: 0)
        let snapshot = ReconcileSnapshot(
            now: rows.now, jobs: rows.jobs, cluster: .available(cached),
            environments: try await PostgresReconcileStore(client: client).environments())
        let planStart = ContinuousClock.now
        _ = ReconcilePlanner.plan(snapshot)
        let planSeconds = (ContinuousClock.now - planStart).seconds
        // The same walk building what focused passes carry (the full pass does both).
        var focus = ReconcileFocus()
        let buildStart = ContinuousClock.now
        _ = ReconcilePlanner.plan(snapshot, focus: &focus, changes: nil)
        let buildSeconds = (ContinuousClock.now - buildStart).seconds
        guard let lastFull, let lastIncremental, lastFull.fullPass, !lastIncremental.fullPass else {
            throw BenchError(code: .unexpectedPass, message: "the passes were not full then incremental")
        }
        report(
            full: full, incremental: incremental, rssPeak: rssPeak, lastFull: lastFull,
            lastIncremental: lastIncremental,
            cached: cached.count, cachedSeconds: cachedSeconds, planned: rows.jobs.count, planSeconds: planSeconds,
            buildSeconds: buildSeconds)
        leadership.stop()
        _ = await leading.result
    }

    /// The same passes by the local executor's reconciler, which has no cluster: its incremental pass plans the
    /// changed rows and whatever the clock made due.
    private func localExecutorPasses(
        store: PostgresJobStore, leadership: SchedulerLeadership, epoch: Int64
    ) async throws {
        var full: [Double] = []
        var incremental: [Double] = []
        var lastIncremental: ReconcileResult?
        for _ in 0..<runs {
            let reconciler = Reconciler(
                configuration: .init(fullPassInterval: .seconds(3600)), store: PostgresReconcileStore(client: client),
                leadership: leadership, cluster: nil, removeFiles: { _ in }, logger: logger)
            let start = ContinuousClock.now
            let first = try await reconciler.runOnce(epoch: epoch)
            full.append((ContinuousClock.now - start).seconds)
            try await store.extendRandomLeases(count: changes, by: .seconds(7_200))
            let incrementalStart = ContinuousClock.now
            let next = try await reconciler.runOnce(epoch: epoch)
            incremental.append((ContinuousClock.now - incrementalStart).seconds)
            guard first.fullPass, !next.fullPass else {
                throw BenchError(code: .unexpectedPass, message: "the local passes were not full then incremental")
            }
            lastIncremental = next
        }
        var line = "local executor (no cluster): full pass median \(Self.format(Self.median(full) * 1000)) ms;"
        line += " incremental pass after \(changes) changed rows median"
        line += " \(Self.format(Self.median(incremental) * 1000, 1)) ms, worst"
        line += " \(Self.format((incremental.max() ?? 0) * 1000, 1)) ms"
        line += lastIncremental?.focused == true ? " (focused)" : " (walked every job)"
        print(line)
    }

    /// `jobs` rows through the batch insert (COPY), then one UPDATE makes them launched and running.
    private func insertJobs(store: PostgresJobStore, environment: String) async throws -> [JobID] {
        let workflow = Workflow(stages: [
            .init(
                input: [.init(id: "did:op:bench", url: ["https://example.org/data.csv"])],
                algorithm: .init(rawcode: "print(1)\n", container: .init(entrypoint: "python3 $ALGO")))
        ])
        var ids: [JobID] = []
        ids.reserveCapacity(jobs)
        for start in stride(from: 0, to: jobs, by: 10_000) {
            let batch = (start..<min(start + 10_000, jobs)).map { _ in
                Job(id: JobID(), environment: environment, owner: "bench", workflow: workflow)
            }
            try await store.insertBatch(batch, batchID: nil)
            ids += batch.map(\.id)
        }
        try await store.stageRunning(environment: environment, workerID: "bench-worker", lease: .seconds(3_600))
        return ids
    }

    /// Per job its attempt's Job and running algorithm pod, stored directly in the emulator (no controller work).
    private func preloadJobs(_ ids: [JobID], environment: String) async throws {
        func labels(_ id: JobID, _ role: ClusterNaming.Role?) -> String {
            ClusterNaming.labels(jobID: id, attempt: 1, environment: environment, role: role)
                .map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",")
        }
        for start in stride(from: 0, to: ids.count, by: 10_000) {
            let slice = ids[start..<min(start + 10_000, ids.count)]
            let jobs = slice.map { id -> [UInt8] in
                let json = """
                    {"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"\(ClusterNaming.attemptName(jobID: id, attempt: 1))",\
                    "labels":{\(labels(id, nil))}},\
                    "spec":{"backoffLimit":0,"template":{"metadata":{"labels":{\(labels(id, .io))}},"spec":{\
                    "restartPolicy":"Never","containers":[{"name":"publish","image":"c2d:bench"}]}}},\
                    "status":{"active":1,"ready":1}}
                    """
                return Array(json.utf8)
            }
            try await emulator.preload(resource: "jobs", namespace: namespace, objects: jobs)
            let pods = slice.map { id -> [UInt8] in
                let json = """
                    {"apiVersion":"v1","kind":"Pod","metadata":{"name":"\(ClusterNaming.algorithmPodName(jobID: id, attempt: 1))",\
                    "labels":{\(labels(id, .algorithm))}},"spec":{"restartPolicy":"Never",\
                    "containers":[{"name":"algorithm","image":"python"}]},\
                    "status":{"phase":"Running","containerStatuses":[{"name":"algorithm","image":"python",\
                    "ready":true,"restartCount":0,"state":{"running":{"startedAt":"2026-01-01T00:00:00Z"}}}]}}
                    """
                return Array(json.utf8)
            }
            try await emulator.preload(resource: "pods", namespace: namespace, objects: pods)
        }
    }

    /// The epoch of a leadership that has just started, once it leads.
    private static func epoch(of leadership: SchedulerLeadership) async throws -> Int64 {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let epoch = leadership.role.epoch { return epoch }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchError(code: .noLeadership, message: "never became leader")
    }

    /// The figures against their targets.
    private func report(
        full: [Double], incremental: [Double], rssPeak: [Int], lastFull: ReconcileResult,
        lastIncremental: ReconcileResult, cached: Int, cachedSeconds: Double, planned: Int, planSeconds: Double,
        buildSeconds: Double
    ) {
        let fullMedian = Self.median(full)
        let fullWorst = (full.max() ?? 0) * 1000
        let incrementalMedian = Self.median(incremental)
        let incrementalWorst = (incremental.max() ?? 0) * 1000
        let rss = Double(rssPeak.max() ?? 0) / 1_048_576
        let processRSS = Double(Memory.current() ?? 0) / 1_048_576
        let failSafe = lastFull.failSafe.map(\.description) ?? "no"
        var line = "full pass: median \(Self.format(fullMedian * 1000)) ms, worst \(Self.format(fullWorst)) ms"
        line += " over \(runs) (read \(lastFull.jobsRead) rows; planned \(Self.describe(lastFull.planned));"
        line += " fail-safe \(failSafe)) (target <= 3,000 ms: \(fullMedian <= 3 ? "met" : "MISSED"))"
        print(line)
        line = "incremental pass after \(changes) changed rows: median \(Self.format(incrementalMedian * 1000, 1)) ms,"
        line += " worst \(Self.format(incrementalWorst, 1)) ms (read \(lastIncremental.jobsRead) rows;"
        line += " planned \(Self.describe(lastIncremental.planned));"
        line += lastIncremental.focused ? " focused)" : " walked every job)"
        line += " (target <= 50 ms: \(incrementalMedian <= 0.05 ? "met" : "MISSED"))"
        print(line)
        line = "  of which, measured alone: the watched listing of \(cached) objects"
        line += " \(Self.format(cachedSeconds * 1000, 1)) ms; the planner walking all \(planned) jobs"
        line += " \(Self.format(planSeconds * 1000, 1)) ms, and building the focus for the passes after"
        line += " \(Self.format(buildSeconds * 1000, 1)) ms"
        print(line)
        line = "RSS growth during the full pass: peak \(Self.format(rss, 1)) MiB above the pass's start"
        line += " (VmHWM reset before each pass; process RSS now \(Self.format(processRSS)) MiB, including the"
        line += " emulator's \(jobs) objects) (target <= 150 MiB: \(rss <= 150 ? "met" : "MISSED"))"
        print(line)
    }

    func cleanUp() async {
        await emulator.shutdown()
        do {
            try await schema.drop(using: client)
        } catch {
            print("warning: could not drop schema \(schema.name): \(error)")
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    static func describe(_ counts: [ReconcileAction.Kind: Int]) -> String {
        counts.isEmpty
            ? "nothing"
            : counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key) \($0.value)" }
                .joined(separator: ", ")
    }

    static func format(_ value: Double, _ fractionDigits: Int = 0) -> String {
        value.formatted(.number.precision(.fractionLength(fractionDigits)).grouping(.automatic))
    }
}

/// The bench archives no logs.
private struct NoResultStore: ResultStore {
    func store(jobID: JobID, name: String, from file: URL) async throws -> StoredObject {
        StoredObject(location: "\(jobID)/\(name)", size: 0, sha256: "")
    }

    func file(at location: String) throws -> URL { URL(fileURLWithPath: "/dev/null") }

    func deleteAll(jobID: JobID) async throws {}
}

/// This process's resident memory, from /proc/self.
private enum Memory {
    /// VmRSS, in bytes.
    static func current() -> Int? { field("VmRSS") }

    /// VmHWM (peak RSS since the last reset), in bytes.
    static func peak() -> Int? { field("VmHWM") }

    /// Resets VmHWM to the current RSS (writing 5 to clear_refs) and returns the current RSS.
    static func resetPeak() -> Int {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        return current() ?? 0
    }

    /// Samples VmRSS every 5 ms until cancelled; returns the highest seen (a fallback where clear_refs is refused).
    static func sampleWhileRunning() async -> Int {
        var highest = 0
        while !Task.isCancelled {
            highest = max(highest, current() ?? 0)
            try? await Task.sleep(for: .milliseconds(5))
        }
        return highest
    }

    private static func field(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let number = line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces).split(separator: " ").first
            return number.flatMap { Int($0) }.map { $0 * 1024 }
        }
        return nil
    }
}

extension BenchError.Code {
    static let noLeadership = BenchError.Code(description: "noLeadership")
    static let unexpectedPass = BenchError.Code(description: "unexpectedPass")
}
