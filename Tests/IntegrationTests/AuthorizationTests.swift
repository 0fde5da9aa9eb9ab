import ChildProcesses
import Foundation
import Gateway
import NIOHTTP1
import Persistence
import TestSupport
import Testing

/// Tokens, scopes, ownership, submit policy and limits of the native API, on a real `c2d dev`.
@Suite("Authorization and policy", .serialized)
struct AuthorizationTests {
    static let trustedChecksum = String(repeating: "ab", count: 32)
    static let fastRevocation = ["C2D_TOKEN_CACHE_SECONDS": "0"]

    @Test("no, malformed, unknown or revoked tokens are refused with 401; public routes need none")
    func authentication() async throws {
        try await Deployment.with(extraEnvironment: Self.fastRevocation) { deployment in
            try await deployment.startDev()
            var request = deployment.jobRequest(code: "print(1)")
            request["owner"] = nil
            for header in ["", "Basic abc", "Bearer nope", "Bearer " + APIToken.generate()] {
                let headers = header.isEmpty ? [:] : ["authorization": header]
                let response = try await deployment.request(
                    .POST, "/v1/jobs", body: try JSONSerialization.data(withJSONObject: request), headers: headers,
                    authorize: false)
                #expect(response.status == 401, "\(header): \(response.text)")
                #expect(
                    ["unauthenticated", "invalid_authorization", "invalid_token"].contains(
                        response.json["code"] as? String))
            }
            let owner = "alice-" + deployment.environmentID
            let token = try await deployment.token(owner: owner, scopes: [.submit, .read])
            #expect(try await deployment.post("/v1/jobs", json: request, token: token).status == 201)
            let id = try #require(
                try await deployment.postgres.query(
                    "select id::text as id from api_tokens where owner = $1", [.text(owner)]
                ).first?.string("id"))
            let revoke = try deployment.start("token-revoke", ["token", "revoke", id])
            #expect(await revoke.waitForExit(timeout: .seconds(30)))
            #expect(revoke.exitCode == 0, "\(revoke.log)")
            let after = try await deployment.post("/v1/jobs", json: request, token: token)
            #expect(after.status == 401)
            #expect(after.json["code"] as? String == "invalid_token")
            for path in ["/v1/environments", "/v1/openapi.json", "/healthz", "/readyz"] {
                #expect(
                    try await deployment.request(.GET, path, headers: ["authorization": "x"]).status == 200, "\(path)")
            }
        }
    }

    @Test("scopes: submit creates, read reads, operate sees and stops all but not results; others' jobs are 404")
    func scopesAndOwnership() async throws {
        try await Deployment.with { deployment in
            try await deployment.startDev()
            let alice = try await deployment.token(owner: "alice", scopes: [.submit, .read])
            let bob = try await deployment.token(owner: "bob", scopes: [.submit, .read])
            let readOnly = try await deployment.token(owner: "alice", scopes: [.read])
            let carol = try await deployment.token(owner: "carol", scopes: [.read])
            let operator_ = try await deployment.token(owner: "ops", scopes: [.operate])

            var request = deployment.jobRequest(code: "open('/data/outputs/r.txt','w').write('secret')")
            request["owner"] = nil
            #expect(try await deployment.post("/v1/jobs", json: request, token: readOnly).status == 403)
            var forBob = request
            forBob["owner"] = "bob"
            let mismatch = try await deployment.post("/v1/jobs", json: forBob, token: alice)
            #expect(mismatch.status == 403)
            #expect(mismatch.json["code"] as? String == "owner_mismatch")
            var shared = request
            shared["viewers"] = ["carol"]
            let created = try await deployment.post("/v1/jobs", json: shared, token: alice)
            #expect(created.status == 201, "\(created.text)")
            #expect(created.json["owner"] as? String == "alice")
            let id = try #require(created.json["id"] as? String)
            _ = try await deployment.waitForJob(id)

            // Another owner: 404 on every job-scoped route, exactly like an unknown id.
            for path in ["", "/results", "/results/0", "/logs", "/events"] {
                let response = try await deployment.get("/v1/jobs/\(id)\(path)", token: bob)
                #expect(response.status == 404, "\(path): \(response.status)")
                #expect(response.json["code"] as? String == "job_not_found")
            }
            #expect(
                try await deployment.post("/v1/jobs/\(id)/stop", json: [:] as [String: Any], token: bob).status == 404)
            // Listing is scoped to the caller's own jobs, whatever owner filter it asks for.
            let bobsList = try await deployment.get("/v1/jobs?owner=alice", token: bob)
            #expect((bobsList.json["jobs"] as? [Any])?.count == 0)
            let alicesList = try await deployment.get("/v1/jobs?environment=\(deployment.environmentID)", token: alice)
            #expect((alicesList.json["jobs"] as? [[String: Any]])?.map { $0["id"] as? String } == [id])
            // The viewer reads status and results.
            #expect(try await deployment.get("/v1/jobs/\(id)", token: carol).status == 200)
            let download = try await deployment.get("/v1/jobs/\(id)/results/0", token: carol)
            #expect(download.status == 200)
            #expect(download.text == "secret")
            // The operator sees every job but not result contents.
            #expect(try await deployment.get("/v1/jobs/\(id)", token: operator_).status == 200)
            #expect(try await deployment.get("/v1/jobs/\(id)/results/0", token: operator_).status == 403)
            let all = try await deployment.get(
                "/v1/jobs?owner=alice&environment=\(deployment.environmentID)", token: operator_)
            #expect((all.json["jobs"] as? [Any])?.count == 1)
            // The global event stream is for operators.
            #expect(try await deployment.get("/v1/events", token: alice).status == 403)
        }
    }

    @Test("policy: trusted algorithms with wildcards, raw code, network, resources and chains")
    func policy() async throws {
        let trusted = Self.trustedChecksum
        let fields = """
            "allowRawAlgorithm": false, "cpus": 2, "memoryMiB": 2048, "chainIds": [137, 8996],
            "trustedAlgorithms": [{"did": "did:op:good*", "filesChecksum": "\(trusted)"}]
            """
        try await Deployment.with(environmentFields: fields) { deployment in
            try await deployment.startDev()
            func submit(
                did: String?, raw: Bool = false, checksum: String? = Self.trustedChecksum,
                compute: [String: Any]? = nil,
                chainId: Int? = 137
            ) async throws -> Deployment.HTTPResult {
                var algorithm: [String: Any] = ["container": ["entrypoint": "python3 $ALGO", "image": "python"]]
                if let did { algorithm["id"] = did }
                if raw { algorithm["rawcode"] = "print(1)" } else { algorithm["url"] = "https://example.org/algo.py" }
                if let checksum { algorithm["checksum"] = checksum }
                var stage: [String: Any] = ["index": 0, "input": [] as [Any], "algorithm": algorithm]
                if let compute { stage["compute"] = compute }
                var body: [String: Any] = [
                    "environment": deployment.environmentID, "workflow": ["stages": [stage]],
                ]
                if let chainId { body["chainId"] = chainId }
                return try await deployment.post("/v1/jobs", json: body)
            }
            let cases: [(String, Deployment.HTTPResult, Int, String?)] = [
                ("trusted by wildcard", try await submit(did: "did:op:good-1"), 201, nil),
                ("untrusted did", try await submit(did: "did:op:evil"), 400, "not_trusted_algo"),
                (
                    "wrong checksum",
                    try await submit(did: "did:op:good", checksum: String(repeating: "cd", count: 32)),
                    400, "not_trusted_algo"
                ),
                ("no checksum", try await submit(did: "did:op:good", checksum: nil), 400, "not_trusted_algo"),
                ("raw code", try await submit(did: nil, raw: true, checksum: nil), 400, "no_raw_algo_allowed"),
                (
                    "network", try await submit(did: "did:op:good", compute: ["allowNetwork": true]), 400,
                    "network_not_allowed"
                ),
                (
                    "cpu within",
                    try await submit(did: "did:op:good", compute: ["resources": [["id": "cpu", "amount": 2]]]),
                    201, nil
                ),
                (
                    "ram above",
                    try await submit(did: "did:op:good", compute: ["resources": [["id": "ram", "amount": 3]]]),
                    400, "resources_exceed_limit"
                ),
                (
                    "gpu", try await submit(did: "did:op:good", compute: ["resources": [["id": "gpu", "amount": 1]]]),
                    400, "unknown_resource"
                ),
                (
                    "duration", try await submit(did: "did:op:good", compute: ["maxtime": 100_000]), 400,
                    "duration_exceeds_limit"
                ),
                ("other chain", try await submit(did: "did:op:good", chainId: 1), 400, "invalid_chain"),
                ("no chain", try await submit(did: "did:op:good", chainId: nil), 400, "invalid_chain"),
            ]
            for (name, response, status, code) in cases {
                #expect(response.status == status, "\(name): \(response.text)")
                if let code { #expect(response.json["code"] as? String == code, "\(name): \(response.text)") }
                if status >= 400 { #expect(!(response.json["message"] as? String ?? "").isEmpty) }
            }
            // Refusals write nothing: only the two accepted jobs exist.
            #expect(try await deployment.jobCount() == 2)
        }
    }

    @Test("limits are configuration, and a refusal names the limit")
    func limits() async throws {
        let environment = [
            "C2D_MAX_WORKFLOW_BYTES": "2048", "C2D_MAX_INPUTS": "2", "C2D_MAX_FIELD_BYTES": "100",
            "C2D_MAX_BODY_BYTES": "4096",
        ]
        try await Deployment.with(extraEnvironment: environment) { deployment in
            try await deployment.startDev()
            func check(_ request: [String: Any], _ status: Int, _ code: String, mentions: String) async throws {
                let response = try await deployment.post("/v1/jobs", json: request)
                #expect(response.status == status, "\(code): \(response.text)")
                #expect(response.json["code"] as? String == code)
                #expect((response.json["message"] as? String ?? "").contains(mentions), "\(response.text)")
            }
            let inputs = (0..<3).map { ["id": "d\($0)", "url": "https://example.org/\($0)"] }
            try await check(
                deployment.jobRequest(code: "print(1)", inputs: inputs), 400, "too_many_inputs", mentions: "2")
            try await check(
                deployment.jobRequest(
                    code: "print(1)", inputs: [["id": String(repeating: "x", count: 101), "url": "https://e.org/a"]]),
                400, "field_too_long", mentions: "100 bytes")
            try await check(
                deployment.jobRequest(code: String(repeating: "#", count: 2500)), 413, "workflow_too_large",
                mentions: "2048")
            try await check(
                deployment.jobRequest(code: String(repeating: "#", count: 5000)), 413, "body_too_large",
                mentions: "4096")
            #expect(try await deployment.jobCount() == 0)
        }
    }

    @Test("Postgres down: the native API answers 503 within a second, and recovers")
    func postgresDown() async throws {
        try await Deployment.with { deployment in
            try await deployment.startDev()
            let id = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
            _ = try await deployment.defaultAuthorization()
            try await TestEnvironment.services("stop", "postgres")
            do {
                for path in ["/v1/jobs/\(id)", "/v1/jobs"] {
                    let start = ContinuousClock.now
                    let response = try await deployment.get(path)
                    let elapsed = ContinuousClock.now - start
                    #expect(response.status == 503, "\(path): \(response.text)")
                    #expect(elapsed < .seconds(1), "\(path) took \(elapsed)")
                }
                let start = ContinuousClock.now
                let submit = try await deployment.post("/v1/jobs", json: deployment.jobRequest(code: "print(1)"))
                #expect(submit.status == 503, "\(submit.text)")
                #expect(ContinuousClock.now - start < .seconds(1))
            } catch {
                try await TestEnvironment.services("start", "postgres")
                throw error
            }
            try await TestEnvironment.services("start", "postgres")
            let deadline = ContinuousClock.now + .seconds(30)
            var status = 0
            while ContinuousClock.now < deadline {
                status = try await deployment.get("/v1/jobs/\(id)").status
                if status == 200 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(status == 200)
        }
    }
}
