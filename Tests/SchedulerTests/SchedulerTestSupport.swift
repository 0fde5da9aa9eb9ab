import Foundation
import Logging
import Persistence

/// Where the test server is: the standard PG* variables, defaulting to the one `scripts/services` starts.
enum SchedulerTestDatabase {
    static var connectionString: String {
        let environment = ProcessInfo.processInfo.environment
        let host = environment["PGHOST"] ?? "127.0.0.1"
        let port = environment["PGPORT"] ?? "55432"
        let user = environment["PGUSER"] ?? "postgres"
        let database = environment["PGDATABASE"] ?? "c2d"
        return "host=\(host) port=\(port) user=\(user) dbname=\(database)"
    }

    static let logger: Logger = {
        var logger = Logger(label: "scheduler-tests")
        logger.logLevel = .warning
        return logger
    }()

    /// `<root>/migrations`, found from this file (symlinks resolved, for scratch packages).
    static let migrationsDirectory = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("migrations")

    static func configuration(schema: String? = nil) -> PostgresConfiguration {
        var connectionString = connectionString
        if let schema { connectionString += " options='-c search_path=\(schema)'" }
        return PostgresConfiguration(connectionString: connectionString)
    }

    /// Opens clients bound to one schema (one per simulated process) and shuts them all down at the end.
    final class Clients {
        let schema: String
        private(set) var opened: [PostgresClient] = []

        init(schema: String) { self.schema = schema }

        /// A new client; `name` is its `application_name`, for finding its sessions in `pg_stat_activity`.
        func callAsFunction(_ name: String = "c2d-scheduler-tests") -> PostgresClient {
            var configuration = SchedulerTestDatabase.configuration(schema: schema)
            configuration.applicationName = name
            let client = PostgresClient(configuration: configuration, logger: SchedulerTestDatabase.logger)
            opened.append(client)
            return client
        }
    }

    /// Runs `body` with a fresh schema holding the project's migrations, and a factory for clients bound to it. The
    /// schema and the clients are dropped afterwards.
    static func withMigratedSchema<T>(_ body: (_ makeClient: Clients) async throws -> T) async throws -> T {
        let schema = "sched_test_" + UUID().uuidString.prefix(8).lowercased()
        let admin = PostgresClient(configuration: configuration(), logger: logger)
        try await admin.executeScript("CREATE SCHEMA \(schema)")
        let clients = Clients(schema: schema)
        func cleanUp() async {
            for client in clients.opened { await client.shutdown() }
            try? await admin.executeScript("DROP SCHEMA \(schema) CASCADE")
            await admin.shutdown()
        }
        do {
            _ = try await MigrationRunner(client: clients(), directory: migrationsDirectory, logger: logger).apply()
            let value = try await body(clients)
            await cleanUp()
            return value
        } catch {
            await cleanUp()
            throw error
        }
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held. Never asserts on timing itself.
func eventually(
    within limit: Duration, every interval: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
