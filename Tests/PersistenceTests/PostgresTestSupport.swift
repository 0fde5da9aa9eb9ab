import Foundation
import Logging
import Persistence

/// Where the test server is: the standard PG* variables, defaulting to the one `scripts/services` starts.
enum TestDatabase {
    static var connectionString: String {
        let environment = ProcessInfo.processInfo.environment
        let host = environment["PGHOST"] ?? "127.0.0.1"
        let port = environment["PGPORT"] ?? "55432"
        let user = environment["PGUSER"] ?? "postgres"
        let database = environment["PGDATABASE"] ?? "c2d"
        return "host=\(host) port=\(port) user=\(user) dbname=\(database)"
    }

    static let logger: Logger = {
        var logger = Logger(label: "persistence-tests")
        logger.logLevel = .warning
        return logger
    }()

    static func configuration(schema: String? = nil) -> PostgresConfiguration {
        var connectionString = connectionString
        if let schema { connectionString += " options='-c search_path=\(schema)'" }
        return PostgresConfiguration(connectionString: connectionString)
    }

    /// Runs `body` with a client whose `search_path` is a fresh schema, dropped afterwards.
    static func withSchema<T>(
        _ configure: (inout PostgresConfiguration) -> Void = { _ in },
        _ body: (PostgresClient, String) async throws -> T
    ) async throws -> T {
        let schema = "pq_test_" + UUID().uuidString.prefix(8).lowercased()
        let admin = PostgresClient(configuration: configuration(), logger: logger)
        try await admin.executeScript("CREATE SCHEMA \(schema)")
        var configuration = configuration(schema: schema)
        configure(&configuration)
        let client = PostgresClient(configuration: configuration, logger: logger)
        do {
            let value = try await body(client, schema)
            await client.shutdown()
            try await admin.executeScript("DROP SCHEMA \(schema) CASCADE")
            await admin.shutdown()
            return value
        } catch {
            await client.shutdown()
            try? await admin.executeScript("DROP SCHEMA \(schema) CASCADE")
            await admin.shutdown()
            throw error
        }
    }
}
