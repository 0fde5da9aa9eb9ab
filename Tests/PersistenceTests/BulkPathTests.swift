import Domain
import Foundation
import TestSupport
import Testing

@testable import Persistence

@Suite("COPY text format")
struct CopyFormatTests {
    @Test("escapes backslash, tab, newline and carriage return; NULL is \\N; unicode passes through")
    func encoding() throws {
        let data = try PostgresCopy.encode(
            rows: [
                [.text("a\tb\nc\rd\\e"), .null, .int(-42)],
                [.text("ünï 🚀"), .text("\\N"), .json(#"{"k":"v\"\n"}"#)],
            ],
            columnCount: 3)
        let expected = "a\\tb\\nc\\rd\\\\e\t\\N\t-42\n" + "ünï 🚀\t\\\\N\t{\"k\":\"v\\\\\"\\\\n\"}\n"
        #expect(String(decoding: data, as: UTF8.self) == expected)
    }

    @Test("uuids are written in canonical lowercase form")
    func uuids() throws {
        let uuid = try #require(UUID(uuidString: "0123ABCD-4567-89EF-0A1B-2C3D4E5F6071"))
        let data = try PostgresCopy.encode(rows: [[.uuid(uuid), .text("x")]], columnCount: 2)
        #expect(String(decoding: data, as: UTF8.self) == "0123abcd-4567-89ef-0a1b-2c3d4e5f6071\tx\n")
    }

    @Test("a row with the wrong number of values is refused before anything is sent")
    func rowWidth() {
        #expect(throws: PostgresError.self) {
            try PostgresCopy.encode(rows: [[.int(1), .int(2)], [.int(3)]], columnCount: 2)
        }
    }

    @Test(
        "table and column names must be plain lowercase identifiers",
        arguments: [
            ("jobs", ["id"], true), ("c2d.jobs", ["id", "created_at"], true), ("jobs; drop table x", ["id"], false),
            ("Jobs", ["id"], false), ("jobs", ["id\""], false), ("a.b.c", ["id"], false), ("jobs", [], false),
            ("", ["id"], false), ("jobs", ["1st"], false),
        ])
    func identifiers(table: String, columns: [String], valid: Bool) {
        let statement = try? PostgresCopy.statement(table: table, columns: columns)
        #expect((statement != nil) == valid)
        if table == "c2d.jobs" {
            #expect(statement == #"COPY "c2d"."jobs" ("id", "created_at") FROM STDIN"#)
        }
    }
}

extension PostgresIntegrationTests {
    @Suite("Bulk path, idempotency and retention")
    struct BulkPathTests {
        // MARK: COPY

        @Test("COPY round-trips awkward values: tabs, newlines, backslashes, NULL, unicode, jsonb, bytea, arrays")
        func copyRoundTrip() async throws {
            try await TestDatabase.withSchema { client, _ in
                try await client.executeScript(
                    """
                    CREATE TABLE copy_test (
                        n int PRIMARY KEY, t text, j jsonb, b bytea, tags text[], u uuid, ts timestamptz,
                        flag boolean, d double precision
                    )
                    """)
                let texts: [String?] = [
                    "tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\.", "", nil,
                    "ünïcødé 🚀 日本語", "trailing backslash\\", "\t\n\\\r", "quote ' and \" both",
                ]
                let document = #"{"s": "tab\t nl\n bs\\ quote\" ü", "n": [1, null, true], "e": {}}"#
                let bytes: [UInt8] = [0, 9, 10, 13, 0x5C, 0xFF, 0x4E]
                let tags: [String?] = ["a\tb", "c\nd", "back\\slash", nil, "NULL", "", "{}", "ü"]
                let uuid = UUID()
                let date = Date(timeIntervalSince1970: 1_715_000_000.123456)
                let rows: [[PostgresValue]] = texts.enumerated().map { index, text in
                    [
                        .int(index), .optional(text), index % 2 == 0 ? .json(document) : .null, .bytea(bytes),
                        .textArray(tags), .uuid(uuid), .timestamp(date), .bool(index % 3 == 0), .double(-1.5e-7),
                    ]
                }
                let copied = try await client.withTransaction { tx in
                    try await tx.copy(
                        into: "copy_test", columns: ["n", "t", "j", "b", "tags", "u", "ts", "flag", "d"], rows: rows)
                }
                #expect(copied == texts.count)

                let read = try await client.query(
                    "SELECT n, t, j = $1::jsonb AS same_json, j IS NULL AS no_json, b, tags, u, ts, flag, d "
                        + "FROM copy_test ORDER BY n",
                    [.json(document)])
                #expect(read.count == texts.count)
                for (index, row) in read.enumerated() {
                    #expect(try row.optionalString("t") == texts[index], "row \(index)")
                    if index % 2 == 0 {
                        #expect(try row.bool("same_json"), "row \(index)")
                    } else {
                        #expect(try row.bool("no_json"), "row \(index)")
                    }
                    #expect(try row.bytes("b") == bytes)
                    #expect(try row.optionalStringArray("tags") == tags)
                    #expect(try row.uuid("u") == uuid)
                    #expect(abs(try row.date("ts").timeIntervalSince(date)) < 0.000_001)
                    #expect(try row.bool("flag") == (index % 3 == 0))
                    #expect(try row.double("d") == -1.5e-7)
                }
            }
        }

        @Test("a failing COPY (unique violation) reports its SQLSTATE and leaves nothing behind")
        func copyFailure() async throws {
            try await TestDatabase.withSchema { client, _ in
                try await client.executeScript("CREATE TABLE copy_unique (n int PRIMARY KEY, t text)")
                let rows: [[PostgresValue]] = (0..<5000).map { [.int($0), .text("row \($0)")] } + [[.int(7), "dup"]]
                let error = await #expect(throws: PostgresError.self) {
                    try await client.withTransaction { tx in
                        try await tx.copy(into: "copy_unique", columns: ["n", "t"], rows: rows)
                    }
                }
                #expect(error?.isUniqueViolation == true)
                #expect(try await client.query("SELECT count(*) AS n FROM copy_unique")[0].int("n") == 0)
                // The connection is still usable afterwards.
                try await client.withTransaction { tx in
                    try await tx.copy(into: "copy_unique", columns: ["n", "t"], rows: [[.int(1), .null]])
                }
                #expect(try await client.query("SELECT count(*) AS n FROM copy_unique")[0].int("n") == 1)
            }
        }

        @Test("statement_timeout bounds a COPY")
        func copyTimeout() async throws {
            try await TestDatabase.withSchema { client, _ in
                try await client.executeScript(
                    """
                    CREATE TABLE copy_slow (n int);
                    CREATE FUNCTION copy_slow_row() RETURNS trigger LANGUAGE plpgsql AS
                        $$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$;
                    CREATE TRIGGER copy_slow BEFORE INSERT ON copy_slow FOR EACH ROW EXECUTE FUNCTION copy_slow_row();
                    """)
                let error = await #expect(throws: PostgresError.self) {
                    try await client.withTransaction { tx in
                        try await tx.executeScript("SET LOCAL statement_timeout = 200")
                        try await tx.copy(into: "copy_slow", columns: ["n"], rows: (0..<100).map { [.int($0)] })
                    }
                }
                #expect(error?.code == .timeout)
            }
        }

        // MARK: Batch insert

        @Test("insertBatch writes 10,000 jobs with their events in one transaction, waiting for admission")
        func batchInsert() async throws {
            try await Self.withStore { store, environment in
                var jobs = (0..<10_000).map { _ in Self.job(environment) }
                jobs[42].priority = 7
                let batchID = UUID()
                try await store.insertBatch(
                    jobs, batchID: batchID, trace: RequestTrace(requestID: "req-1", traceparent: "00-aa-bb-01"))
                let counts = try await store.client.query(
                    """
                    SELECT (SELECT count(*) FROM jobs WHERE batch_id = $1) AS jobs,
                        (SELECT count(*) FROM job_events e JOIN jobs j ON j.id = e.job_id WHERE j.batch_id = $1)
                            AS events,
                        (SELECT count(*) FROM jobs WHERE batch_id = $1 AND admitted_at IS NULL
                            AND request_id = 'req-1' AND traceparent = '00-aa-bb-01') AS waiting
                    """,
                    [.uuid(batchID)])
                #expect(try counts[0].int("jobs") == 10_000)
                #expect(try counts[0].int("events") == 10_000)
                #expect(try counts[0].int("waiting") == 10_000)
                let sample = try #require(try await store.job(jobs[4321].id))
                #expect(sample.workflow == jobs[4321].workflow)
                #expect(sample.status == .queued)
                #expect(try await store.job(jobs[42].id)?.priority == 7)
            }
        }

        @Test("insertBatch writes the workflow JSON it is given (the validator's), across chunks, in job order")
        func batchInsertEncoded() async throws {
            try await Self.withStore { store, environment in
                let count = PostgresJobStore.batchChunkSize + 7
                let jobs = (0..<count).map { _ in Self.job(environment) }
                // Distinct JSON per job (a key the workflow does not have): shows which text was written, and where.
                let json = jobs.indices.map { #"{"stages":[],"mark":\#($0)}"# }
                try await store.insertBatch(jobs, workflowJSON: json, batchID: nil)
                let rows = try await store.client.query(
                    "SELECT id, (workflow ->> 'mark')::int AS mark FROM jobs WHERE id = any($1::text[]::uuid[])",
                    [.textArray(jobs.map(\.id.uuid.uuidString))])
                let marks = Dictionary(uniqueKeysWithValues: try rows.map { (try $0.uuid("id"), try $0.int("mark")) })
                #expect(marks.count == count)
                #expect(jobs.indices.allSatisfy { marks[jobs[$0].id.uuid] == $0 })
                // A list of the wrong length is not trusted: the store encodes the workflows itself.
                let more = (0..<3).map { _ in Self.job(environment) }
                try await store.insertBatch(more, workflowJSON: ["{}"], batchID: nil)
                #expect(try await store.job(more[2].id)?.workflow == more[2].workflow)
            }
        }

        @Test("insertBatch is all or nothing: a duplicate id in the batch writes nothing")
        func batchAllOrNothing() async throws {
            try await Self.withStore { store, environment in
                var jobs = (0..<10_000).map { _ in Self.job(environment) }
                jobs[9_999].id = jobs[17].id
                let batchID = UUID()
                let error = await #expect(throws: PostgresError.self) {
                    try await store.insertBatch(jobs, batchID: batchID)
                }
                #expect(error?.isUniqueViolation == true)
                let rows = try await store.client.query(
                    "SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM job_events) AS events")
                #expect(try rows[0].int("jobs") == 0)
                #expect(try rows[0].int("events") == 0)
            }
        }

        // MARK: Idempotency

        @Test("an idempotent insert returns the existing job for the same owner and key")
        func idempotentInsert() async throws {
            try await Self.withStore { store, environment in
                let first = Self.job(environment)
                guard case .inserted(let createdEpoch) = try await store.insert(first, idempotencyKey: "key-1")
                else { throw TestFailure("the first insert did not insert") }
                #expect(Double(createdEpoch) != nil)

                let again = Self.job(environment)
                guard case .existing(let existing) = try await store.insert(again, idempotencyKey: "key-1")
                else { throw TestFailure("the second insert was not recognised") }
                #expect(existing.id == first.id)
                #expect(try await store.job(again.id) == nil)

                var otherOwner = Self.job(environment)
                otherOwner.owner = "someone-else"
                guard case .inserted = try await store.insert(otherOwner, idempotencyKey: "key-1")
                else { throw TestFailure("the same key of another owner must insert") }

                // Concurrent submissions with one key: exactly one job.
                let candidates = (0..<8).map { _ in Self.job(environment) }
                let outcomes = try await withThrowingTaskGroup(of: JobID.self) { group in
                    for candidate in candidates {
                        group.addTask {
                            switch try await store.insert(candidate, idempotencyKey: "key-2") {
                            case .inserted: candidate.id
                            case .existing(let job): job.id
                            }
                        }
                    }
                    return try await group.reduce(into: [JobID]()) { $0.append($1) }
                }
                #expect(Set(outcomes).count == 1)
                let stored = try await store.client.query(
                    "SELECT count(*) AS n FROM jobs WHERE idempotency_key = 'key-2'")
                #expect(try stored[0].int("n") == 1)
                #expect(try await store.events(of: outcomes[0]).count == 1)
            }
        }

        @Test("a plain insert writes the job and its first event; a duplicate id writes nothing")
        func plainInsert() async throws {
            try await Self.withStore { store, environment in
                let job = Self.job(environment)
                guard case .inserted = try await store.insert(job) else {
                    throw TestFailure("a plain insert must insert")
                }
                #expect(try await store.job(job.id)?.workflow == job.workflow)
                let events = try await store.events(of: job.id)
                #expect(events.map(\.status) == [.queued])
                #expect(events.map(\.attempt) == [0])

                var duplicate = Self.job(environment)
                duplicate.id = job.id
                let error = await #expect(throws: PostgresError.self) { try await store.insert(duplicate) }
                #expect(error?.isUniqueViolation == true)
                #expect(try await store.events(of: job.id).count == 1)
            }
        }

        @Test("concurrent plain inserts share statements; a duplicate among them fails alone")
        func coalescedInserts() async throws {
            try await Self.withStore { store, environment in
                let existing = Self.job(environment)
                try await store.insert(existing)
                // Far more callers than write slots, so most wait and go out with others.
                var jobs = (0..<300).map { index in
                    var job = Self.job(environment)
                    job.owner = "owner-\(index % 7)"
                    job.priority = index % 10
                    return job
                }
                jobs[150].id = existing.id
                let outcomes = await withTaskGroup(of: (Int, Result<String, any Error>).self) { group in
                    for (index, job) in jobs.enumerated() {
                        group.addTask {
                            do {
                                guard case .inserted(let createdEpoch) = try await store.insert(job) else {
                                    return (index, .failure(TestFailure("a plain insert must insert")))
                                }
                                return (index, .success(createdEpoch))
                            } catch {
                                return (index, .failure(error))
                            }
                        }
                    }
                    return await group.reduce(into: [Int: Result<String, any Error>]()) { $0[$1.0] = $1.1 }
                }
                for (index, job) in jobs.enumerated() where index != 150 {
                    let createdEpoch = try #require(try outcomes[index]?.get())
                    let stored = try #require(try await store.job(job.id))
                    #expect(stored.owner == job.owner && stored.priority == job.priority)
                    #expect(abs(try #require(Double(createdEpoch)) - job.createdAt.timeIntervalSince1970) < 0.001)
                }
                guard case .failure(let error as PostgresError) = outcomes[150] else {
                    throw TestFailure("the duplicate id must fail with a Postgres error")
                }
                #expect(error.isUniqueViolation)
                let counts = try await store.client.query(
                    "SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM job_events) AS events")
                #expect(try counts[0].int("jobs") == 300)
                #expect(try counts[0].int("events") == 300)
                // Rows written by one statement share its transaction id.
                let transactions = try await store.client.query("SELECT count(DISTINCT xmin::text) AS n FROM jobs")
                #expect(try transactions[0].int("n") < 100)
            }
        }

        @Test("concurrent inserts under shared idempotency keys: one job per key, and every caller gets it")
        func coalescedIdempotentInserts() async throws {
            try await Self.withStore { store, environment in
                // 240 callers over 40 keys: calls with one key often share a statement.
                let candidates = (0..<240).map { index in (key: "key-\(index % 40)", job: Self.job(environment)) }
                let outcomes = try await withThrowingTaskGroup(of: (String, JobID).self) { group in
                    for candidate in candidates {
                        group.addTask {
                            switch try await store.insert(candidate.job, idempotencyKey: candidate.key) {
                            case .inserted: (candidate.key, candidate.job.id)
                            case .existing(let job): (candidate.key, job.id)
                            }
                        }
                    }
                    return try await group.reduce(into: [String: Set<JobID>]()) { $0[$1.0, default: []].insert($1.1) }
                }
                #expect(outcomes.count == 40)
                #expect(outcomes.values.allSatisfy { $0.count == 1 })
                let counts = try await store.client.query(
                    "SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM job_events) AS events")
                #expect(try counts[0].int("jobs") == 40)
                #expect(try counts[0].int("events") == 40)
            }
        }

        @Test("deleting jobs deletes their events, whatever deletes them (the cascade without a foreign key)")
        func deletingJobsDeletesEvents() async throws {
            try await Self.withStore { store, environment in
                let jobs = (0..<3).map { _ in Self.job(environment) }
                for job in jobs { try await store.insert(job) }
                try await store.insertBatch((0..<5).map { _ in Self.job(environment) }, batchID: nil)
                try await store.client.execute(
                    "DELETE FROM jobs WHERE id = any($1::text[]::uuid[])",
                    [.textArray(jobs.prefix(2).map(\.id.uuid.uuidString))])
                #expect(try await store.events(of: jobs[0].id).isEmpty)
                #expect(try await store.events(of: jobs[1].id).isEmpty)
                #expect(try await store.events(of: jobs[2].id).count == 1)
                try await store.removeEnvironment(environment.id)
                let left = try await store.client.query("SELECT count(*) AS n FROM job_events")
                #expect(try left[0].int("n") == 0)
            }
        }

        // MARK: Helpers

        static func withStore(_ body: (PostgresJobStore, ComputeEnvironment) async throws -> Void) async throws {
            try await TestDatabase.withSchema { client, _ in
                try await TestDatabase.migrate(client)
                let store = PostgresJobStore(client: client)
                let environment = ComputeEnvironment(id: "bulk")
                try await store.upsertEnvironments([environment])
                try await body(store, environment)
            }
        }

        static func job(_ environment: ComputeEnvironment) -> Job {
            Job(
                id: JobID(), environment: environment.id, owner: "tester",
                workflow: Workflow(stages: [
                    .init(
                        input: [.init(id: "did:op:1", url: ["https://example.org/a\tb.csv"])],
                        algorithm: .init(
                            rawcode: "print('tab\\t, newline\\n, ü')\n",
                            container: .init(entrypoint: "python3 $ALGO")))
                ]))
        }
    }
}
