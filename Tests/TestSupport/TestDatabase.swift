import Foundation
import Logging
import Persistence

/// The Postgres server the tests use (the standard PG* variables, defaulting to the one `scripts/services`
/// starts), and a fresh schema per test on it: every client a test opens has that schema as its `search_path`, so
/// tests run side by side with each other and with running c2d processes, and leave nothing behind.
package enum TestDatabase {
    package static var connectionString: String {
        let environment = ProcessInfo.processInfo.environment
        let host = environment["PGHOST"] ?? "127.0.0.1"
        let port = environment["PGPORT"] ?? "55432"
        let user = environment["PGUSER"] ?? "postgres"
        let database = environment["PGDATABASE"] ?? "c2d"
        return "host=\(host) port=\(port) user=\(user) dbname=\(database)"
    }

    package static let logger: Logger = {
        var logger = Logger(label: "c2d-tests")
        logger.logLevel = .warning
        return logger
    }()

    /// The repository's `migrations/`.
    package static var migrationsDirectory: URL {
        TestEnvironment.repositoryRoot.appendingPathComponent("migrations")
    }

    package static func configuration(schema: String? = nil) -> PostgresConfiguration {
        var connectionString = connectionString
        if let schema { connectionString += " options='-c search_path=\(schema)'" }
        return PostgresConfiguration(connectionString: connectionString)
    }

    /// Applies the repository's migrations to the first schema of `client`'s `search_path`; returns the versions
    /// it applied (none when the schema is current).
    @discardableResult
    package static func migrate(_ client: PostgresClient) async throws -> [String] {
        try await MigrationRunner(client: client, directory: migrationsDirectory, logger: logger).apply()
    }

    /// Opens clients bound to one schema (one per simulated process) and shuts them all down at the end.
    package final class Clients {
        package let schema: String
        package private(set) var opened: [PostgresClient] = []

        init(schema: String) { self.schema = schema }

        /// A new client; `name` is its `application_name`, for finding its sessions in `pg_stat_activity`.
        package func callAsFunction(
            _ name: String = "c2d-tests", _ configure: (inout PostgresConfiguration) -> Void = { _ in }
        ) -> PostgresClient {
            var configuration = TestDatabase.configuration(schema: schema)
            configuration.applicationName = name
            configure(&configuration)
            let client = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
            opened.append(client)
            return client
        }
    }

    /// Runs `body` with a client whose `search_path` is a fresh, empty schema, dropped afterwards.
    package static func withSchema<T>(
        _ configure: (inout PostgresConfiguration) -> Void = { _ in },
        _ body: (PostgresClient, String) async throws -> T
    ) async throws -> T {
        try await withFreshSchema { clients in
            try await body(clients("c2d-tests", configure), clients.schema)
        }
    }

    /// Runs `body` with a fresh schema holding the project's migrations, and a factory for clients bound to it. The
    /// schema and the clients are dropped afterwards.
    package static func withMigratedSchema<T>(_ body: (_ makeClient: Clients) async throws -> T) async throws -> T {
        try await withFreshSchema { clients in
            try await migrate(clients())
            return try await body(clients)
        }
    }

    private static func withFreshSchema<T>(_ body: (Clients) async throws -> T) async throws -> T {
        let schema = ScratchSchema(prefix: "test")
        let admin = PostgresClient(configuration: configuration(), logger: logger)
        func cleanUp(_ clients: Clients) async {
            for client in clients.opened { await client.shutdown() }
            try? await schema.drop(using: admin)
            await admin.shutdown()
        }
        do {
            try await schema.create(using: admin)
        } catch {
            await admin.shutdown()
            throw error
        }
        let clients = Clients(schema: schema.name)
        do {
            let value = try await body(clients)
            await cleanUp(clients)
            return value
        } catch {
            await cleanUp(clients)
            throw error
        }
    }
}
