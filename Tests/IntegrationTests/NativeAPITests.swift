import Foundation
import NIOHTTP1
import Persistence
import Testing

/// The native API beyond single jobs: idempotent create, listing with filters and keyset paging, batch create,
/// environments and readiness — against the real `c2d` binary and real services.
@Suite("Native API", .serialized)
struct NativeAPITests {
    @Test("a retry with the same Idempotency-Key returns the same job and writes one row")
    func idempotentRetry() async throws {
        try await Deployment.with() { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            // Keys are scoped by owner, and the database outlives test runs: a fresh owner per run.
            var job = deployment.jobRequest(code: "print(1)")
            job["owner"] = "idempotent-\(UUID())"
            let body = try JSONSerialization.data(withJSONObject: job)
            func create(key: String) async throws -> Deployment.HTTPResult {
                try await deployment.request(
                    .POST, "/v1/jobs", body: body,
                    headers: ["content-type": "application/json", "idempotency-key": key])
            }
            let first = try await create(key: "order-42")
            #expect(first.status == 201, "\(first.text)")
            let retry = try await create(key: "order-42")
            #expect(retry.status == 200, "\(retry.text)")
            let id = try #require(first.json["id"] as? String)
            #expect(retry.json["id"] as? String == id)
            #expect(try await deployment.jobCount() == 1)
            let events = try await deployment.postgres.query(
                "select count(*) as n from job_events e join jobs j on j.id = e.job_id where j.environment = $1",
                [.text(deployment.environmentID)])[0].int("n")
            #expect(events == 1, "the retry wrote nothing new")

            // Another key is another job; a key that is too long is refused.
            #expect(try await create(key: "order-43").status == 201)
            let tooLong = try await create(key: String(repeating: "k", count: 201))
            #expect(tooLong.status == 400)
            #expect(tooLong.json["code"] as? String == "invalid_idempotency_key")
            #expect(try await deployment.jobCount() == 2)
        }
    }

    @Test("listing walks every matching job exactly once, newest first, with filters and keyset paging")
    func listPagination() async throws {
        try await Deployment.with() { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let owners = ["alice", "bob"]
            var created: [String: [String]] = [:]
            for index in 0..<23 {
                var request = deployment.jobRequest(code: "print(\(index))")
                let owner = owners[index % 3 == 0 ? 1 : 0]
                request["owner"] = owner
                created[owner, default: []].append(try await deployment.submit(request))
            }
            let batch = try await deployment.post(
                "/v1/batches",
                json: [
                    "environment": deployment.environmentID, "owner": "alice",
                    "jobs": (0..<7).map { _ in ["workflow": deployment.jobRequest(code: "print(1)")["workflow"]!] },
                ])
            #expect(batch.status == 201, "\(batch.text)")
            let batchID = try #require(batch.json["batchId"] as? String)
            created["alice", default: []] += batch.json["jobs"] as? [String] ?? []

            func walk(_ filters: String, limit: Int) async throws -> [[String: Any]] {
                var jobs: [[String: Any]] = []
                var cursor: String?
                var pages = 0
                repeat {
                    var path = "/v1/jobs?\(filters)&limit=\(limit)"
                    if let cursor { path += "&cursor=\(cursor)" }
                    let page = try await deployment.get(path)
                    #expect(page.status == 200, "\(page.text)")
                    let rows = page.json["jobs"] as? [[String: Any]] ?? []
                    #expect(rows.count <= limit)
                    jobs += rows
                    cursor = page.json["nextCursor"] as? String
                    pages += 1
                } while cursor != nil && pages < 100
                return jobs
            }
            let environment = "environment=\(deployment.environmentID)"
            let all = try await walk(environment, limit: 4)
            let allIDs = all.compactMap { $0["id"] as? String }
            #expect(allIDs.count == 30)
            #expect(Set(allIDs) == Set(created.values.joined()))
            // Newest first.
            let dates = all.compactMap { $0["dateCreated"] as? String }
            #expect(dates == dates.sorted(by: >))

            let alice = try await walk("\(environment)&owner=alice&status=1", limit: 5)
            #expect(alice.compactMap { $0["id"] as? String }.sorted() == created["alice", default: []].sorted())
            #expect(alice.allSatisfy { $0["owner"] as? String == "alice" })
            let bob = try await walk("\(environment)&owner=bob", limit: 50)
            #expect(bob.count == created["bob", default: []].count)
            let inBatch = try await walk("batch=\(batchID)", limit: 3)
            #expect(Set(inBatch.compactMap { $0["id"] as? String }) == Set(batch.json["jobs"] as? [String] ?? []))
            #expect(try await walk("\(environment)&status=70", limit: 10).isEmpty)

            for (query, code) in [
                ("cursor=not-a-cursor", "invalid_cursor"),
                ("cursor=\(Data("1:x".utf8).base64EncodedString())", "invalid_cursor"),
                ("status=abc", "invalid_status"), ("status=999", "invalid_status"), ("limit=0", "invalid_limit"),
                ("limit=501", "invalid_limit"), ("batch=nope", "invalid_batch_id"),
            ] {
                let response = try await deployment.get("/v1/jobs?\(query)")
                #expect(response.status == 400, "\(query): \(response.status) \(response.text)")
                #expect(response.json["code"] as? String == code, "\(query): \(response.text)")
            }
        }
    }

    @Test("a batch with invalid items writes nothing and names each item")
    func invalidBatch() async throws {
        try await Deployment.with() { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            var jobs: [Any] = (0..<5).map { _ in ["workflow": deployment.jobRequest(code: "print(1)")["workflow"]!] }
            var bad = deployment.jobRequest(code: "print(1)")["workflow"] as! [String: Any]
            var stages = bad["stages"] as! [[String: Any]]
            stages[0]["input"] = [["id": "d", "url": "ftp://example.org/x"]]
            bad["stages"] = stages
            jobs[2] = ["workflow": bad]
            jobs[4] = ["workflow": ["stages": "not a list"]]
            let response = try await deployment.post(
                "/v1/batches", json: ["environment": deployment.environmentID, "jobs": jobs])
            #expect(response.status == 400, "\(response.text)")
            #expect(response.json["code"] as? String == "invalid_batch")
            #expect((response.json["message"] as? String ?? "").isEmpty == false)
            let errors = response.json["errors"] as? [[String: Any]] ?? []
            #expect(errors.map { $0["index"] as? Int } == [2, 4], "\(response.text)")
            #expect(errors.first?["code"] as? String == "invalid_input_url")
            #expect(errors.last?["code"] as? String == "invalid_field")
            #expect(try await deployment.jobCount() == 0)

            let empty = try await deployment.post(
                "/v1/batches", json: ["environment": deployment.environmentID, "jobs": [Any]()])
            #expect(empty.status == 400)
            let unknown = try await deployment.post("/v1/batches", json: ["environment": "nowhere", "jobs": jobs])
            #expect(unknown.json["code"] as? String == "unknown_environment")
        }
    }

    @Test("a batch over the job limit answers 413 and writes nothing")
    func batchOverLimit() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_MAX_BATCH_JOBS": "3"]) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let jobs = (0..<4).map { _ in ["workflow": deployment.jobRequest(code: "print(1)")["workflow"]!] }
            let response = try await deployment.post(
                "/v1/batches", json: ["environment": deployment.environmentID, "jobs": jobs])
            #expect(response.status == 413, "\(response.text)")
            #expect(response.json["code"] as? String == "batch_too_large")
            #expect(try await deployment.jobCount() == 0)
        }
    }

    @Test("a valid batch of 200 jobs is accepted in one request, published, and runs to completion")
    func batchOf200() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_WORKER_SLOTS": "8", "LOG_LEVEL": "info"]) { deployment in
            try await deployment.startDev()
            let jobs = (0..<200).map { _ in ["workflow": deployment.jobRequest(code: "print('ran')")["workflow"]!] }
            let response = try await deployment.post(
                "/v1/batches", json: ["environment": deployment.environmentID, "owner": "batcher", "jobs": jobs])
            #expect(response.status == 201, "\(response.text)")
            let ids = response.json["jobs"] as? [String] ?? []
            #expect(ids.count == 200)
            #expect(Set(ids).count == 200)
            let batchID = try #require(response.json["batchId"] as? String)
            let rows = try await deployment.postgres.query(
                "select count(*) as n from jobs where batch_id = $1::uuid and owner = 'batcher'", [.text(batchID)])
            #expect(try rows[0].int("n") == 200)

            let deadline = ContinuousClock.now + .seconds(300)
            var finished = 0
            while ContinuousClock.now < deadline {
                finished = try await deployment.postgres.query(
                    "select count(*) as n from jobs where batch_id = $1::uuid and outcome = 'succeeded'",
                    [.text(batchID)])[0].int("n")
                if finished == 200 { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(finished == 200, "\(deployment.logs)")
        }
    }

    @Test("environments lists the configured ones, and readyz answers 200 when Postgres is up (all a gateway needs)")
    func environmentsAndReadiness() async throws {
        try await Deployment.with() { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let environments = try await deployment.get("/v1/environments")
            #expect(environments.status == 200)
            let list = environments.json["environments"] as? [[String: Any]] ?? []
            #expect(list.map { $0["id"] as? String } == [deployment.environmentID])
            #expect(list.first?["maxJobDuration"] as? Int == 60)

            let ready = try await deployment.get("/readyz")
            #expect(ready.status == 200, "\(ready.text)")
            #expect(ready.json["ready"] as? Bool == true)
            let checks = ready.json["checks"] as? [String: String] ?? [:]
            #expect(checks == ["postgres": "ok"])
        }
    }
}
