import Foundation
import TestSupport
import Testing

@testable import Persistence

extension PostgresIntegrationTests {
    @Suite("MigrationRunner")
    struct MigrationRunnerTests {
        @Test("applies pending migrations once, in order; a second run is a no-op; a changed file is rejected")
        func applyTwiceAndReject() async throws {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("pq-migrations-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let first = "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);\n"
            try first.save("0001_widgets.sql", in: directory)
            try "ALTER TABLE widgets ADD COLUMN size int; INSERT INTO widgets VALUES (1, 'a', 2);\n"
                .save("0002_size.sql", in: directory)
            try "not a migration".save("README.md", in: directory)

            try await TestDatabase.withSchema { client, _ in
                let runner = MigrationRunner(client: client, directory: directory, logger: TestDatabase.logger)
                #expect(try await runner.apply() == ["0001", "0002"])
                #expect(try await runner.apply() == [])
                let recorded = try await client.query(
                    "SELECT version, name, checksum FROM schema_migrations ORDER BY 1"
                )
                #expect(try recorded.map { try $0.string("name") } == ["widgets", "size"])
                #expect(try recorded[0].string("checksum").count == 64)
                #expect(try await client.query("SELECT size FROM widgets")[0].int("size") == 2)

                // A third migration is picked up alone.
                try "CREATE INDEX widgets_name ON widgets (name);"
                    .save("0003_index.sql", in: directory)
                #expect(try await runner.apply() == ["0003"])

                // Editing an applied migration is refused, naming the file.
                try (first + "-- edited\n")
                    .save("0001_widgets.sql", in: directory)
                let error = try await #require(throws: MigrationError.self) { try await runner.apply() }
                #expect(error.message.contains("0001_widgets.sql"))
            }
        }

        @Test("concurrent runners apply each migration exactly once; a failing migration leaves no trace")
        func concurrentRunnersAndFailure() async throws {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("pq-migrations-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            try "CREATE TABLE once (id int); INSERT INTO once VALUES (1);"
                .save("0001_once.sql", in: directory)

            try await TestDatabase.withSchema { client, _ in
                let runner = MigrationRunner(client: client, directory: directory, logger: TestDatabase.logger)
                let results = try await withThrowingTaskGroup(of: [String].self) { group in
                    for _ in 0..<4 { group.addTask { try await runner.apply() } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(results.flatMap { $0 } == ["0001"])
                #expect(try await client.query("SELECT count(*) AS n FROM once")[0].int("n") == 1)

                try "CREATE TABLE half (id int); SELEKT broken;"
                    .save("0002_broken.sql", in: directory)
                let error = try await #require(throws: PostgresError.self) { try await runner.apply() }
                #expect(error.sqlState == "42601")
                let leftovers = try await client.query("SELECT to_regclass('half') IS NULL AS gone")
                #expect(try leftovers[0].bool("gone"))
                #expect(try await client.query("SELECT count(*) AS n FROM schema_migrations")[0].int("n") == 1)
            }
        }

        @Test("a no-transaction migration runs a concurrent index drop once, also under concurrent runners")
        func outsideTransaction() async throws {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("pq-migrations-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            try "CREATE TABLE gadgets (id int, name text); CREATE INDEX gadgets_name ON gadgets (name);"
                .save("0001_gadgets.sql", in: directory)
            // Inside a transaction block Postgres refuses CONCURRENTLY (25001): this only passes outside one.
            try "\(MigrationRunner.noTransactionMarker)\n-- why\nDROP INDEX CONCURRENTLY IF EXISTS gadgets_name;\n"
                .save("0002_drop_name.sql", in: directory)

            try await TestDatabase.withSchema { client, _ in
                let runner = MigrationRunner(client: client, directory: directory, logger: TestDatabase.logger)
                let results = try await withThrowingTaskGroup(of: [String].self) { group in
                    for _ in 0..<4 { group.addTask { try await runner.apply() } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(results.flatMap { $0 }.sorted() == ["0001", "0002"])
                let index = try await client.query("SELECT to_regclass('gadgets_name') IS NULL AS gone")
                #expect(try index[0].bool("gone"))
                #expect(try await client.query("SELECT count(*) AS n FROM schema_migrations")[0].int("n") == 2)
                // The session lock is released: a transactional migration after it still applies.
                try "ALTER TABLE gadgets ADD COLUMN size int;".save("0003_size.sql", in: directory)
                #expect(try await runner.apply() == ["0003"])

                // Died after the drop, before the bookkeeping row: the next run applies it again, harmlessly.
                _ = try await client.execute("DELETE FROM schema_migrations WHERE version = '0002'")
                #expect(try await runner.apply() == ["0002"])
            }
        }

        @Test("discovery sorts by numeric version and rejects duplicates")
        func discovery() throws {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("pq-migrations-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            for name in ["0010_b.sql", "0002_a.sql", "notes.sql", "0003.sql", "x_y.sql"] {
                try "".save(name, in: directory)
            }
            #expect(try MigrationRunner.discover(in: directory).map(\.version) == ["0002", "0010"])
            try "".save("2_dup.sql", in: directory)
            #expect(throws: MigrationError.self) { try MigrationRunner.discover(in: directory) }
        }
    }
}

extension String {
    fileprivate func save(_ fileName: String, in directory: URL) throws {
        try write(to: directory.appendingPathComponent(fileName), atomically: true, encoding: .utf8)
    }
}
