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
/// `bench db` measured.
struct BenchCleanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clean",
        abstract: "Remove the environments, jobs and scratch tables that killed bench runs left in the database.",
        discussion: """
            Removes every environment whose id starts with bench- (with its jobs, batches and workers) and every \
            scratch table of bench db. Run it when no bench runs against the same database: a running bench's \
            environment looks the same. Connects like every c2d command (DATABASE_URL, else the PG* variables).
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
        let environments = try await store.benchEnvironments()
        for environment in environments {
            try await store.removeEnvironment(environment.id)
            print(
                "removed environment \(environment.id) (last seen \(environment.lastSeen.formatted(.iso8601))) "
                    + "and its \(environment.jobs) jobs")
        }
        let tables = try await client.query(
            """
            select tablename from pg_tables
            where schemaname = current_schema() and tablename like 'c2d\\_bench\\_pgbench\\_%'
            """
        ).map { try $0.string("tablename") }
        for table in tables {
            let quoted = "\"" + table.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            try await client.executeScript("drop table if exists \(quoted)")
            print("dropped scratch table \(table)")
        }
        if environments.isEmpty && tables.isEmpty { print("nothing to remove") }
    }

    /// Warns when earlier bench runs left environments in the database: their jobs slow what this run measures.
    static func warnAboutLeftovers(_ store: PostgresJobStore) async {
        guard let leftovers = try? await store.benchEnvironments(), !leftovers.isEmpty else { return }
        let jobs = leftovers.reduce(0) { $0 + $1.jobs }
        let names = leftovers.prefix(3).map(\.id).joined(separator: ", ") + (leftovers.count > 3 ? ", …" : "")
        let message =
            "warning: \(leftovers.count) environment\(leftovers.count == 1 ? "" : "s") of earlier bench runs "
            + "(\(names)) still \(leftovers.count == 1 ? "holds" : "hold") \(jobs) jobs, which slow what this run measures; `c2d bench clean` removes "
            + "them (when no other bench runs)\n"
        FileHandle.standardError.write(Data(message.utf8))
    }
}
