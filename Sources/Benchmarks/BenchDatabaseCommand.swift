import App
import ArgumentParser
import Domain
import Foundation
import Logging
import Persistence

/// `c2d bench db`: how fast the job store writes and claims, next to pgbench's rate for a comparable single-row
/// insert on the same server in the same run.
///
/// Everything it writes goes to its own environment row (`bench-<random>`) and a scratch table, both removed at the
/// end, so it can run against a database that serves real jobs. It needs the schema (`c2d migrate`) and `pgbench`.
struct BenchDatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Benchmark the job store: single inserts, batch inserts, claims, and pgbench for comparison.",
        discussion: """
            Connects like every c2d command (DATABASE_URL, else the PG* variables). Targets: batch inserts >= \
            50,000 jobs/s; single inserts >= 0.8 x pgbench's rate for a single-row insert. Each is printed next \
            to the ceiling measured in the same run (docs/operations.md, "Where a submit's time goes").
            """
    )

    @Option(help: "Seconds each phase runs.")
    var seconds: Int = 5

    @Option(help: "Jobs per batch in the batch-insert phase.")
    var batchSize: Int = 10_000

    @Option(help: "Concurrent connections for single inserts, claims and pgbench.")
    var connections: Int = 8

    @Option(help: "Concurrent connections making batch inserts.")
    var batchClients: Int = 1

    @Option(help: "pgbench threads (-j).")
    var pgbenchThreads: Int = 2

    @Option(help: "Path of pgbench (default: PATH, then /usr/lib/postgresql/*/bin).")
    var pgbench: String?

    func validate() throws {
        guard (1...3600).contains(seconds) else { throw ValidationError("--seconds must be in 1...3600") }
        guard (1...1_000_000).contains(batchSize) else { throw ValidationError("--batch-size must be in 1...1000000") }
        guard (1...256).contains(connections) else { throw ValidationError("--connections must be in 1...256") }
        guard (1...connections).contains(batchClients) else {
            throw ValidationError("--batch-clients must be in 1...connections")
        }
        guard (1...connections).contains(pgbenchThreads) else {
            throw ValidationError("--pgbench-threads must be in 1...connections")
        }
    }

    func run() async throws {
        var logger = Logger(label: "c2d.bench")
        logger.logLevel = .warning
        var configuration = try Settings.load().postgres
        configuration.minimumConnections = connections
        configuration.maximumConnections = connections
        // Clean-up deletes hundreds of thousands of rows; the default 30 s could cut it short on a slow disk.
        configuration.statementTimeout = .seconds(300)
        let client = PostgresClient(configuration: configuration, logger: logger)
        let bench = DatabaseBench(
            client: client, seconds: seconds, batchSize: batchSize, connections: connections,
            batchClients: batchClients, pgbenchThreads: pgbenchThreads, pgbenchPath: pgbench,
            postgres: configuration)
        do {
            try await BenchInterruption.cancellingOnSignals { try await bench.run() }
        } catch {
            await client.shutdown()
            // An interruption is no misuse of the command: its message, without the usage text.
            if let error = error as? BenchError, error.code == .interrupted { throw error }
            throw ValidationError("bench db: \(error)")
        }
        await client.shutdown()
    }
}

/// The benchmark's phases and its clean-up.
private struct DatabaseBench {
    let client: PostgresClient
    let seconds: Int
    let batchSize: Int
    let connections: Int
    let batchClients: Int
    let pgbenchThreads: Int
    let pgbenchPath: String?
    let postgres: PostgresConfiguration

    var store: PostgresJobStore { PostgresJobStore(client: client) }
    var duration: Duration { .seconds(seconds) }

    func run() async throws {
        guard try await store.hasJobsTable() else {
            throw BenchError(code: .schemaMissing, message: "no jobs table: run `c2d migrate` first")
        }
        await BenchCleanCommand.warnAboutLeftovers(store)
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let environment = ComputeEnvironment(id: "bench-\(suffix)", description: "c2d bench db, removed afterwards")
        let scratchTable = BenchCleanCommand.scratchTable(ofEnvironment: environment.id)
        let workflow = Self.workflow()
        let workflowJSON = String(decoding: try JSONEncoder().encode(workflow), as: UTF8.self)
        let lock = try await BenchEnvironmentLock.take(environment.id, postgres: postgres)
        try await store.upsertEnvironments([environment])
        do {
            print(
                "c2d bench db: \(seconds) s per phase, \(connections) connections, batches of \(batchSize), "
                    + "workflow jsonb \(workflowJSON.utf8.count) bytes")
            let single = try await singleInserts(environment: environment, workflow: workflow, oneStatement: false)
            let pgbenchRate = try await pgbenchInserts(table: scratchTable, payload: workflowJSON)
            let oneStatement = try await singleInserts(environment: environment, workflow: workflow, oneStatement: true)
            let batch = try await batchInserts(environment: environment, workflow: workflow)
            let copyCeiling = try await bareCopies(table: scratchTable, payload: workflowJSON)
            let admission = try await admitBacklog(environment: environment)
            let claims = try await claimJobs(environment: environment)

            let ratio = single.rate / pgbenchRate
            print(
                "single insert (job + event in one statement, \(connections) connections): "
                    + "\(Self.format(single.rate)) jobs/s (\(single.count) in \(Self.format(single.elapsed, 2)) s)")
            print(
                "pgbench (single-row insert of uuid, text, \(workflowJSON.utf8.count) B jsonb; -c \(connections) "
                    + "-j \(pgbenchThreads) -T \(seconds) -M prepared): \(Self.format(pgbenchRate)) tps")
            print(
                "ratio single / pgbench: \(Self.format(ratio, 2)) "
                    + "(target >= 0.80: \(ratio >= 0.8 ? "met" : "MISSED"))")
            let oneRatio = oneStatement.rate / pgbenchRate
            print(
                "single insert with an idempotency key: "
                    + "\(Self.format(oneStatement.rate)) jobs/s, ratio to pgbench \(Self.format(oneRatio, 2))")
            print(
                "batch insert (\(batchSize) jobs + events per transaction, COPY, \(batchClients) "
                    + "connection\(batchClients == 1 ? "" : "s")): "
                    + "\(Self.format(batch.rate)) jobs/s (\(batch.count) in \(Self.format(batch.elapsed, 2)) s; "
                    + "per batch p50 \(Self.format(batch.p50 * 1000)) ms, max \(Self.format(batch.max * 1000)) ms) "
                    + "(target >= 50,000: \(batch.rate >= 50_000 ? "met" : "MISSED"))")
            print(
                "ceiling: the same payload COPYed into a table of (uuid primary key, text, jsonb), \(batchSize) rows "
                    + "per transaction, \(batchClients) connection\(batchClients == 1 ? "" : "s"): "
                    + "\(Self.format(copyCeiling.rate)) rows/s (ratio \(Self.format(batch.rate / copyCeiling.rate, 2)))"
            )
            print(
                "admission (one dispatcher's passes of 256 over one owner's backlog of \(admission.backlog) waiting "
                    + "jobs): \(Self.format(admission.rate.rate)) jobs/s (\(admission.rate.count) in "
                    + "\(Self.format(admission.rate.elapsed, 2)) s; per pass p50 \(Self.format(admission.p50 * 1000, 1)) ms, "
                    + "max \(Self.format(admission.max * 1000, 1)) ms)")
            print(
                "claims (\(connections) concurrent claimers, conditional update + event per claim): "
                    + "\(Self.format(claims.rate)) claims/s (\(claims.count) in \(Self.format(claims.elapsed, 2)) s)")
        } catch {
            _ = try? await BenchInterruption.cleaningUp {
                try await self.cleanUp(environment: environment, scratchTable: scratchTable)
            }
            await lock.release()
            throw error
        }
        try await BenchInterruption.cleaningUp {
            try await self.cleanUp(environment: environment, scratchTable: scratchTable)
        }
        await lock.release()
    }

    // MARK: Phases

    struct Rate {
        var count: Int
        var elapsed: Double
        var rate: Double { elapsed > 0 ? Double(count) / elapsed : 0 }
    }

    /// `connections` tasks each running `PostgresJobStore.insert` back to back (job + event in one statement, as the
    /// gateway does), after a short warm-up that prepares the statements on every connection. With `oneStatement`,
    /// the insert carries an idempotency key, as a retried submit does.
    func singleInserts(environment: ComputeEnvironment, workflow: Workflow, oneStatement: Bool) async throws -> Rate {
        let store = store
        let connections = connections
        @Sendable func insertUntil(_ deadline: ContinuousClock.Instant) async throws -> Int {
            var inserted = 0
            while ContinuousClock.now < deadline {
                let job = Job(id: JobID(), environment: environment.id, owner: "bench", workflow: workflow)
                try await store.insert(job, idempotencyKey: oneStatement ? job.id.description : nil)
                inserted += 1
            }
            return inserted
        }
        let warmUp = ContinuousClock.now + .milliseconds(500)
        _ = try await Self.concurrently(connections) { _ in try await insertUntil(warmUp) }
        let start = ContinuousClock.now
        let deadline = start + duration
        let counts = try await Self.concurrently(connections) { _ in try await insertUntil(deadline) }
        return Rate(count: counts.reduce(0, +), elapsed: (ContinuousClock.now - start).inSeconds)
    }

    /// `batchClients` tasks each making back-to-back `insertBatch` calls of `batchSize` jobs, until the phase's time is
    /// up; the rate is jobs over wall time to the end of the last batch.
    func batchInserts(
        environment: ComputeEnvironment,
        workflow: Workflow
    ) async throws -> (count: Int, elapsed: Double, rate: Double, p50: Double, max: Double) {
        let store = store
        let batchSize = batchSize
        let warmUp = Self.jobs(1, environment: environment, workflow: workflow)
        try await store.insertBatch(warmUp, batchID: UUID())
        let start = ContinuousClock.now
        let deadline = start + duration
        let durations = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<batchClients {
                group.addTask {
                    var durations: [Double] = []
                    while ContinuousClock.now < deadline {
                        let jobs = Self.jobs(batchSize, environment: environment, workflow: workflow)
                        let elapsed = try await ContinuousClock().measure {
                            try await store.insertBatch(jobs, batchID: UUID())
                        }
                        durations.append(elapsed.inSeconds)
                    }
                    return durations
                }
            }
            return try await group.reduce(into: [Double]()) { $0 += $1 }
        }
        let elapsed = (ContinuousClock.now - start).inSeconds
        let inserted = durations.count * batchSize
        let sorted = durations.sorted()
        return (inserted, elapsed, Double(inserted) / elapsed, sorted[sorted.count / 2], sorted.last ?? 0)
    }

    /// The batch phase's ceiling: `batchClients` connections COPYing `batchSize` rows per transaction of the same
    /// workflow into the bare scratch table pgbench used, for the phase's time; rows over wall time.
    func bareCopies(table: String, payload: String) async throws -> Rate {
        let client = client
        let batchSize = batchSize
        let start = ContinuousClock.now
        let deadline = start + duration
        let counts = try await Self.concurrently(batchClients) { _ in
            var copied = 0
            while ContinuousClock.now < deadline {
                let rows: [[PostgresValue]] = (0..<batchSize).map { _ in
                    [.uuid(UUID()), .text("bench"), .json(payload)]
                }
                try await client.withTransaction { tx in
                    _ = try await tx.copy(into: table, columns: ["id", "owner", "workflow"], rows: rows)
                }
                copied += batchSize
            }
            return copied
        }
        return Rate(count: counts.reduce(0, +), elapsed: (ContinuousClock.now - start).inSeconds)
    }

    /// A dispatcher's passes (``PostgresJobStore/dispatch(environment:limit:redispatchAfter:workerStaleAfter:maximumGroups:)``,
    /// 256 jobs each, as the scheduler runs them) over the jobs the insert phases left waiting, all of one owner —
    /// a batch submitter's backlog — for the phase's time, with a registered worker whose slots leave room for all.
    func admitBacklog(
        environment: ComputeEnvironment
    ) async throws -> (backlog: Int, rate: Rate, p50: Double, max: Double) {
        let backlog = try await store.counts(environment: environment.id).unfinished
        let workerID = "\(environment.id)-admission"
        try await store.registerWorker(
            id: workerID, environments: [environment.id], slots: 10_000_000, executor: "bench")
        var durations: [Double] = []
        var admitted = 0
        let start = ContinuousClock.now
        let deadline = start + duration
        do {
            while ContinuousClock.now < deadline {
                var pass: PostgresJobStore.DispatchPass?
                let elapsed = try await ContinuousClock().measure {
                    pass = try await store.dispatch(
                        environment: environment.id, limit: 256, redispatchAfter: .seconds(3600),
                        workerStaleAfter: .seconds(3600))
                }
                guard let pass, !pass.admitted.isEmpty else { break }
                durations.append(elapsed.inSeconds)
                admitted += pass.admitted.count
            }
        } catch {
            try? await store.unregisterWorker(id: workerID)
            throw error
        }
        let rate = Rate(count: admitted, elapsed: (ContinuousClock.now - start).inSeconds)
        try await store.unregisterWorker(id: workerID)
        let sorted = durations.sorted()
        return (backlog, rate, sorted.isEmpty ? 0 : sorted[sorted.count / 2], sorted.last ?? 0)
    }

    /// `connections` claimers taking the bench environment's unclaimed jobs from a shared list, as workers take
    /// job messages from a queue: every `claim` is a real conditional update plus its event, and should win.
    func claimJobs(environment: ComputeEnvironment) async throws -> Rate {
        let ids = try await store.unclaimedJobIDs(environment: environment.id)
        // Only admitted jobs can be claimed; no dispatcher runs here, so admit them (untimed), as one would have.
        for chunk in stride(from: 0, to: ids.count, by: 10_000) {
            try await store.markAdmitted(Array(ids[chunk..<min(ids.count, chunk + 10_000)]))
        }
        let queue = WorkQueue(ids.shuffled())
        let store = store
        let start = ContinuousClock.now
        let deadline = start + duration
        let counts = try await Self.concurrently(connections) { worker in
            var claimed = 0
            while ContinuousClock.now < deadline, let id = queue.next() {
                if case .claimed = try await store.claim(jobID: id, workerID: "bench-\(worker)", lease: .seconds(600)) {
                    claimed += 1
                }
            }
            return claimed
        }
        return Rate(count: counts.reduce(0, +), elapsed: (ContinuousClock.now - start).inSeconds)
    }

    /// pgbench inserting a comparable row (uuid primary key, text, the same workflow as jsonb) into a scratch
    /// table, one row per transaction.
    func pgbenchInserts(table: String, payload: String) async throws -> Double {
        try await client.executeScript(
            "create table \(table) (id uuid primary key, owner text not null, workflow jsonb not null)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-bench-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("insert.sql")
        let literal = Self.pgbenchSafe(payload).replacingOccurrences(of: "'", with: "''")
        try Data(
            "insert into \(table) (id, owner, workflow) values (gen_random_uuid(), 'bench', '\(literal)'::jsonb);\n"
                .utf8
        ).write(to: script)
        var arguments = [
            "-n", "-c", String(connections), "-j", String(pgbenchThreads), "-T", String(seconds), "-M", "prepared",
            "-f", script.path,
        ]
        // pgbench expands a connection string given as the database name, and reads PG* itself otherwise.
        if !postgres.connectionString.isEmpty { arguments.append(postgres.connectionString) }
        let output = try await Self.runProcess(try pgbenchExecutable(), arguments, outputIn: directory)
        guard let rate = Self.parseTPS(output) else {
            throw BenchError(code: .pgbenchFailed, message: "no tps in pgbench's output:\n\(output)")
        }
        return rate
    }

    // MARK: Clean-up

    /// Deletes the bench's environment with its jobs, and the scratch table.
    func cleanUp(environment: ComputeEnvironment, scratchTable: String) async throws {
        try await store.removeEnvironment(environment.id)
        try await store.dropBenchScratchTable(scratchTable)
    }

    // MARK: Helpers

    /// A one-stage workflow of about 1 KiB of JSON, like a small raw-code job.
    static func workflow() -> Workflow {
        let line = "total = sum(int(x) for x in open('/data/inputs/0').read().split())  # bench\n"
        let rawcode = String(repeating: line, count: 11) + "print(total)\n"
        return Workflow(stages: [
            .init(
                input: [
                    .init(id: "did:op:" + String(repeating: "ab", count: 32), url: ["https://example.org/data.csv"])
                ],
                algorithm: .init(rawcode: rawcode, container: .init(entrypoint: "python3 $ALGO", image: "python")))
        ])
    }

    static func jobs(_ count: Int, environment: ComputeEnvironment, workflow: Workflow) -> [Job] {
        (0..<count).map { _ in Job(id: JobID(), environment: environment.id, owner: "bench", workflow: workflow) }
    }

    /// Runs `body` in `count` child tasks and returns their results.
    static func concurrently(
        _ count: Int,
        _ body: @escaping @Sendable (Int) async throws -> Int
    ) async throws -> [Int] {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<count { group.addTask { try await body(index) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    func pgbenchExecutable() throws -> URL {
        if let pgbenchPath { return URL(fileURLWithPath: pgbenchPath) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        var candidates = path.split(separator: ":").map { "\($0)/pgbench" }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        candidates += versions.sorted { $0.compare($1, options: .numeric) == .orderedDescending }
            .map { "/usr/lib/postgresql/\($0)/bin/pgbench" }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchError(
                code: .pgbenchMissing, message: "pgbench not found (install postgresql-contrib or pass --pgbench)")
        }
        return URL(fileURLWithPath: found)
    }

    /// Runs a process to completion without blocking a cooperative thread; returns its stdout and stderr.
    static func runProcess(_ executable: URL, _ arguments: [String], outputIn directory: URL) async throws -> String {
        let outputFile = directory.appendingPathComponent("output.txt")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: outputFile)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            // The child inherits the spawning thread's signal mask, and the threads of the cooperative pool block
            // nearly all signals; pgbench ends its -T run with SIGALRM, so it must start from a thread that blocks
            // nothing. This thread is ours and exits right after the spawn.
            let spawner = Thread {
                var nothing = sigset_t()
                sigemptyset(&nothing)
                pthread_sigmask(SIG_SETMASK, &nothing, nil)
                do {
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    continuation.resume(throwing: error)
                }
            }
            spawner.start()
        }
        let output = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw BenchError(code: .pgbenchFailed, message: "pgbench exited with status \(status):\n\(output)")
        }
        return output
    }

    /// The rate from pgbench's "tps = 12345.678901 (without initial connection time)" line.
    static func parseTPS(_ output: String) -> Double? {
        for line in output.split(separator: "\n") where line.hasPrefix("tps = ") {
            let number = line.dropFirst("tps = ".count).prefix { $0.isNumber || $0 == "." }
            return Double(number)
        }
        return nil
    }

    /// The same JSON document without `:name` sequences, which pgbench would take for its variables: colons in
    /// strings become `\u003a`, and structural colons get a space after them. jsonb stores the same value.
    static func pgbenchSafe(_ json: String) -> String {
        var result = ""
        var inString = false
        var escaped = false
        for character in json {
            if inString {
                if escaped {
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == "\"" {
                    inString = false
                } else if character == ":" {
                    result += "\\u003a"
                    continue
                }
            } else if character == "\"" {
                inString = true
            } else if character == ":" {
                result += ": "
                continue
            }
            result.append(character)
        }
        return result
    }

    static func format(_ value: Double, _ fractionDigits: Int = 0) -> String {
        value.formatted(.number.precision(.fractionLength(fractionDigits)).grouping(.automatic))
    }
}

/// Job ids handed out one at a time to concurrent claimers.
private final class WorkQueue: @unchecked Sendable {
    // Guarded by `lock`.
    private var ids: [JobID]
    private var position = 0
    private let lock = NSLock()

    init(_ ids: [JobID]) { self.ids = ids }

    func next() -> JobID? {
        lock.lock()
        defer { lock.unlock() }
        guard position < ids.count else { return nil }
        position += 1
        return ids[position - 1]
    }
}

/// Why the benchmark could not run.
struct BenchError: Error, CustomStringConvertible {
    struct Code: Hashable, Sendable, CustomStringConvertible {
        let description: String
        static let schemaMissing = Code(description: "schemaMissing")
        static let pgbenchMissing = Code(description: "pgbenchMissing")
        static let pgbenchFailed = Code(description: "pgbenchFailed")
        /// SIGINT or SIGTERM stopped the bench (``BenchInterruption``).
        static let interrupted = Code(description: "interrupted")
        /// Another running bench holds the lock of the environment this one was about to make
        /// (``BenchEnvironmentLock``).
        static let environmentLocked = Code(description: "environmentLocked")
    }

    var code: Code
    var message: String
    var description: String { "\(code): \(message)" }
}

extension Duration {
    fileprivate var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
