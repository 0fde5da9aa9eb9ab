import AsyncHTTPClient
import Foundation
import Gateway
import NIOCore
import NIOHTTP1
import Persistence
import TestSupport
import Testing

/// A batch as a whole (Armada's job sets): status counts, stop, the events of all its jobs, ownership, and chunked
/// submission that can be resent without duplicates — against the real `c2d` binary and real services.
@Suite("Batch operations", .serialized)
struct BatchOperationsTests {
    static func workflows(_ deployment: Deployment, count: Int, code: String = "print('ran')") -> [[String: Any]] {
        (0..<count).map { _ in ["workflow": deployment.jobRequest(code: code)["workflow"]!] }
    }

    static func createBatch(
        _ deployment: Deployment, owner: String? = nil, count: Int, token: String? = nil
    ) async throws -> (id: String, jobs: [String]) {
        var body: [String: Any] = [
            "environment": deployment.environmentID, "jobs": workflows(deployment, count: count),
        ]
        if let owner { body["owner"] = owner }
        let response = try await deployment.post("/v1/batches", json: body, token: token)
        guard response.status == 201, let id = response.json["batchId"] as? String else {
            throw TestFailure("batch answered \(response.status): \(response.text)")
        }
        return (id, response.json["jobs"] as? [String] ?? [])
    }

    @Test("status counts a batch's jobs, stop ends every unfinished one, and the events stream ends with them")
    func statusStopAndEvents() async throws {
        try await Deployment.with { deployment in
            // A gateway alone: the jobs stay queued until stopped.
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let batch = try await Self.createBatch(deployment, count: 5)
            let status = try await deployment.get("/v1/batches/\(batch.id)")
            #expect(status.status == 200, "\(status.text)")
            #expect(status.json["total"] as? Int == 5)
            #expect(status.json["unfinished"] as? Int == 5)
            #expect(status.json["finished"] as? Bool == false)
            #expect(status.json["environment"] as? String == deployment.environmentID)
            #expect(status.json["owner"] as? String == "tester")
            #expect((status.json["byStatus"] as? [String: Int]) == ["1": 5])
            #expect(
                (status.json["byOutcome"] as? [String: Int])
                    == ["succeeded": 0, "failed": 0, "stopped": 0, "timed_out": 0])
            #expect(status.json["dateFinished"] == nil)

            // The stream, followed while the stop happens, carries every job's events and then ends.
            let events = Task { try await EventStreamTests.readStream(deployment, "/v1/batches/\(batch.id)/events") }
            try await Task.sleep(for: .milliseconds(500))
            let stop = try await deployment.post("/v1/batches/\(batch.id)/stop", json: [String: Any]())
            #expect(stop.status == 202, "\(stop.text)")
            #expect(stop.json["stopRequested"] as? Int == 5)
            #expect(stop.json["finished"] as? Bool == true)
            #expect((stop.json["byOutcome"] as? [String: Int])?["stopped"] == 5)
            let streamed = try await events.value
            #expect(
                streamed.count == 10, "a queued event and a terminal event per job: \(streamed)\n\(deployment.logs)")
            #expect(streamed.filter { $0.status == 70 }.count == 5)
            #expect(streamed.map(\.id) == streamed.map(\.id).sorted())

            // Resuming after an id gives exactly the rest, and ends at once: every job has finished.
            let resumed = try await EventStreamTests.readStream(
                deployment, "/v1/batches/\(batch.id)/events", lastEventID: streamed[3].id)
            #expect(resumed.map(\.id) == streamed.dropFirst(4).map(\.id))

            let after = try await deployment.get("/v1/batches/\(batch.id)")
            #expect(after.json["finished"] as? Bool == true)
            #expect(after.json["dateFinished"] is String)
            // Stopping again reaches nothing.
            let again = try await deployment.post("/v1/batches/\(batch.id)/stop", json: [String: Any]())
            #expect(again.json["stopRequested"] as? Int == 0)

            for path in ["/v1/batches/not-a-uuid", "/v1/batches/\(UUID().uuidString.lowercased())"] {
                let missing = try await deployment.get(path)
                #expect(missing.status == 404)
                #expect(missing.json["code"] as? String == "batch_not_found")
            }
        }
    }

    @Test("another owner's batch is 404 everywhere; operators see and stop every batch; stopping needs submit")
    func ownership() async throws {
        try await Deployment.with { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let alice = try await deployment.token(owner: "alice-\(UUID())", scopes: [.submit, .read])
            let bob = try await deployment.token(owner: "bob-\(UUID())", scopes: [.submit, .read])
            let batch = try await Self.createBatch(deployment, count: 2, token: alice)
            #expect(try await deployment.get("/v1/batches/\(batch.id)", token: alice).status == 200)
            for path in ["/v1/batches/\(batch.id)", "/v1/batches/\(batch.id)/events"] {
                let response = try await deployment.get(path, token: bob)
                #expect(response.status == 404, "\(path): \(response.text)")
                #expect(response.json["code"] as? String == "batch_not_found")
            }
            let bobStop = try await deployment.post("/v1/batches/\(batch.id)/stop", json: [String: Any](), token: bob)
            #expect(bobStop.status == 404)
            // Bob cannot add jobs to Alice's batch either.
            let append = try await deployment.post(
                "/v1/batches",
                json: [
                    "environment": deployment.environmentID, "batchId": batch.id,
                    "jobs": Self.workflows(deployment, count: 1),
                ], token: bob)
            #expect(append.status == 404, "\(append.text)")

            let operatorToken = try await deployment.token(owner: "ops", scopes: [.operate])
            #expect(try await deployment.get("/v1/batches/\(batch.id)", token: operatorToken).status == 200)
            let readOnly = try await deployment.token(owner: "alice-ro", scopes: [.read])
            #expect(try await deployment.get("/v1/batches/\(batch.id)", token: readOnly).status == 404)
            let operatorStop = try await deployment.post(
                "/v1/batches/\(batch.id)/stop", json: [String: Any](), token: operatorToken)
            #expect(operatorStop.status == 202, "\(operatorStop.text)")
            #expect(operatorStop.json["stopRequested"] as? Int == 2)
        }
    }

    @Test("a chunk resent with its Idempotency-Key writes nothing; overlapping chunks and reused keys are refused")
    func idempotentChunks() async throws {
        try await Deployment.with { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            // Keys are per owner and the database outlives test runs: a fresh owner per run.
            let owner = "chunker-\(UUID())"
            func send(_ body: [String: Any], key: String) async throws -> Deployment.HTTPResult {
                var body = body
                body["owner"] = owner
                return try await deployment.request(
                    .POST, "/v1/batches", body: try JSONSerialization.data(withJSONObject: body, options: .sortedKeys),
                    headers: ["content-type": "application/json", "idempotency-key": key])
            }
            let first: [String: Any] = [
                "environment": deployment.environmentID, "position": 0,
                "jobs": Self.workflows(deployment, count: 3, code: "print(0)"),
            ]
            let created = try await send(first, key: "chunk-0")
            #expect(created.status == 201, "\(created.text)")
            let batchID = try #require(created.json["batchId"] as? String)
            let firstJobs = try #require(created.json["jobs"] as? [String])
            let resent = try await send(first, key: "chunk-0")
            #expect(resent.status == 200, "\(resent.text)")
            #expect(resent.json["batchId"] as? String == batchID)
            #expect(resent.json["jobs"] as? [String] == firstJobs)

            let second: [String: Any] = [
                "environment": deployment.environmentID, "batchId": batchID, "position": 3,
                "jobs": Self.workflows(deployment, count: 2, code: "print(1)"),
            ]
            #expect(try await send(second, key: "chunk-1").status == 201)
            #expect(try await send(second, key: "chunk-1").status == 200)

            // The same positions under another key: a client that changed its chunk size. Refused, not duplicated.
            let overlapping: [String: Any] = [
                "environment": deployment.environmentID, "batchId": batchID, "position": 2,
                "jobs": Self.workflows(deployment, count: 2, code: "print(2)"),
            ]
            let overlap = try await send(overlapping, key: "chunk-other")
            #expect(overlap.status == 409, "\(overlap.text)")
            #expect(overlap.json["code"] as? String == "batch_chunk_overlap")
            // A key used before, for a different request.
            let reused = try await send(second, key: "chunk-0")
            #expect(reused.status == 422, "\(reused.text)")
            #expect(reused.json["code"] as? String == "idempotency_key_reused")

            let count = try await deployment.postgres.query(
                "select count(*) as n from jobs where batch_id = $1::uuid", [.text(batchID)])[0].int("n")
            #expect(count == 5)
            let status = try await deployment.get("/v1/batches/\(batchID)")
            #expect(status.json["total"] as? Int == 5)

            // Once retention removed a chunk's jobs, resending its key is not a way to make them again silently.
            try await deployment.postgres.execute(
                "delete from jobs where id = any($1::uuid[])", [.textArray(firstJobs)])
            let expired = try await send(first, key: "chunk-0")
            #expect(expired.status == 409, "\(expired.text)")
            #expect(expired.json["code"] as? String == "idempotency_key_expired")
        }
    }

    @Test("a batch made before batches had rows is described from its jobs and can still take chunks")
    func batchWithoutRow() async throws {
        try await Deployment.with { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let owner = "legacy-\(UUID())"
            var request = deployment.jobRequest(code: "print(1)")
            request["owner"] = owner
            let job = try await deployment.submit(request)
            let batchID = UUID().uuidString.lowercased()
            try await deployment.postgres.execute(
                "update jobs set batch_id = $1::uuid where id = $2::uuid", [.text(batchID), .text(job)])
            let described = try await deployment.get("/v1/batches/\(batchID)")
            #expect(described.status == 200, "\(described.text)")
            #expect(described.json["total"] as? Int == 1)
            #expect(described.json["owner"] as? String == owner)
            let chunk = try await deployment.request(
                .POST, "/v1/batches",
                body: try JSONSerialization.data(
                    withJSONObject: [
                        "environment": deployment.environmentID, "owner": owner, "batchId": batchID, "position": 1,
                        "jobs": Self.workflows(deployment, count: 2),
                    ]),
                headers: ["content-type": "application/json", "idempotency-key": "legacy-chunk"])
            #expect(chunk.status == 201, "\(chunk.text)")
            #expect(try await deployment.get("/v1/batches/\(batchID)").json["total"] as? Int == 3)
        }
    }

    @Test("a running batch's events end by themselves once every job has finished")
    func runningBatch() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_WORKER_SLOTS": "4"]) { deployment in
            try await deployment.startDev()
            let batch = try await Self.createBatch(deployment, count: 3)
            let events = try await EventStreamTests.readStream(deployment, "/v1/batches/\(batch.id)/events")
            #expect(events.filter { $0.status == 70 }.count == 3, "\(events)\n\(deployment.logs)")
            let status = try await deployment.get("/v1/batches/\(batch.id)")
            #expect((status.json["byOutcome"] as? [String: Int])?["succeeded"] == 3, "\(status.text)")
            #expect((status.json["byStatus"] as? [String: Int]) == ["70": 3])
        }
    }
}
