import Foundation
import Logging
import TestSupport
import Testing

@testable import Persistence

/// Tests against a real server (see ``TestDatabase``), one at a time, because one of them restarts the server.
@Suite("Postgres", .serialized)
struct PostgresIntegrationTests {}

extension PostgresIntegrationTests {
    @Suite("PostgresClient")
    struct ClientTests {
        @Test("every value type round-trips through a table")
        func roundTrip() async throws {
            try await TestDatabase.withSchema { client, _ in
                try await client.executeScript(
                    """
                    CREATE TABLE values_test (
                        id uuid PRIMARY KEY, t text, i bigint, small int, b boolean, d double precision,
                        ts timestamptz, j jsonb, raw bytea, tags text[]
                    )
                    """
                )
                let id = UUID()
                let text = "it's \"quoted\", back\\slash, ünïcødé 🚀, tab\t, newline\n"
                let date = Date(timeIntervalSince1970: 1_715_000_000.123456)
                let bytes: [UInt8] = [0, 1, 2, 0, 255, 0x5c, 0x78, 0]
                let tags: [String?] = ["plain", "with,comma", "with \"quote\"", nil, "NULL", "", "back\\slash", "{}"]
                let inserted = try await client.execute(
                    """
                    INSERT INTO values_test (id, t, i, small, b, d, ts, j, raw, tags)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                    """,
                    [
                        .uuid(id), .text(text), .int(Int64.min), .int(Int64(Int32.max)), .bool(true),
                        .double(-1.5e-300),
                        .timestamp(date), .json(#"{"k": ["v", 1, null], "s": "ü\"x"}"#), .bytea(bytes),
                        .textArray(tags),
                    ]
                )
                #expect(inserted == 1)

                let rows = try await client.query("SELECT * FROM values_test WHERE id = $1", [.uuid(id)])
                let row = try #require(rows.first)
                #expect(try row.uuid("id") == id)
                #expect(try row.string("t") == text)
                #expect(try row.int("i") == Int(Int64.min))
                #expect(try row.int("small") == Int(Int32.max))
                #expect(try row.bool("b") == true)
                #expect(try row.double("d") == -1.5e-300)
                #expect(abs(try row.date("ts").timeIntervalSince(date)) < 0.000_001)
                #expect(try row.string("j") == #"{"k": ["v", 1, null], "s": "ü\"x"}"#)
                #expect(try row.bytes("raw") == bytes)
                #expect(try row.optionalStringArray("tags") == tags)
                #expect(throws: PostgresError.self) { try row.stringArray("tags") }  // has a NULL element

                let maximum = try await client.query("SELECT $1::int8 AS v, $2 AS w", [.int(Int64.max), 42])
                #expect(try maximum[0].int("v") == Int(Int64.max))
                #expect(try maximum[0].string("w") == "42")
            }
        }

        @Test("NULLs decode as nil and fail required accessors")
        func nulls() async throws {
            try await TestDatabase.withSchema { client, _ in
                let rows = try await client.query(
                    """
                    SELECT $1::text AS t, $2::int8 AS i, $3::bool AS b, $4::uuid AS u, $5::timestamptz AS ts,
                           NULL::text[] AS a, NULL::float8 AS d, NULL::bytea AS raw
                    """,
                    [.null, .optional(nil as Int?), nil, .optional(nil as UUID?), .optional(nil as Date?)]
                )
                let row = try #require(rows.first)
                #expect(try row.optionalString("t") == nil)
                #expect(try row.optionalInt("i") == nil)
                #expect(try row.optionalBool("b") == nil)
                #expect(try row.optionalUUID("u") == nil)
                #expect(try row.optionalDate("ts") == nil)
                #expect(try row.optionalStringArray("a") == nil)
                #expect(try row.optionalDouble("d") == nil)
                #expect(try row.optionalBytes("raw") == nil)
                let error = try #require(throws: PostgresError.self) { try row.string("t") }
                #expect(error.code == .decoding)
                #expect(error.message.contains("\"t\""))
                #expect(throws: PostgresError.self) { try row.string("no_such_column") }
            }
        }

        @Test("unique violations and syntax errors are told apart")
        func errors() async throws {
            try await TestDatabase.withSchema { client, _ in
                try await client.executeScript(
                    "CREATE TABLE accounts (email text CONSTRAINT accounts_email_key UNIQUE)"
                )
                try await client.execute("INSERT INTO accounts (email) VALUES ($1)", ["secret@example.com"])
                let duplicate = try await #require(throws: PostgresError.self) {
                    try await client.execute("INSERT INTO accounts (email) VALUES ($1)", ["secret@example.com"])
                }
                #expect(duplicate.isUniqueViolation)
                #expect(duplicate.code == .server)
                #expect(duplicate.sqlState == "23505")
                #expect(duplicate.constraint == "accounts_email_key")
                #expect(!duplicate.isTransient)
                #expect(!duplicate.description.contains("secret"))

                let syntax = try await #require(throws: PostgresError.self) {
                    try await client.query("SELEKT 1")
                }
                #expect(syntax.code == .server)
                #expect(syntax.sqlState == "42601")
                #expect(!syntax.isUniqueViolation)

                let badInput = try await #require(throws: PostgresError.self) {
                    try await client.query("SELECT $1::uuid", ["not-a-uuid-secret"])
                }
                #expect(badInput.sqlState == "22P02")
                #expect(!badInput.message.contains("secret"))

                // The connection that saw the errors is still fine.
                let rows = try await client.query("SELECT count(*) AS n FROM accounts")
                #expect(try rows[0].int("n") == 1)
            }
        }

        @Test("withTransaction commits, and rolls back when the body throws")
        func transactionRollback() async throws {
            struct Boom: Error {}
            try await TestDatabase.withSchema { client, _ in
                try await client.executeScript("CREATE TABLE items (name text)")
                try await client.withTransaction { transaction in
                    try await transaction.execute("INSERT INTO items VALUES ($1)", ["kept"])
                }
                await #expect(throws: Boom.self) {
                    try await client.withTransaction { transaction in
                        try await transaction.execute("INSERT INTO items VALUES ($1)", ["dropped"])
                        throw Boom()
                    }
                }
                // A body that swallowed a server error cannot commit: COMMIT reports the rollback.
                let aborted = try await #require(throws: PostgresError.self) {
                    try await client.withTransaction { transaction in
                        try await transaction.execute("INSERT INTO items VALUES ($1)", ["also dropped"])
                        _ = try? await transaction.query("SELECT 1/0")
                    }
                }
                #expect(aborted.sqlState == "25P02")
                let rows = try await client.query("SELECT name FROM items")
                #expect(try rows.map { try $0.string("name") } == ["kept"])
            }
        }

        @Test("20 concurrent transactions complete on a pool of 4")
        func concurrentTransactions() async throws {
            try await TestDatabase.withSchema({ $0.maximumConnections = 4 }) { client, _ in
                try await client.executeScript("CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<20 {
                        group.addTask {
                            try await client.withTransaction { transaction in
                                _ = try await transaction.query("SELECT pg_sleep(0.02)")
                                try await transaction.execute("UPDATE counter SET n = n + 1")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let rows = try await client.query("SELECT n FROM counter")
                #expect(try rows[0].int("n") == 20)
            }
        }

        @Test("acquire times out while every connection is held")
        func acquireTimeout() async throws {
            try await TestDatabase.withSchema({
                $0.maximumConnections = 2
                $0.acquireTimeout = .milliseconds(300)
            }) { client, _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<2 {
                        group.addTask {
                            try await client.withTransaction { transaction in
                                _ = try await transaction.query("SELECT pg_sleep(1.5)")
                            }
                        }
                    }
                    try await Task.sleep(for: .milliseconds(300))  // let both holders start
                    let started = ContinuousClock.now
                    let error = try await #require(throws: PostgresError.self) {
                        try await client.query("SELECT 1")
                    }
                    let waited = ContinuousClock.now - started
                    #expect(error.code == .acquireTimeout)
                    #expect(waited >= .milliseconds(250) && waited < .seconds(1))
                    try await group.waitForAll()
                }
                // Once released, connections are available again.
                #expect(try await client.query("SELECT 1 AS one")[0].int("one") == 1)
            }
        }

        @Test("a statement beyond statement_timeout fails with 57014 and the connection stays usable")
        func statementTimeout() async throws {
            try await TestDatabase.withSchema({
                $0.maximumConnections = 1
                $0.statementTimeout = .milliseconds(200)
            }) { client, _ in
                let error = try await #require(throws: PostgresError.self) {
                    try await client.query("SELECT pg_sleep(2)")
                }
                #expect(error.sqlState == "57014")
                #expect(error.code == .timeout)
                #expect(!error.isTransient)
                let rows = try await client.query("SELECT pg_backend_pid() AS pid, 1 AS one")
                #expect(try rows[0].int("one") == 1)
            }
        }

        @Test("cancelling the task cancels the running statement")
        func taskCancellation() async throws {
            try await TestDatabase.withSchema({ $0.maximumConnections = 1 }) { client, _ in
                let started = ContinuousClock.now
                let task = Task { try await client.query("SELECT pg_sleep(5)") }
                try await Task.sleep(for: .milliseconds(300))
                task.cancel()
                await #expect(throws: CancellationError.self) { try await task.value }
                #expect(ContinuousClock.now - started < .seconds(3))
                #expect(try await client.query("SELECT 2 AS two")[0].int("two") == 2)
            }
        }

        @Test("a cached statement invalidated by a schema change is prepared again")
        func preparedStatementInvalidation() async throws {
            try await TestDatabase.withSchema({ $0.maximumConnections = 1 }) { client, _ in
                try await client.executeScript("CREATE TABLE evolving (a int); INSERT INTO evolving VALUES (1)")
                #expect(try await client.query("SELECT * FROM evolving")[0].int("a") == 1)
                try await client.executeScript("ALTER TABLE evolving ADD COLUMN b text DEFAULT 'x'")
                let row = try await client.query("SELECT * FROM evolving")[0]
                #expect(try row.string("b") == "x")
            }
        }

        // A statement already prepared on its connection is sent from the task and its results are collected by
        // SocketPoller's thread; each test below runs its statement once first, so that the second run takes that
        // path.

        @Test("a prepared statement sent from the task: results, errors, and a parameter of 8 MiB")
        func sentFromTask() async throws {
            try await TestDatabase.withSchema({ $0.maximumConnections = 1 }) { client, _ in
                try await client.executeScript("CREATE TABLE sent (id int primary key, body text)")
                let insert = "INSERT INTO sent (id, body) VALUES ($1, $2) RETURNING id, length(body) AS length"
                // 8 MiB is more than a loopback socket takes at once, so the rest is written when it can take more.
                let large = String(repeating: "x", count: 8 << 20)
                for id in 1...3 {
                    let row = try await client.query(insert, [.int(Int64(id)), .text(id == 3 ? large : "a")])[0]
                    #expect(try row.int("length") == (id == 3 ? 8 << 20 : 1))
                }
                let duplicate = try await #require(throws: PostgresError.self) {
                    try await client.query(insert, [.int(2), .text("b")])
                }
                #expect(duplicate.isUniqueViolation)
                let rows = try await client.query("SELECT count(*) AS n FROM sent WHERE id > $1", [.int(0)])
                #expect(try rows[0].int("n") == 3)
                // In a transaction, the failed statement's error ends it, and it is rolled back.
                let failed = await #expect(throws: PostgresError.self) {
                    try await client.withTransaction { transaction in
                        _ = try await transaction.query(insert, [.int(4), .text("c")])
                        _ = try await transaction.query(insert, [.int(4), .text("c")])
                    }
                }
                #expect(failed?.isUniqueViolation == true)
                let after = try await client.query("SELECT count(*) AS n FROM sent WHERE id > $1", [.int(0)])
                #expect(try after[0].int("n") == 3)
            }
        }

        @Test("a prepared statement sent from the task: timeout, cancellation, overlapping calls, a killed backend")
        func sentFromTaskFaults() async throws {
            try await TestDatabase.withSchema({
                $0.maximumConnections = 1
                $0.statementTimeout = .milliseconds(500)
            }) { client, _ in
                let sleep = "SELECT pg_sleep($1) AS slept, pg_backend_pid() AS pid"
                _ = try await client.query(sleep, [.double(0)])
                let timeout = try await #require(throws: PostgresError.self) {
                    try await client.query(sleep, [.double(2)])
                }
                #expect(timeout.code == .timeout)

                let started = ContinuousClock.now
                let task = Task { try await client.query(sleep, [.double(0.4)]) }
                try await Task.sleep(for: .milliseconds(100))
                task.cancel()
                await #expect(throws: CancellationError.self) { try await task.value }
                #expect(ContinuousClock.now - started < .milliseconds(400))

                // libpq cannot run two statements at once on one connection: the later call is refused. (In a
                // transaction block, statements run on the connection's thread, one after the other.)
                try await client.withSession { session in
                    _ = try await session.query(sleep, [.double(0)])
                    async let first = session.query(sleep, [.double(0.2)])
                    try await Task.sleep(for: .milliseconds(50))
                    let overlapping = try await #require(throws: PostgresError.self) {
                        try await session.query("SELECT 1 AS one")
                    }
                    #expect(overlapping.code == .invalidArgument)
                    _ = try await first
                }

                let pid = try await client.query(sleep, [.double(0)])[0].int("pid")
                let killer = PostgresClient(configuration: client.configuration, logger: client.logger)
                let victim = Task { try await client.query(sleep, [.double(0.45)]) }
                try await Task.sleep(for: .milliseconds(100))
                _ = try await killer.query("SELECT pg_terminate_backend($1::int)", [.int(Int64(pid))])
                await killer.shutdown()
                let lost = await #expect(throws: PostgresError.self) { try await victim.value }
                #expect(lost?.code == .connectionLost)
                #expect(try await client.query("SELECT 3 AS three")[0].int("three") == 3)
            }
        }

        /// Restarting the shared server would break other test targets running in the same process, so this one
        /// runs only when `C2D_TEST_POSTGRES_RESTART=1` (e.g. `swift test --filter PersistenceTests`).
        @Test(
            "after a server restart calls fail retriably, then succeed on fresh connections",
            .enabled(
                if: ProcessInfo.processInfo.environment["C2D_TEST_POSTGRES_RESTART"] == "1",
                "set C2D_TEST_POSTGRES_RESTART=1 to restart Postgres in tests")
        )
        func serverRestart() async throws {
            try await TestDatabase.withSchema({
                $0.maximumConnections = 3
                $0.minimumConnections = 3
            }) { client, _ in
                // Warm several connections so that stale idle ones exist after the restart.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<3 { group.addTask { _ = try await client.query("SELECT pg_sleep(0.1)") } }
                    try await group.waitForAll()
                }
                let inFlight = Task { try await client.query("SELECT pg_sleep(20)") }
                try await Task.sleep(for: .milliseconds(300))
                try await TestEnvironment.services("stop", "postgres")
                let inFlightError = await #expect(throws: PostgresError.self) { try await inFlight.value }
                #expect(inFlightError?.isTransient == true)
                #expect(inFlightError?.code == .connectionLost)

                // While the server is down, calls fail retriably too.
                let downError = await #expect(throws: PostgresError.self) { try await client.query("SELECT 1") }
                #expect(downError?.isTransient == true)

                try await TestEnvironment.services("start", "postgres")
                // The same client recovers: stale idle connections are dropped, new ones opened.
                for _ in 0..<5 {
                    #expect(try await client.query("SELECT 1 AS one")[0].int("one") == 1)
                }
                try await client.withTransaction { transaction in
                    _ = try await transaction.query("SELECT 1")
                }
            }
        }
    }

}
