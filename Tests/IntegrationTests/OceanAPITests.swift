import Foundation
import NIOHTTP1
import Signatures
import TestSupport
import Testing

/// Ocean's operator-service API (docs/ocean-operator-service.md) against the real `c2d` binary: Ocean's error texts
/// and codes, the status object, a signed start → status → result → stop flow, and the signature rules c2d adds
/// (nonce included in the message, strictly increasing nonces, allowed providers). The API is off unless Providers
/// are listed, so every deployment here lists the test Provider (`providers`).
@Suite("Ocean operator-service API", .serialized)
struct OceanAPITests {
    /// Fixed test keys (never used for anything real).
    static let providerKey = Hex.bytes("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    static let otherKey = Hex.bytes("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")
    static let owner = "0x6E1d1B6a3E2f7a8C5e9D4B2a1C0f9E8d7C6b5A43"
    /// A second Provider, new in every run, so that its nonces have no history in the database.
    static let freshKey = (0..<32).map { _ in UInt8.random(in: 0...255) }
    /// The settings that enable the Ocean API for the test Providers.
    static var providers: [String: String] {
        let addresses = [providerKey, freshKey].map { try! Secp256k1.shared.address(privateKey: $0).description }
        return ["C2D_ALLOWED_PROVIDERS": addresses.joined(separator: ",")]
    }

    // MARK: Error texts and codes

    @Test("every Ocean error text, with its HTTP code")
    func errorTable() async throws {
        try await Deployment.with(extraEnvironment: Self.providers) { deployment in
            try await deployment.startDev()
            let client = OceanClient(deployment: deployment, key: Self.providerKey)
            let env = deployment.environmentID
            let stage: [String: Any] = [
                "index": 0, "input": [], "compute": ["maxtime": 30], "output": [:],
                "algorithm": ["rawcode": "print(1)", "container": ["entrypoint": "python3 $ALGO", "image": "python"]],
            ]
            func start(_ change: (inout [String: Any]) -> Void = { _ in }) -> [String: Any] {
                var body = client.signedStart(
                    agreementID: "agr-\(UUID().uuidString)", owner: Self.owner, environment: env, stages: [stage])
                change(&body)
                return body
            }
            func stageWithout(_ name: String) -> [String: Any] {
                var copy = stage
                copy[name] = nil
                return copy
            }
            func signature(_ mutate: ([UInt8]) -> [UInt8]) -> String {
                let valid = client.sign(Self.owner, nonce: "1")
                return "0x" + Hex.encode(mutate(Hex.bytes(String(valid.dropFirst(2)))))
            }
            // (name, method, path, JSON body, expected status, expected error text)
            typealias Case = (String, HTTPMethod, String, () -> [String: Any], Int, String)
            let compute = "/api/v1/operator/compute"
            let cases: [Case] = [
                ("POST empty", .POST, compute, { [:] }, 400, "payload seems empty."),
                (
                    "POST without workflow", .POST, compute, { start { $0["workflow"] = nil } }, 400,
                    "\"workflow\" is required in the call to POST:/compute"
                ),
                (
                    "POST without agreementId", .POST, compute, { start { $0["agreementId"] = nil } }, 400,
                    "\"agreementId\" is required in the call to POST:/compute"
                ),
                (
                    "POST without owner", .POST, compute, { start { $0["owner"] = nil } }, 400,
                    "\"owner\" is required in the call to POST:/compute"
                ),
                (
                    "POST without providerSignature", .POST, compute,
                    { start { $0["providerSignature"] = nil } }, 400,
                    "\"providerSignature\" is required in the call to POST:/compute"
                ),
                (
                    "POST without environment", .POST, compute, { start { $0["environment"] = nil } }, 400,
                    "\"environment\" is required in the call to POST:/compute"
                ),
                (
                    "POST without nonce", .POST, compute, { start { $0["nonce"] = nil } }, 400,
                    "\"nonce\" is required in the call to POST:/compute"
                ),
                (
                    "POST empty workflow", .POST, compute, { start { $0["workflow"] = [String: Any]() } }, 400,
                    "`workflow` is required in the payload and must include workflow stages"
                ),
                (
                    "POST unknown environment", .POST, compute, { start { $0["environment"] = "nowhere" } }, 400,
                    "Environment invalid or does not exist"
                ),
                (
                    "POST malformed signature", .POST, compute, { start { $0["providerSignature"] = "0xzz12" } },
                    400, "Failed to recover address"
                ),
                (
                    "POST signature of wrong length", .POST, compute,
                    { start { $0["providerSignature"] = signature { Array($0.prefix(64)) } } }, 400,
                    "Failed to recover address"
                ),
                (
                    "POST high-s signature", .POST, compute,
                    { start { $0["providerSignature"] = signature(Self.highS) } }, 400, "Failed to recover address"
                ),
                (
                    "POST no stages", .POST, compute,
                    { start { $0["workflow"] = ["stages": [Any]()] } }, 400, "Missing stages"
                ),
                (
                    "POST two stages", .POST, compute,
                    { start { $0["workflow"] = ["stages": [stage, stage]] } }, 400,
                    "Multiple stages are not supported yet"
                ),
                (
                    "POST stage without algorithm", .POST, compute,
                    { start { $0["workflow"] = ["stages": [stageWithout("algorithm")]] } }, 400,
                    "Missing algorithm in stage 0"
                ),
                (
                    "POST stage without compute", .POST, compute,
                    { start { $0["workflow"] = ["stages": [stageWithout("compute")]] } }, 400,
                    "Missing compute in stage 0"
                ),
                (
                    "POST stage without input", .POST, compute,
                    { start { $0["workflow"] = ["stages": [stageWithout("input")]] } }, 400,
                    "Missing input in stage 0"
                ),
                (
                    "POST stage without output", .POST, compute,
                    { start { $0["workflow"] = ["stages": [stageWithout("output")]] } }, 400,
                    "Missing output in stage 0"
                ),
                ("PUT empty", .PUT, compute, { [:] }, 400, "payload seems empty."),
                (
                    "PUT without owner", .PUT, compute, { ["providerSignature": "0x00", "nonce": 1] }, 400,
                    "\"owner\" is required in the call to PUT:/compute"
                ),
                (
                    "PUT without providerSignature", .PUT, compute, { ["owner": Self.owner, "nonce": 1] }, 400,
                    "\"providerSignature\" is required in the call to PUT:/compute"
                ),
                (
                    "PUT without nonce", .PUT, compute, { ["owner": Self.owner, "providerSignature": "0x00"] }, 400,
                    "\"nonce\" is required in the call to PUT:/compute"
                ),
                (
                    "PUT without a selector", .PUT, compute,
                    { ["owner": "x", "providerSignature": "0x00", "nonce": 1] }, 400,
                    "You have to specify one of agreementId, jobId or owner"
                ),
                ("GET empty", .GET, compute, { [:] }, 400, "You have to specify one of agreementId, jobId or owner"),
                (
                    "GET with short selectors", .GET, compute, { ["owner": "x", "jobId": ""] }, 400,
                    "You have to specify one of agreementId, jobId or owner"
                ),
                ("getResult empty", .GET, "/api/v1/operator/getResult", { [:] }, 400, "payload seems empty."),
                (
                    "getResult without index", .GET, "/api/v1/operator/getResult",
                    { ["owner": Self.owner, "providerSignature": "0x00", "nonce": 1, "jobId": "j"] }, 400,
                    "\"index\" is required in the call to GET:/getResult"
                ),
                (
                    "getResult of an unknown job", .GET, "/api/v1/operator/getResult",
                    {
                        let jobID = String(repeating: "ab", count: 16)
                        let nonce = client.nextNonce()
                        return [
                            "owner": Self.owner, "jobId": jobID, "index": 0, "nonce": nonce,
                            "providerSignature": client.sign(Self.owner + jobID, nonce: nonce),
                        ]
                    }, 404, "Owner \(Self.owner) mismatch for job \(String(repeating: "ab", count: 16))"
                ),
            ]
            let before = try await deployment.jobCount()
            for (name, method, path, body, status, text) in cases {
                let response = try await client.call(method, path, json: body())
                #expect(response.status == status, "\(name): \(response.status) \(response.text)")
                #expect(response.json["error"] as? String == text, "\(name): \(response.text)")
            }
            #expect(try await deployment.jobCount() == before, "no refused start wrote a job")

            // A replayed request (same nonce, same signature) is refused; so is an older nonce.
            let replayed = start { $0["workflow"] = ["stages": [Any]()] }
            let first = try await client.call(.POST, compute, json: replayed)
            #expect(first.json["error"] as? String == "Missing stages", "\(first.text)")
            let again = try await client.call(.POST, compute, json: replayed)
            #expect(again.status == 400)
            #expect((again.json["error"] as? String ?? "").hasPrefix("Invalid nonce"), "\(again.text)")

            // A millisecond-float nonce as older Providers send it: verified over its literal text, compared as a
            // number. A Provider new in this run, so earlier runs' nonces do not interfere.
            let fresh = OceanClient(deployment: deployment, key: Self.freshKey)
            for (nonce, expected) in [
                ("1700000000123.456", "Missing stages"), ("1700000000123.456", "Invalid nonce"),
                ("1700000000123.45", "Invalid nonce"), ("1700000000123.4561", "Missing stages"),
            ] {
                let raw = """
                    {"workflow": {"stages": []}, "agreementId": "agr-\(UUID().uuidString)", "owner": "\(Self.owner)",
                     "environment": "\(env)", "nonce": \(nonce),
                     "providerSignature": "\(fresh.sign(Self.owner, nonce: nonce))"}
                    """
                let response = try await deployment.request(
                    .POST, compute, body: Data(raw.utf8), headers: ["content-type": "application/json"])
                #expect(response.status == 400)
                #expect((response.json["error"] as? String ?? "").hasPrefix(expected), "\(nonce): \(response.text)")
            }

            // DELETE is a no-op, signed like a stop; `/` and `/environments` describe the service, unsigned.
            let unsignedDelete = try await client.call(.DELETE, compute, json: [:])
            #expect(unsignedDelete.status == 400, "\(unsignedDelete.text)")
            #expect(unsignedDelete.json["error"] as? String == "`providerSignature` of agreementId is required.")
            let delete = try await client.call(.DELETE, compute, json: client.signed(owner: Self.owner))
            #expect(delete.status == 200 && delete.text == "\"\"", "\(delete.text)")
            let info = try await deployment.get("/")
            #expect(info.json["software"] as? String == "Operator service", "\(info.text)")
            let environments = try await deployment.get("/api/v1/operator/environments")
            let list = try JSONSerialization.jsonObject(with: environments.body) as? [[String: Any]] ?? []
            let ours = try #require(list.first { $0["id"] as? String == env }, "\(environments.text)")
            #expect(ours["maxJobs"] as? Int == 4)
            #expect(ours["ramGB"] as? Int == 1)
            #expect(ours["lastSeen"] is String)
            #expect(ours["priceMin"] as? Int == 0)
            for key in ["cpuNumber", "diskGB", "desc", "currentJobs", "consumerAddress", "storageExpiry"] {
                #expect(ours.keys.contains(key), "environment lacks \(key)")
            }
        }
    }

    // MARK: The whole flow

    @Test("signed start, status three ways, result by index with Range, stop, one active job per agreement")
    func fullFlow() async throws {
        try await Deployment.with(extraEnvironment: Self.providers) { deployment in
            try await deployment.startDev()
            let client = OceanClient(deployment: deployment, key: Self.providerKey)
            let agreement = "agr-\(UUID().uuidString)"
            let code = """
                import time
                time.sleep(2)
                open("/data/outputs/out.txt", "w").write("hello ocean")
                print("done")
                """
            let started = try await client.call(
                .POST, "/api/v1/operator/compute",
                json: client.signedStart(
                    agreementID: agreement, owner: Self.owner, environment: deployment.environmentID,
                    stages: [Self.stage(code)]))
            #expect(started.status == 200, "\(started.text)\n\(deployment.logs)")
            let created = try #require(started.list.first, "\(started.text)")
            #expect(started.list.count == 1)
            let jobID = try #require(created["jobId"] as? String)
            #expect(jobID.count == 32)
            #expect(created["agreementId"] as? String == agreement)
            #expect(created["owner"] as? String == Self.owner)
            #expect(created["status"] as? Int == 1)
            #expect(created["statusText"] as? String == "Warming up")
            #expect(Double(created["dateCreated"] as? String ?? "") != nil, "\(created)")
            #expect(created["dateFinished"] is NSNull)
            #expect(created["results"] as? String == "")
            #expect(created["stopreq"] as? Int == 0)
            #expect(created["removed"] as? Int == 0)
            #expect(created["algoDID"] as? String == "raw")
            #expect(created["inputDID"] as? [String] == [])

            // One active job per agreement.
            let duplicate = try await client.call(
                .POST, "/api/v1/operator/compute",
                json: client.signedStart(
                    agreementID: agreement, owner: Self.owner, environment: deployment.environmentID,
                    stages: [Self.stage(code)]))
            #expect(duplicate.status == 400)
            #expect(duplicate.json["error"] as? String == "`agreementId` already in use for other job.")

            let running = try await client.call(.GET, "/api/v1/operator/runningjobs", query: client.signed())
            let listed = try #require(running.list.first { $0["jobId"] as? String == jobID }, "\(running.text)")
            #expect(listed["namespace"] is String)
            let details = listed["terminationDetails"] as? [String: Any]
            #expect(details?["exitCode"] is NSNull && details?["OOMKilled"] is NSNull, "\(listed)")
            // While it runs (admitted, not finished), the legacy environment counts it.
            let counted = try await eventually(within: .seconds(10), every: .milliseconds(100)) {
                let environments = try await deployment.get("/api/v1/operator/environments")
                let list = try JSONSerialization.jsonObject(with: environments.body) as? [[String: Any]] ?? []
                return list.first { $0["id"] as? String == deployment.environmentID }?["currentJobs"] as? Int == 1
            }
            #expect(counted, "currentJobs never read 1 while the job ran")

            // Status by jobId (query string), by agreementId (GET with a JSON body, signed over `None` + nonce as
            // the Provider signs a call without an owner), by owner (GET with a JSON body).
            let byJob = try await client.call(
                .GET, "/api/v1/operator/compute", query: client.signed(owner: Self.owner, jobID: jobID))
            #expect(byJob.list.map { $0["jobId"] as? String } == [jobID], "\(byJob.text)")
            let byAgreement = try await client.call(
                .GET, "/api/v1/operator/compute", json: client.signed(agreementID: agreement))
            #expect(byAgreement.list.map { $0["jobId"] as? String } == [jobID], "\(byAgreement.text)")
            let byOwner = try await client.call(
                .GET, "/api/v1/operator/compute", json: client.signed(owner: Self.owner))
            #expect(byOwner.list.contains { $0["jobId"] as? String == jobID }, "\(byOwner.text)")

            // Finished: results listed without URLs, in Ocean's order.
            let finished = try await client.waitUntilFinished(jobID: jobID, owner: Self.owner)
            #expect(finished["status"] as? Int == 70, "\(finished)\n\(deployment.logs)")
            #expect(finished["dateFinished"] is String)
            let results = finished["results"] as? [[String: Any]] ?? []
            #expect(results.first?["filename"] as? String == "out.txt", "\(finished)")
            #expect(results.first?["type"] as? String == "output")
            #expect(results.first?["filesize"] as? Int == 11)
            #expect(results.allSatisfy { $0["url"] == nil && $0.count == 3 })
            #expect(results.contains { $0["type"] as? String == "algorithmLog" })

            var download = client.signed(owner: Self.owner, jobID: jobID)
            download["index"] = "0"
            let file = try await client.call(.GET, "/api/v1/operator/getResult", query: download)
            #expect(file.status == 200, "\(file.text)")
            #expect(file.text == "hello ocean")
            #expect(file.header("content-disposition") == "attachment;filename=out.txt")
            var ranged = client.signed(owner: Self.owner, jobID: jobID)
            ranged["index"] = "0"
            let part = try await client.call(
                .GET, "/api/v1/operator/getResult", query: ranged, headers: ["range": "bytes=6-"])
            #expect(part.status == 206)
            #expect(part.text == "ocean")
            for (index, text) in [("99", "No such index 99 in this compute job"), ("-1", "Negative index -1")] {
                var request = client.signed(owner: Self.owner, jobID: jobID)
                request["index"] = index
                let refused = try await client.call(.GET, "/api/v1/operator/getResult", query: request)
                #expect(refused.status == 404 && refused.json["error"] as? String == text, "\(refused.text)")
            }
            let stranger = "0x000000000000000000000000000000000000dEaD"
            var foreign = client.signed(owner: stranger, jobID: jobID)
            foreign["index"] = "0"
            let mismatch = try await client.call(.GET, "/api/v1/operator/getResult", query: foreign)
            #expect(mismatch.status == 404)
            #expect(mismatch.json["error"] as? String == "Owner \(stranger) mismatch for job \(jobID)")

            // The agreement is free again once its job has finished. This job runs long, to be stopped.
            let restarted = try await client.call(
                .POST, "/api/v1/operator/compute",
                json: client.signedStart(
                    agreementID: agreement, owner: Self.owner, environment: deployment.environmentID,
                    stages: [Self.stage("import time\ntime.sleep(60)\n")]))
            #expect(restarted.status == 200, "\(restarted.text)")
            let longJob = try #require(restarted.list.first?["jobId"] as? String)
            let stopped = try await client.call(
                .PUT, "/api/v1/operator/compute", query: client.signed(owner: Self.owner, jobID: longJob))
            #expect(stopped.status == 200, "\(stopped.text)")
            #expect(stopped.list.map { $0["stopreq"] as? Int } == [1], "\(stopped.text)")
            let after = try await client.call(.GET, "/api/v1/operator/compute", json: client.signed(jobID: longJob))
            #expect(after.list.first?["stopreq"] as? Int == 1, "\(after.text)")
        }
    }

    // MARK: Allowed providers

    @Test("with C2D_ALLOWED_PROVIDERS set, another signer gets 401 and unsigned status is refused")
    func allowedProviders() async throws {
        let allowed = try Secp256k1.shared.address(privateKey: Self.providerKey)
        try await Deployment.with(extraEnvironment: ["C2D_ALLOWED_PROVIDERS": allowed.description]) { deployment in
            try await deployment.startDev()
            let intruder = OceanClient(deployment: deployment, key: Self.otherKey)
            let provider = OceanClient(deployment: deployment, key: Self.providerKey)
            let body = intruder.signedStart(
                agreementID: "agr-\(UUID().uuidString)", owner: Self.owner, environment: deployment.environmentID,
                stages: [Self.stage("print(1)")])
            let refused = try await intruder.call(.POST, "/api/v1/operator/compute", json: body)
            #expect(refused.status == 401, "\(refused.text)")
            let intruderAddress = try Secp256k1.shared.address(privateKey: Self.otherKey).lowercased
            #expect(
                (refused.json["error"] as? String ?? "").hasSuffix(
                    "the signing ethereum account \(intruderAddress) is not authorized to use this service."),
                "\(refused.text)")
            let unsigned = try await provider.call(.GET, "/api/v1/operator/compute", json: ["owner": Self.owner])
            #expect(unsigned.status == 400)
            #expect(unsigned.json["error"] as? String == "`providerSignature` of agreementId is required.")
            let signed = try await provider.call(
                .GET, "/api/v1/operator/compute", json: provider.signed(owner: Self.owner))
            #expect(signed.status == 200, "\(signed.text)")
            // Wallets write v as 27/28: accepted as well.
            var wallet = provider.signed(owner: Self.owner)
            var bytes = Hex.bytes(String((wallet["providerSignature"] as? String ?? "").dropFirst(2)))
            bytes[64] += 27
            wallet["providerSignature"] = Hex.encode(bytes)
            let walletSigned = try await provider.call(.GET, "/api/v1/operator/compute", query: wallet)
            #expect(walletSigned.status == 200, "\(walletSigned.text)")
        }
    }

    // MARK: Helpers

    static func stage(_ code: String) -> [String: Any] {
        [
            "index": 0, "input": [], "compute": ["Instances": 1, "namespace": "ocean-compute", "maxtime": 60],
            "output": ["metadataUri": "http://127.0.0.1:1"],
            "algorithm": ["id": "", "rawcode": code, "container": ["entrypoint": "python3 $ALGO", "image": "python"]],
        ]
    }

    /// The same signature with s replaced by n − s (and v flipped): valid ECDSA, but malleable, so refused.
    static func highS(_ signature: [UInt8]) -> [UInt8] {
        let order: [UInt8] = Hex.bytes("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        var s = Array(signature[32..<64])
        var borrow = 0
        for index in stride(from: 31, through: 0, by: -1) {
            var difference = Int(order[index]) - Int(s[index]) - borrow
            borrow = difference < 0 ? 1 : 0
            if difference < 0 { difference += 256 }
            s[index] = UInt8(difference)
        }
        return Array(signature[0..<32]) + s + [signature[64] ^ 1]
    }
}

/// Talks to the Ocean API as Ocean's Provider does: signs `owner [+ jobId] + nonce` with its key, nonces from
/// the clock in nanoseconds (strictly increasing within the process).
final class OceanClient: @unchecked Sendable {
    // @unchecked: the shared `lastNonce` is guarded by `lock`.
    let deployment: Deployment
    let key: [UInt8]
    private static let lock = NSLock()
    private nonisolated(unsafe) static var lastNonce: UInt64 = 0

    init(deployment: Deployment, key: [UInt8]) {
        self.deployment = deployment
        self.key = key
    }

    func nextNonce() -> String {
        Self.lock.lock()
        defer { Self.lock.unlock() }
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        Self.lastNonce = max(now, Self.lastNonce + 1)
        return String(Self.lastNonce)
    }

    func sign(_ message: String, nonce: String) -> String {
        try! OceanSignature.sign(message: message, nonce: nonce, privateKey: key)
    }

    func signedStart(agreementID: String, owner: String, environment: String, stages: [[String: Any]])
        -> [String: Any]
    {
        let nonce = nextNonce()
        return [
            "workflow": ["stages": stages], "agreementId": agreementID, "owner": owner, "environment": environment,
            // The Provider sends the nonce as a JSON number; c2d verifies over its literal text.
            "nonce": UInt64(nonce)!, "providerSignature": sign(owner, nonce: nonce), "chainId": 8996,
        ]
    }

    /// Signed selector parameters for status, stop, delete, runningjobs and getResult: the Provider signs
    /// `owner + jobId + nonce`, with Python's `None` for a missing owner.
    func signed(owner: String? = nil, jobID: String? = nil, agreementID: String? = nil) -> [String: Any] {
        let nonce = nextNonce()
        var parameters: [String: Any] = [
            "nonce": nonce, "providerSignature": sign((owner ?? "None") + (jobID ?? ""), nonce: nonce),
        ]
        if let owner { parameters["owner"] = owner }
        if let jobID { parameters["jobId"] = jobID }
        if let agreementID { parameters["agreementId"] = agreementID }
        return parameters
    }

    func call(_ method: HTTPMethod, _ path: String, json: [String: Any], headers: [String: String] = [:])
        async throws -> Deployment.HTTPResult
    {
        try await deployment.request(
            method, path, body: try JSONSerialization.data(withJSONObject: json),
            headers: headers.merging(["content-type": "application/json"]) { $1 })
    }

    func call(_ method: HTTPMethod, _ path: String, query: [String: Any], headers: [String: String] = [:])
        async throws -> Deployment.HTTPResult
    {
        var components = URLComponents()
        components.queryItems = query.map { URLQueryItem(name: $0.key, value: "\($0.value)") }
        let encoded = (components.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
        return try await deployment.request(method, path + "?" + encoded, headers: headers)
    }

    func waitUntilFinished(jobID: String, owner: String, timeout: Duration = .seconds(90)) async throws
        -> [String: Any]
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let status = try await call(.GET, "/api/v1/operator/compute", json: signed(jobID: jobID))
            if let job = status.list.first, job["dateFinished"] is String { return job }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestFailure("job \(jobID) did not finish:\n\(deployment.logs)")
    }
}

extension Deployment.HTTPResult {
    var list: [[String: Any]] { (try? JSONSerialization.jsonObject(with: body)) as? [[String: Any]] ?? [] }

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name }?.1
    }
}

extension Hex {
    /// Test-only: hex that is known to be valid.
    static func bytes(_ text: String) -> [UInt8] {
        try! decode(text)
    }
}
