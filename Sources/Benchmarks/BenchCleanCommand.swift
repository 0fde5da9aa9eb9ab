import App
import ArgumentParser
import Foundation
import Logging
import Persistence

/// `c2d bench clean`: removes what bench runs that were killed left in the database.
///
/// Every bench removes its environment and jobs when it ends, also when SIGINT or SIGTERM stops it
/// (``BenchInterruption``); a run killed outright (SIGKILL, a lost machine) leaves them. They are not harmless: one
/// such leftover of 183,000 jobs, with the dead rows of the runs after it, bloated `jobs` to 2.3 GB and halved what
/// `bench db` measured. A bench that still runs holds a lock named after its environment (``BenchEnvironmentLock``),
/// which Postgres drops when the bench dies: those environments are kept. A Postgres restart drops the locks of
/// benches that go on; a clean-up run just after one would take their environments.
struct BenchCleanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clean",
        abstract: "Remove the environments, jobs and scratch tables that killed bench runs left in the database.",
        discussion: """
            Removes every environment whose id starts with bench- (with its jobs, batches and workers) and every \
            scratch table of bench db, except those of benches still running. Connects like every c2d command \
            (DATABASE_URL, else the PG* variables).
            """
    )

    func run() async throws {
        var logger = Logger(label: "c2d.bench")
        logger.logLevel = .warning
        var configuration = try Settings.load().postgres
        // A leftover can hold hundreds of thousands of jobs; removing them takes longer than a request may.
        configuration.statementTimeout = .seconds(300)
        let client = PostgresClient(configuration: configuration, logger: logger)
        do {
            try await clean(client: client)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    private func clean(client: PostgresClient) async throws {
        let store = PostgresJobStore(client: client)
        let (running, abandoned) = Self.partition(try await store.benchEnvironments())
        for environment in running {
            print("kept environment \(environment.id) and its \(environment.jobs) jobs: its bench is running")
        }
        for environment in abandoned {
            try await store.removeEnvironment(environment.id)
            print(
                "removed environment \(environment.id) (last seen \(environment.lastSeen.formatted(.iso8601))) "
                    + "and its \(environment.jobs) jobs")
        }
        let kept = Set(running.map { Self.scratchTable(ofEnvironment: $0.id) })
        let tables = try await store.benchScratchTables().filter { !kept.contains($0) }
        for table in tables {
            try await store.dropBenchScratchTable(table)
            print("dropped scratch table \(table)")
        }
        if abandoned.isEmpty && tables.isEmpty { print("nothing to remove") }
    }

    /// `bench db`'s scratch table, named after its environment: `bench-<suffix>` has `c2d_bench_pgbench_<suffix>`.
    static func scratchTable(ofEnvironment id: String) -> String {
        "c2d_bench_pgbench_" + id.dropFirst("bench-".count)
    }

    private static func partition(
        _ environments: [PostgresJobStore.BenchEnvironment]
    ) -> (running: [PostgresJobStore.BenchEnvironment], abandoned: [PostgresJobStore.BenchEnvironment]) {
        (environments.filter(\.running), environments.filter { !$0.running })
    }

    /// Warns when earlier bench runs left environments in the database, or other benches run now: their jobs slow
    /// what this run measures.
    static func warnAboutLeftovers(_ store: PostgresJobStore) async {
        guard let environments = try? await store.benchEnvironments() else { return }
        let (running, abandoned) = partition(environments)
        var message = ""
        if !abandoned.isEmpty {
            message +=
                "warning: \(describe(abandoned)) of earlier bench runs, which slow what this run measures; "
                + "`c2d bench clean` removes them\n"
        }
        if !running.isEmpty {
            message +=
                "warning: another bench runs against this database (\(describe(running))): it shares the database "
                + "server\n"
        }
        if !message.isEmpty { FileHandle.standardError.write(Data(message.utf8)) }
    }

    /// "2 environments (bench-1, bench-2) with 1200 jobs"
    private static func describe(_ environments: [PostgresJobStore.BenchEnvironment]) -> String {
        let jobs = environments.reduce(0) { $0 + $1.jobs }
        let names = environments.prefix(3).map(\.id).joined(separator: ", ") + (environments.count > 3 ? ", …" : "")
        return "\(environments.count) environment\(environments.count == 1 ? "" : "s") (\(names)) with \(jobs) jobs"
    }
}
