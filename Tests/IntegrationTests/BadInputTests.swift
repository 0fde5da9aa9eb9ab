import AsyncHTTPClient
import ChildProcesses
import Foundation
import Gateway
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Persistence
import TestSupport
import Testing

/// Hostile input on both APIs, systematically: other owners' ids on every job route of the OpenAPI document,
/// path traversal in every name a request can carry, oversized and deeply nested bodies. Every answer is a
/// documented 4xx (never a 5xx), nothing is written for a refused request, and the gateway stays up.
@Suite("Bad input", .serialized)
struct BadInputTests {
    /// Small body limits, so "oversized" needs no large uploads, and the Ocean API on for the test Provider.
    static let settings = OceanAPITests.providers.merging([
        "C2D_MAX_BODY_BYTES": "65536", "C2D_MAX_BATCH_BODY_BYTES": "131072",
    ]) { $1 }

    /// Every job-scoped operation of the native API's document: an `{id}` path, with `{index}` filled in.
    static func jobOperations() throws -> [(HTTPMethod, String)] {
        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(try OpenAPIDocument.bytes())) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        return paths.keys.sorted().filter { $0.contains("{id}") }.flatMap { path in
            (paths[path] ?? [:]).keys.sorted().compactMap { method -> (HTTPMethod, String)? in
                guard ["get", "post", "put", "patch", "delete"].contains(method) else { return nil }
                return (HTTPMethod(rawValue: method.uppercased()), path.replacingOccurrences(of: "{index}", with: "0"))
            }
        }
    }

    @Test("another owner's job answers on every job route exactly like a job that does not exist")
    func otherOwnersIDs() async throws {
        try await Deployment.with(extraEnvironment: Self.settings) { deployment in
            try await deployment.startDev()
            let alice = try await deployment.token(
                owner: "alice-\(deployment.environmentID)", scopes: [.submit, .read])
            let bob = try await deployment.token(owner: "bob-\(deployment.environmentID)", scopes: [.submit, .read])
            var request = deployment.jobRequest(code: "open('/data/outputs/o.txt','w').write('alice')")
            request["owner"] = nil
            let created = try await deployment.post("/v1/jobs", json: request, token: alice)
            let id = try #require(created.json["id"] as? String, "\(created.text)")
            _ = try await deployment.waitForJob(id)
            let missing = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            let operations = try Self.jobOperations()
            #expect(operations.count >= 6, "\(operations)")
            for (method, path) in operations {
                func call(_ jobID: String) async throws -> Deployment.HTTPResult {
                    try await deployment.request(
                        method, path.replacingOccurrences(of: "{id}", with: jobID),
                        body: method == .GET ? nil : Data("{}".utf8),
                        headers: ["authorization": "Bearer " + bob, "content-type": "application/json"])
                }
                let foreign = try await call(id)
                let absent = try await call(missing)
                #expect(!(200..<300).contains(foreign.status), "\(method) \(path): \(foreign.status)")
                #expect(
                    foreign.status == absent.status
                        && foreign.json["code"] as? String == absent.json["code"] as? String,
                    "\(method) \(path): \(foreign.status) \(foreign.text) vs \(absent.status) \(absent.text)")
            }
            // Bob's list never shows it, whatever he filters by.
            for query in ["owner=alice-\(deployment.environmentID)", "environment=\(deployment.environmentID)"] {
                let list = try await deployment.get("/v1/jobs?\(query)", token: bob)
                #expect((list.json["jobs"] as? [Any])?.isEmpty == true, "\(query): \(list.text)")
            }
        }
    }

    @Test("path traversal in job ids, indexes, input paths and ids, upload names and outputs never escapes")
    func pathTraversal() async throws {
        try await Deployment.with(extraEnvironment: Self.settings) { deployment in
            try await deployment.startDev()
            try Data("host secret".utf8).write(to: deployment.directory.appendingPathComponent("secret.txt"))
            let jobs = try await deployment.jobCount()
            // Names in the URL.
            let id = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
            _ = try await deployment.waitForJob(id)
            for path in [
                "/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/v1/jobs/%2e%2e", "/v1/jobs/\(id)/results/..%2F0",
                "/v1/jobs/\(id)/results/-1", "/v1/jobs/\(id)/results/0%2F..%2F1", "/v1/jobs/\(id)%2F..%2F\(id)/logs",
            ] {
                let response = try await deployment.get(path)
                #expect([400, 404].contains(response.status), "\(path): \(response.status) \(response.text)")
            }
            for name in ["..%2F..%2Fetc%2Fcron.d%2Fx", "..", "a%2F..%2F..%2Fx", "%2Fetc%2Fpasswd", "a%00b"] {
                let response = try await deployment.request(
                    .PUT, "/internal/v1/jobs/\(id)/attempts/1/results/output/\(name)", body: Data("x".utf8),
                    headers: ["authorization": "Bearer nope"])
                #expect(response.status == 400 && response.json["code"] as? String == "invalid_name", "\(name)")
            }
            var query = OceanClient(deployment: deployment, key: OceanAPITests.providerKey).signed(
                owner: OceanAPITests.owner, jobID: "../../\(id)")
            query["index"] = "0"
            let ocean = try await OceanClient(deployment: deployment, key: OceanAPITests.providerKey).call(
                .GET, "/api/v1/operator/getResult", query: query)
            #expect(ocean.status == 404, "\(ocean.text)")

            // Names in the workflow: refused at submit, with nothing written.
            for input in [
                ["id": "did:op:../../../tmp/x", "path": "secret.txt"], ["id": "did:op:ok", "path": "../secret.txt"],
                ["id": "did:op:ok", "path": "/etc/passwd"], ["id": "did:op:ok", "path": "data/../../secret.txt"],
                ["id": "did:op:ok", "url": "file:///etc/passwd"], ["id": "..", "path": "x"],
            ] {
                let response = try await deployment.post(
                    "/v1/jobs", json: deployment.jobRequest(code: "print(1)", inputs: [input]))
                #expect(response.status == 400, "\(input): \(response.status) \(response.text)")
            }
            #expect(try await deployment.jobCount() == jobs + 1)

            // A link the algorithm plants in its outputs is not followed by the publisher.
            let planted = try await deployment.submit(
                deployment.jobRequest(
                    code: """
                        import os
                        os.symlink("/etc/passwd", "/data/outputs/passwd")
                        os.symlink("/data/inputs", "/data/outputs/inputs")
                        open("/data/outputs/ok.txt", "w").write("ok")
                        """))
            let finished = try await deployment.waitForJob(planted)
            #expect(finished["outcome"] as? String == "succeeded", "\(finished)")
            let names = try await deployment.results(planted).compactMap { $0["filename"] as? String }
            #expect(names.contains("ok.txt") && !names.contains("passwd") && !names.contains { $0.hasPrefix("inputs") })
        }
    }

    @Test("oversized and deeply nested bodies are refused with 413 and 400 on both APIs; the gateway stays up")
    func oversizedAndNested() async throws {
        try await Deployment.with(extraEnvironment: Self.settings) { deployment in
            try await deployment.startDev()
            let jobs = try await deployment.jobCount()
            let client = OceanClient(deployment: deployment, key: OceanAPITests.providerKey)
            let json = ["content-type": "application/json"]
            func send(_ method: HTTPMethod, _ path: String, _ body: String) async throws -> Deployment.HTTPResult {
                try await deployment.request(method, path, body: Data(body.utf8), headers: json)
            }
            // Over the body limits.
            let padding = String(repeating: "x", count: 200_000)
            var large = deployment.jobRequest(code: "print('\(padding)')")
            let single = try await deployment.post("/v1/jobs", json: large)
            #expect(single.status == 413 && single.json["code"] as? String == "body_too_large", "\(single.status)")
            large = ["environment": deployment.environmentID, "jobs": [["workflow": large["workflow"]!]]]
            let batch = try await deployment.post("/v1/batches", json: large)
            #expect(batch.status == 413, "\(batch.status) \(batch.text.prefix(200))")
            let oceanLarge = try await send(.POST, "/api/v1/operator/compute", "{\"pad\": \"\(padding)\"}")
            #expect(oceanLarge.status == 413, "\(oceanLarge.status)")

            // Nested far deeper than any workflow needs, in the places that take free-form JSON.
            for depth in [600, 30_000] {
                let nested = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
                let stage = """
                    {"input": [], "algorithm": {"rawcode": "print(1)", "container": {"entrypoint": "python3 $ALGO"},
                     "algocustomdata": \(nested)}}
                    """
                let native = try await send(
                    .POST, "/v1/jobs",
                    "{\"environment\": \"\(deployment.environmentID)\", \"workflow\": {\"stages\": [\(stage)]}}")
                #expect(native.status == 400, "native depth \(depth): \(native.status) \(native.text.prefix(200))")
                let nativeBatch = try await send(
                    .POST, "/v1/batches",
                    "{\"environment\": \"\(deployment.environmentID)\", \"jobs\": [{\"workflow\": {\"stages\": [\(stage)]}}]}"
                )
                #expect(nativeBatch.status == 400, "batch depth \(depth): \(nativeBatch.status)")
                var start = client.signedStart(
                    agreementID: "agr-\(UUID().uuidString)", owner: OceanAPITests.owner,
                    environment: deployment.environmentID, stages: [])
                start["workflow"] = "WORKFLOW"
                let body = String(decoding: try JSONSerialization.data(withJSONObject: start), as: UTF8.self)
                    .replacingOccurrences(of: "\"WORKFLOW\"", with: "{\"stages\": [\(stage)]}")
                let ocean = try await send(.POST, "/api/v1/operator/compute", body)
                #expect(ocean.status == 400, "ocean depth \(depth): \(ocean.status) \(ocean.text.prefix(200))")
            }
            // Not JSON at all, or JSON of the wrong shape.
            for body in ["", "{", "[]", "null", "\u{0}", "{\"environment\": 1}", "{\"workflow\": \"x\"}"] {
                let response = try await send(.POST, "/v1/jobs", body)
                #expect(response.status == 400, "\(body.debugDescription): \(response.status) \(response.text)")
            }
            #expect(try await deployment.jobCount() == jobs, "no refused request wrote a job")
            #expect(try await deployment.get("/healthz").status == 200, "the gateway is still up")
        }
    }

    @Test("schemathesis against /v1/openapi.json: every response documented, no 5xx, nothing half-written")
    func schemathesis() async throws {
        let tool = TestEnvironment.repositoryRoot.appendingPathComponent(".data/tools/bin/schemathesis")
        try #require(
            FileManager.default.isExecutableFile(atPath: tool.path),
            "schemathesis is not installed: run scripts/install-deps")
        try await Deployment.with(extraEnvironment: Self.settings) { deployment in
            try await deployment.startDev()
            let token = try await deployment.token(owner: "fuzz-\(deployment.environmentID)", scopes: [.submit, .read])
            // One finished job of the fuzzer's own, so the job routes get past 404 (its id fills `{id}`).
            var request = deployment.jobRequest(code: "open('/data/outputs/o.txt','w').write('fuzz')")
            request["owner"] = nil
            let created = try await deployment.post("/v1/jobs", json: request, token: token)
            let id = try #require(created.json["id"] as? String, "\(created.text)")
            _ = try await deployment.waitForJob(id)
            let configuration = deployment.directory.appendingPathComponent("schemathesis.toml")
            try Data("[parameters]\n\"path.id\" = \"\(id)\"\n".utf8).write(to: configuration)
            let before = try await deployment.jobCount()
            let run = try C2DProcess(
                name: "schemathesis", program: tool.path,
                arguments: [
                    "--config-file", configuration.path,
                    "run", deployment.baseURL + "/v1/openapi.json", "--url", deployment.baseURL,
                    "--header", "Authorization: Bearer \(token)",
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,"
                        + "response_headers_conformance,response_schema_conformance",
                    // Event streams never end by design: their codes are covered by EventStreamTests.
                    "--exclude-path-regex", "events$",
                    // The coverage phase of schemathesis 4.32 fails inside the tool on this document; examples and
                    // fuzzing (positive and negative data) are what find our faults.
                    "--max-examples", "60", "--seed", "1", "--workers", "2", "--request-timeout", "10",
                    "--phases", "examples,fuzzing", "--no-color",
                ], logDirectory: deployment.directory)
            #expect(
                await run.waitForExit(timeout: .seconds(150)), "schemathesis did not finish:\n\(run.log.suffix(4000))")
            #expect(run.exitCode == 0, "\(run.log.suffix(6000))")
            // Nothing half-written: every job it managed to create has its first event.
            let orphans = try await deployment.postgres.query(
                """
                select count(*) as n from jobs j where j.environment = $1
                    and not exists (select 1 from job_events e where e.job_id = j.id)
                """, [.text(deployment.environmentID)])
            #expect(try orphans[0].int("n") == 0)
            #expect(try await deployment.jobCount() >= before)
            #expect(try await deployment.get("/healthz").status == 200)
        }
    }
}
