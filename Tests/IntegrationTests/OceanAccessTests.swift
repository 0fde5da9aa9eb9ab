import ChildProcesses
import Foundation
import Gateway
import NIOHTTP1
import Signatures
import TestSupport
import Testing

/// Who may use the Ocean operator-service API, and what it may reach: off unless Providers are listed, signed
/// calls with fresh nonces on every route but `GET /` and `/environments`, and only jobs started through it —
/// while the native API keeps its owner rules for Ocean jobs (docs/operations.md, "Ocean API threat model").
@Suite("Ocean API access", .serialized)
struct OceanAccessTests {
    static let compute = "/api/v1/operator/compute"
    static let owner = OceanAPITests.owner
    static let intruderKey = OceanAPITests.otherKey

    /// An address no other test uses, so listings by owner show this test's jobs only.
    static func freshOwner() -> String {
        "0x" + (0..<20).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    @Test("off by default: every Ocean route answers 404 ocean_api_disabled, and no native job is reachable")
    func disabledByDefault() async throws {
        try await Deployment.with { deployment in
            try await deployment.startDev()
            // What the review tried: an unsigned status call by owner used to list this native job.
            var request = deployment.jobRequest(code: "open('/data/outputs/o.txt','w').write('native')")
            request["owner"] = "anonymous"
            let native = try await deployment.submit(request)
            _ = try await deployment.waitForJob(native)
            let client = OceanClient(deployment: deployment, key: OceanAPITests.providerKey)
            let calls: [(HTTPMethod, String, [String: Any])] = [
                (.GET, "/", [:]),
                (.GET, Self.compute, ["owner": "anonymous"]),
                (.GET, Self.compute, client.signed(owner: "anonymous", jobID: native)),
                (.PUT, Self.compute, client.signed(owner: "anonymous", jobID: native)),
                (.DELETE, Self.compute, [:]),
                (
                    .POST, Self.compute,
                    client.signedStart(
                        agreementID: "agr-\(UUID().uuidString)", owner: Self.owner,
                        environment: deployment.environmentID, stages: [OceanAPITests.stage("print(1)")])
                ),
                (.GET, "/api/v1/operator/runningjobs", [:]),
                (.GET, "/api/v1/operator/getResult", ["owner": "anonymous", "jobId": native, "index": 0]),
                (.GET, "/api/v1/operator/environments", [:]),
            ]
            let jobs = try await deployment.jobCount()
            for (method, path, parameters) in calls {
                let response = try await client.call(method, path, query: parameters)
                #expect(response.status == 404, "\(method) \(path): \(response.status) \(response.text)")
                #expect(
                    (response.json["error"] as? String ?? "").hasPrefix(
                        "The Ocean operator-service API is disabled on this gateway"),
                    "\(method) \(path): \(response.text)")
            }
            #expect(try await deployment.jobCount() == jobs, "a disabled API wrote nothing")
            let job = try await deployment.get("/v1/jobs/\(native)").json
            #expect(job["stopreq"] as? Int == 0)

            // Both switches at once is a configuration error, named at start.
            let both = try deployment.start(
                "both", ["dev", "--port", String(try TestEnvironment.freePort())],
                environment: OceanAPITests.providers.merging(["C2D_OCEAN_OPEN_DEVELOPMENT": "1"]) { $1 })
            #expect(await both.waitForExit(timeout: .seconds(30)))
            #expect(both.exitCode != 0)
            #expect(both.log.contains("C2D_OCEAN_OPEN_DEVELOPMENT=1 and C2D_ALLOWED_PROVIDERS exclude each other"))
        }
    }

    @Test("Ocean routes see only Ocean jobs; native routes apply their owner rules to Ocean jobs")
    func originsAreSeparate() async throws {
        try await Deployment.with(extraEnvironment: OceanAPITests.providers) { deployment in
            try await deployment.startDev()
            let client = OceanClient(deployment: deployment, key: OceanAPITests.providerKey)
            let owner = Self.freshOwner()
            // A native job of the very owner the Ocean calls name, still running while the Ocean API tries it.
            var request = deployment.jobRequest(
                code: "import time\nopen('/data/outputs/o.txt','w').write('native')\ntime.sleep(30)")
            request["owner"] = owner
            let native = try await deployment.submit(request)
            let started = try await client.call(
                .POST, Self.compute,
                json: client.signedStart(
                    agreementID: "agr-\(UUID().uuidString)", owner: owner, environment: deployment.environmentID,
                    stages: [OceanAPITests.stage("open('/data/outputs/o.txt','w').write('ocean')")]))
            let ocean = try #require(started.list.first?["jobId"] as? String, "\(started.text)")
            let finished = try await client.waitUntilFinished(jobID: ocean, owner: owner)
            #expect(finished["status"] as? Int == 70, "\(finished)")

            let byOwner = try await client.call(.GET, Self.compute, query: client.signed(owner: owner))
            #expect(byOwner.list.compactMap { $0["jobId"] as? String } == [ocean], "\(byOwner.text)")
            let byID = try await client.call(.GET, Self.compute, query: client.signed(owner: owner, jobID: native))
            #expect(byID.status == 200 && byID.list.isEmpty, "\(byID.text)")
            let running = try await client.call(.GET, "/api/v1/operator/runningjobs", query: client.signed())
            #expect(!running.list.contains { $0["jobId"] as? String == native }, "\(running.text)")
            var result = client.signed(owner: owner, jobID: native)
            result["index"] = 0
            let download = try await client.call(.GET, "/api/v1/operator/getResult", query: result)
            #expect(download.status == 404, "\(download.text)")
            #expect(download.json["error"] as? String == "Owner \(owner) mismatch for job \(native)")
            let stop = try await client.call(.PUT, Self.compute, query: client.signed(owner: owner, jobID: native))
            #expect(stop.status == 200 && stop.list.isEmpty, "\(stop.text)")
            let untouched = try await deployment.get("/v1/jobs/\(native)").json
            #expect(untouched["stopreq"] as? Int == 0 && !(untouched["dateFinished"] is String), "\(untouched)")

            // Native routes: another owner's token sees nothing of the Ocean job; the owner's address, in any
            // case, reads it like one of its own.
            let stranger = try await deployment.token(
                owner: "0x000000000000000000000000000000000000dead",
                scopes: [
                    .submit, .read,
                ])
            for path in ["", "/results", "/results/0", "/logs", "/events"] {
                let response = try await deployment.get("/v1/jobs/\(ocean)\(path)", token: stranger)
                #expect(response.status == 404, "\(path): \(response.status) \(response.text)")
            }
            #expect(
                try await deployment.post("/v1/jobs/\(ocean)/stop", json: [:] as [String: Any], token: stranger).status
                    == 404)
            let strangerList = try await deployment.get("/v1/jobs?owner=\(owner)", token: stranger)
            #expect((strangerList.json["jobs"] as? [Any])?.count == 0, "\(strangerList.text)")
            let ownerToken = try await deployment.token(owner: owner.lowercased(), scopes: [.read])
            #expect(try await deployment.get("/v1/jobs/\(ocean)/results/0", token: ownerToken).text == "ocean")
            let stopNative = try await deployment.post("/v1/jobs/\(native)/stop", json: [:] as [String: Any])
            #expect(stopNative.status == 202)
        }
    }

    @Test("open development mode: loud warning at start, and a signer sees only the jobs it started")
    func openDevelopment() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_OCEAN_OPEN_DEVELOPMENT": "1"]) { deployment in
            try await deployment.startDev()
            // The whole log: `logs` keeps each process's tail, which the start's later lines may have filled.
            let warning = "OCEAN API OPEN (C2D_OCEAN_OPEN_DEVELOPMENT=1)"
            let warned = deployment.processes.contains { $0.log.contains(warning) }
            #expect(warned, "\(deployment.logs)")
            let alice = OceanClient(deployment: deployment, key: (0..<32).map { _ in UInt8.random(in: 0...255) })
            let mallory = OceanClient(deployment: deployment, key: (0..<32).map { _ in UInt8.random(in: 0...255) })
            let started = try await alice.call(
                .POST, Self.compute,
                json: alice.signedStart(
                    agreementID: "agr-\(UUID().uuidString)", owner: Self.owner, environment: deployment.environmentID,
                    stages: [OceanAPITests.stage("import time\ntime.sleep(30)")]))
            let job = try #require(started.list.first?["jobId"] as? String, "\(started.text)")
            #expect(started.status == 200)

            for parameters in [mallory.signed(owner: Self.owner), mallory.signed(owner: Self.owner, jobID: job)] {
                let status = try await mallory.call(.GET, Self.compute, query: parameters)
                #expect(status.status == 200 && status.list.isEmpty, "\(status.text)")
            }
            let stop = try await mallory.call(.PUT, Self.compute, query: mallory.signed(owner: Self.owner, jobID: job))
            #expect(stop.status == 200 && stop.list.isEmpty, "\(stop.text)")
            let running = try await mallory.call(.GET, "/api/v1/operator/runningjobs", query: mallory.signed())
            #expect(running.status == 200 && running.list.isEmpty, "\(running.text)")
            var result = mallory.signed(owner: Self.owner, jobID: job)
            result["index"] = 0
            #expect(try await mallory.call(.GET, "/api/v1/operator/getResult", query: result).status == 404)

            let own = try await alice.call(.GET, Self.compute, query: alice.signed(owner: Self.owner, jobID: job))
            #expect(own.list.first?["stopreq"] as? Int == 0, "\(own.text)")
            let stopped = try await alice.call(.PUT, Self.compute, query: alice.signed(owner: Self.owner, jobID: job))
            #expect(stopped.list.first?["stopreq"] as? Int == 1, "\(stopped.text)")
        }
    }

    @Test("every signed route refuses a missing, malformed or foreign signature and a replayed or older nonce")
    func signatureRules() async throws {
        try await Deployment.with(extraEnvironment: OceanAPITests.providers) { deployment in
            try await deployment.startDev()
            let provider = OceanClient(deployment: deployment, key: OceanAPITests.providerKey)
            let intruder = OceanClient(deployment: deployment, key: Self.intruderKey)
            let started = try await provider.call(
                .POST, Self.compute,
                json: provider.signedStart(
                    agreementID: "agr-\(UUID().uuidString)", owner: Self.owner, environment: deployment.environmentID,
                    stages: [OceanAPITests.stage("import time\ntime.sleep(30)")]))
            let job = try #require(started.list.first?["jobId"] as? String, "\(started.text)")

            /// A route, the message its signature covers, and its other parameters.
            struct Route {
                var method: HTTPMethod
                var path: String
                var message: String
                var parameters: [String: Any]
            }
            let routes = [
                Route(
                    method: .POST, path: Self.compute, message: Self.owner,
                    parameters: [
                        "owner": Self.owner, "environment": deployment.environmentID,
                        "agreementId": "agr-\(UUID().uuidString)", "workflow": ["stages": [Any]()],
                    ]),
                Route(
                    method: .PUT, path: Self.compute, message: Self.owner + job,
                    parameters: ["owner": Self.owner, "jobId": job]),
                Route(
                    method: .GET, path: Self.compute, message: Self.owner + job,
                    parameters: ["owner": Self.owner, "jobId": job]),
                Route(method: .DELETE, path: Self.compute, message: Self.owner, parameters: ["owner": Self.owner]),
                Route(method: .GET, path: "/api/v1/operator/runningjobs", message: "None", parameters: [:]),
                Route(
                    method: .GET, path: "/api/v1/operator/getResult", message: Self.owner + job,
                    parameters: ["owner": Self.owner, "jobId": job, "index": 0]),
            ]
            let intruderAddress = try Secp256k1.shared.address(privateKey: Self.intruderKey).lowercased
            let jobs = try await deployment.jobCount()
            for route in routes {
                let name = "\(route.method) \(route.path)"
                func call(_ signature: String?, nonce: String, by client: OceanClient = provider) async throws
                    -> Deployment.HTTPResult
                {
                    var parameters = route.parameters
                    parameters["nonce"] = nonce
                    if let signature { parameters["providerSignature"] = signature }
                    return try await client.call(route.method, route.path, json: parameters)
                }
                func error(_ response: Deployment.HTTPResult) -> String { response.json["error"] as? String ?? "" }

                let nonce = provider.nextNonce()
                let valid = provider.sign(route.message, nonce: nonce)
                let missing = try await call(nil, nonce: nonce)
                #expect(missing.status == 400, "\(name) unsigned: \(missing.text)")
                let malformed = try await call("0xzz" + String(valid.dropFirst(4)), nonce: nonce)
                #expect(malformed.status == 400 && error(malformed) == "Failed to recover address", "\(name)")
                let truncated = try await call(String(valid.dropLast(2)), nonce: nonce)
                #expect(truncated.status == 400 && error(truncated) == "Failed to recover address", "\(name)")
                // Over another message, the signature recovers some other address, which is not allowed.
                let otherMessage = try await call(provider.sign(route.message + "x", nonce: nonce), nonce: nonce)
                #expect(otherMessage.status == 401, "\(name) other message: \(otherMessage.text)")
                let foreign = try await call(intruder.sign(route.message, nonce: nonce), nonce: nonce, by: intruder)
                #expect(foreign.status == 401 && error(foreign).contains(intruderAddress), "\(name): \(foreign.text)")
                let notANumber = try await call(provider.sign(route.message, nonce: "1e9"), nonce: "1e9")
                #expect(notANumber.status == 400 && error(notANumber).hasPrefix("Invalid nonce"), "\(name)")

                let accepted = try await call(valid, nonce: nonce)
                #expect(
                    ![400, 401].contains(accepted.status) || error(accepted) == "Missing stages",
                    "\(name): \(accepted.text)")
                let replayed = try await call(valid, nonce: nonce)
                #expect(
                    replayed.status == 400 && error(replayed).hasPrefix("Invalid nonce"), "\(name): \(replayed.text)")
                let older = String(UInt64(nonce)! - 1)
                let outOfOrder = try await call(provider.sign(route.message, nonce: older), nonce: older)
                #expect(outOfOrder.status == 400 && error(outOfOrder).hasPrefix("Invalid nonce"), "\(name)")
            }
            #expect(try await deployment.jobCount() == jobs, "no refused start wrote a job")
            // Only the accepted PUT stopped the job.
            let status = try await provider.call(.GET, Self.compute, json: provider.signed(jobID: job))
            #expect(status.list.first?["stopreq"] as? Int == 1, "\(status.text)")
        }
    }
}
