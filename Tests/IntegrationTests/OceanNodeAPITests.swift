import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Gateway
import Kubernetes
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// ocean-node's compute API (`/api/services`) against the real `c2d` binary, black box: requests are signed by an
/// independent Ethereum library (PyPI eth-account, through `Support/ocean_node_sign.py`), never by c2d's own code.
@Suite("ocean-node compute API", .serialized)
struct OceanNodeAPITests {
    /// Fixed test keys (never used for anything real), not shared with other suites: nonces are kept per signer.
    static let consumerKey = "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"
    static let otherKey = "0x0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
    static let feeToken = "0x967da4048cD07aB37855c090aAF366e4ce1b9F48"

    /// The environment: a free tier of one core and one GiB, a GPU, prices on chain 1.
    static let environmentFields = """
        "cpus": 2, "resources": [{"id": "gpu0", "type": "gpu", "total": 1, "max": 1}],
        "fees": {"1": [{"feeToken": "\(feeToken)", "prices": [{"id": "cpu", "price": 1}]}]},
        "free": {"maxJobs": 2, "maxJobDuration": 60,
                 "resources": [{"id": "cpu", "max": 1}, {"id": "ram", "max": 1}, {"id": "disk", "max": 1}]}
        """

    /// A consumer: its key, its address (as eth-account spells it) and its next nonce.
    final class Consumer: @unchecked Sendable {
        let key: String
        let address: String
        private var nonce = UInt64(Date().timeIntervalSince1970 * 1000)

        init(key: String) throws {
            self.key = key
            address = try Self.python(["address", key])
        }

        func nextNonce() -> String {
            nonce += 1
            return String(nonce)
        }

        func sign(nonce: String, command: String, form: String = "bytes") throws -> String {
            try Self.python(["sign", key, address, nonce, command, form])
        }

        /// `consumerAddress`, `nonce` and `signature` for `command`, with a fresh nonce.
        func credentials(_ command: String, form: String = "bytes") throws -> [String: String] {
            let nonce = nextNonce()
            return [
                "consumerAddress": address, "nonce": nonce,
                "signature": try sign(nonce: nonce, command: command, form: form),
            ]
        }

        static func python(_ arguments: [String]) throws -> String {
            let root = TestEnvironment.repositoryRoot
            let process = Process()
            process.executableURL = root.appendingPathComponent(".data/tools/bin/python3")
            process.arguments =
                [root.appendingPathComponent("Tests/IntegrationTests/Support/ocean_node_sign.py").path]
                + arguments
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw TestFailure("eth-account signer failed (run scripts/install-deps): \(arguments.first ?? "")")
            }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    static func query(_ parameters: [String: String]) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+")
        return parameters.sorted { $0.key < $1.key }.map {
            "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.value)"
        }.joined(separator: "&")
    }

    /// A raw-code algorithm that prints `lines` lines, one per `interval` seconds, then writes an output file.
    static func algorithm(lines: Int, interval: Double) -> [String: Any] {
        let code = """
            import time, os
            for i in range(\(lines)):
                print("tick", i, flush=True)
                time.sleep(\(interval))
            open(os.path.join(os.environ["OUTPUTS"], "answer.txt"), "w").write("42\\n")
            """
        return ["meta": ["rawcode": code, "container": ["entrypoint": "python3 $ALGO", "image": "python"]]]
    }

    func startBody(
        _ deployment: Deployment, _ consumer: Consumer, free: Bool = true, algorithm: [String: Any],
        extra: [String: Any] = [:]
    ) throws -> [String: Any] {
        var body: [String: Any] = [
            "environment": deployment.environmentID, "algorithm": algorithm, "datasets": [] as [Any],
        ]
        for (key, value) in try consumer.credentials(free ? "freeStartCompute" : "startCompute") { body[key] = value }
        for (key, value) in extra { body[key] = value }
        return body
    }

    func post(_ deployment: Deployment, _ path: String, _ body: [String: Any]) async throws -> Deployment.HTTPResult {
        try await deployment.request(
            .POST, path, body: try JSONSerialization.data(withJSONObject: body),
            headers: ["content-type": "application/json"])
    }

    func jobs(_ response: Deployment.HTTPResult) -> [[String: Any]] {
        (try? JSONSerialization.jsonObject(with: response.body)) as? [[String: Any]] ?? []
    }

    /// The error text of a start-route refusal: a JSON string.
    func errorText(_ response: Deployment.HTTPResult) -> String {
        ((try? JSONSerialization.jsonObject(with: response.body, options: .fragmentsAllowed)) as? String)
            ?? response.text
    }

    func status(_ deployment: Deployment, _ parameters: [String: String]) async throws -> [[String: Any]] {
        let response = try await deployment.get("/api/services/compute?" + Self.query(parameters))
        #expect(response.status == 200, "\(response.text)")
        return jobs(response)
    }

    func waitForStatus(
        _ deployment: Deployment, _ jobID: String, timeout: Duration = .seconds(90),
        until done: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let job = try await status(deployment, ["jobId": jobID]).first, done(job) { return job }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestFailure("job \(jobID) did not get there:\n\(deployment.logs)")
    }

    /// Follows `computeStreamableLogs` of `jobID` as `consumer` to its end: what was streamed, and the job's status
    /// when `firstLine` had arrived (a line seen while the job runs is live, not the archive).
    /// `credentials` are signed before the job starts: signing runs Python, which on a loaded machine can take
    /// longer than the job.
    func followStreamableLogs(
        _ deployment: Deployment, credentials: [String: String], jobID: String, firstLine: String
    ) async throws -> (streamed: String, statusAtFirstLine: Int?) {
        var query = credentials
        query["jobId"] = jobID
        let request = HTTPClientRequest(
            url: deployment.baseURL + "/api/services/computeStreamableLogs?" + Self.query(query))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        #expect(response.status == .ok)
        var streamed = ""
        var statusAtFirstLine: Int?
        for try await chunk in response.body {
            streamed += String(buffer: chunk)
            if statusAtFirstLine == nil, streamed.contains(firstLine) {
                statusAtFirstLine = try await status(deployment, ["jobId": jobID]).first?["status"] as? Int
            }
        }
        return (streamed, statusAtFirstLine)
    }

    // MARK: The suite

    @Test("environments, refusals, a free job end to end with live logs, results by index, and ownership")
    func freeJobEndToEnd() async throws {
        let consumer = try Consumer(key: Self.consumerKey)
        let other = try Consumer(key: Self.otherKey)
        try await Deployment.with(environmentFields: Self.environmentFields) { deployment in
            try await deployment.startDev()

            // Environments in ocean-node's shape, capacity from Postgres.
            let environmentsResponse = try await deployment.get("/api/services/computeEnvironments")
            let environments =
                (try JSONSerialization.jsonObject(with: environmentsResponse.body) as? [[String: Any]]) ?? []
            let environment = try #require(environments.first { $0["id"] as? String == deployment.environmentID })
            let resources = environment["resources"] as? [[String: Any]] ?? []
            #expect(resources.map { $0["id"] as? String } == ["cpu", "ram", "disk", "gpu0"])
            #expect(resources.allSatisfy { $0["inUse"] as? Double == 0 && $0["total"] != nil && $0["min"] != nil })
            #expect(resources.last?["type"] as? String == "gpu")
            #expect((environment["free"] as? [String: Any])?["maxJobs"] as? Int == 2)
            #expect(environment["runningJobs"] as? Int == 0)

            // A paid start is refused: no chain verifier can lock the payment.
            let paid = try await post(
                deployment, "/api/services/compute",
                try startBody(
                    deployment, consumer, free: false, algorithm: Self.algorithm(lines: 1, interval: 0),
                    extra: ["maxJobDuration": 30, "payment": ["chainId": 1, "token": Self.feeToken]]))
            #expect(paid.status == 400)
            #expect(errorText(paid) == "Cannot handle payments on chainId: 1")

            // Bad resources are refused with ocean-node's message.
            let tooMuch = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(
                    deployment, consumer, algorithm: Self.algorithm(lines: 1, interval: 0),
                    extra: ["resources": [["id": "cpu", "amount": 5]]]))
            #expect(tooMuch.status == 400)
            #expect(errorText(tooMuch) == "Not enough cpu resources. Requested 5, but max is 1")
            // A resource the free tier does not list is refused, GPUs included.
            let gpu = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(
                    deployment, consumer, algorithm: Self.algorithm(lines: 1, interval: 0),
                    extra: ["resources": [["id": "gpu0", "amount": 1]]]))
            #expect(gpu.status == 400)
            #expect(errorText(gpu) == "No such free resource gpu0")

            // A wrong signature, and a signature of another command, are refused.
            var forged = try startBody(deployment, consumer, algorithm: Self.algorithm(lines: 1, interval: 0))
            forged["signature"] = try other.sign(nonce: forged["nonce"] as! String, command: "freeStartCompute")
            let forgedResponse = try await post(deployment, "/api/services/freeCompute", forged)
            #expect(forgedResponse.status == 401)
            #expect(errorText(forgedResponse) == "consumer address and nonce signature mismatch")

            // A free job is accepted; its algorithm prints a line a second.
            let start = try startBody(
                deployment, consumer, algorithm: Self.algorithm(lines: 5, interval: 1),
                extra: ["metadata": ["purpose": "test"], "additionalViewers": [] as [String]])
            // Signed now (nonces rise in this order): signing takes longer than the job on a loaded machine.
            let ownerLogs = try consumer.credentials("getComputeStreamableLogs", form: "text")
            var otherLogs = try other.credentials("getComputeStreamableLogs")
            var otherStop = try other.credentials("stopCompute")
            let accepted = try await post(deployment, "/api/services/freeCompute", start)
            #expect(accepted.status == 200, "\(accepted.text)")
            let created = try #require(jobs(accepted).first)
            let jobID = try #require(created["jobId"] as? String)
            #expect(created["owner"] as? String == consumer.address)
            #expect(created["status"] as? Int == 1 && created["statusText"] as? String == "Job queued")
            #expect(created["isFree"] as? Bool == true && created["dateFinished"] is NSNull)
            let filled = created["resources"] as? [[String: Any]] ?? []
            #expect(filled.map { $0["id"] as? String } == ["cpu", "ram", "disk"])

            // The same request again: its nonce is spent.
            let replay = try await post(deployment, "/api/services/freeCompute", start)
            #expect(replay.status == 401)
            #expect(errorText(replay) == "nonce: \(start["nonce"] as! String) is not a valid nonce")

            // Status by job id and by consumer; another consumer sees nothing of it in its own listing.
            #expect(try await status(deployment, ["jobId": jobID]).first?["jobId"] as? String == jobID)
            #expect(
                try await status(deployment, ["consumerAddress": consumer.address]).contains {
                    $0["jobId"] as? String == jobID
                })
            #expect(try await status(deployment, ["consumerAddress": other.address]).isEmpty)
            let unselected = try await deployment.request(.GET, "/api/services/compute")
            #expect(unselected.status == 400)

            // Another consumer may neither follow its logs nor stop it.
            otherLogs["jobId"] = jobID
            let refusedLogs = try await deployment.get("/api/services/computeStreamableLogs?" + Self.query(otherLogs))
            #expect(refusedLogs.status == 403)
            otherStop["jobId"] = jobID
            let refusedStop = try await deployment.request(.PUT, "/api/services/compute?" + Self.query(otherStop))
            #expect(refusedStop.status == 200 && jobs(refusedStop).isEmpty)

            // The owner follows the algorithm's output while it runs: the first line arrives before the job ends,
            // and the stream ends with the algorithm.
            _ = try await waitForStatus(deployment, jobID) { $0["status"] as? Int ?? 0 >= 30 }
            let (streamed, statusAtFirstLine) = try await followStreamableLogs(
                deployment, credentials: ownerLogs, jobID: jobID, firstLine: "tick 0")
            #expect(statusAtFirstLine == 40, "the first line came while the job was at \(statusAtFirstLine ?? -1)")
            #expect((0..<5).allSatisfy { streamed.contains("tick \($0)") }, "\(streamed)")

            // Finished: truthful termination details, results by index, the archived log on the native route.
            let finished = try await waitForStatus(deployment, jobID) { !($0["dateFinished"] is NSNull) }
            #expect(finished["status"] as? Int == 70)
            let termination = finished["terminationDetails"] as? [String: Any]
            #expect(termination?["exitCode"] as? Int == 0 && termination?["OOMKilled"] as? Bool == false)
            let results = finished["results"] as? [[String: Any]] ?? []
            let answer = try #require(results.first { $0["filename"] as? String == "answer.txt" })
            let index = try #require(answer["index"] as? Int)
            var resultQuery = try consumer.credentials("getComputeResult")
            resultQuery["jobId"] = jobID
            resultQuery["index"] = String(index)
            let download = try await deployment.get("/api/services/computeResult?" + Self.query(resultQuery))
            #expect(download.status == 200 && download.text == "42\n")
            var otherResult = try other.credentials("getComputeResult")
            otherResult["jobId"] = jobID
            otherResult["index"] = String(index)
            let refusedResult = try await deployment.get("/api/services/computeResult?" + Self.query(otherResult))
            #expect(refusedResult.status == 403)
            #expect(refusedResult.text == "\(other.address) is not authorized to get results for job with id \(jobID)")
            let archived = try await deployment.get("/v1/jobs/\(jobID)/logs/algorithm?follow=true")
            #expect(archived.status == 200 && archived.text.contains("tick 4"))

            // Once it has ended there is nothing to stream.
            var lateLogs = try consumer.credentials("getComputeStreamableLogs")
            lateLogs["jobId"] = jobID
            let late = try await deployment.get("/api/services/computeStreamableLogs?" + Self.query(lateLogs))
            #expect(late.status == 404)
        }
    }

    @Test("stop: a running free job ends stopped; the native route follows a running step")
    func stopAndNativeFollow() async throws {
        let consumer = try Consumer(key: Self.consumerKey)
        try await Deployment.with(environmentFields: Self.environmentFields) { deployment in
            try await deployment.startDev()
            let accepted = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(deployment, consumer, algorithm: Self.algorithm(lines: 60, interval: 1)))
            let jobID = try #require(jobs(accepted).first?["jobId"] as? String)
            _ = try await waitForStatus(deployment, jobID) { $0["status"] as? Int == 40 }

            // The native API streams the same output while it runs (admin token, the job's logs).
            var request = HTTPClientRequest(url: deployment.baseURL + "/v1/jobs/\(jobID)/logs/algorithm?follow=true")
            request.headers.add(name: "authorization", value: try await deployment.defaultAuthorization())
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            #expect(response.status == .ok)
            var iterator = response.body.makeAsyncIterator()
            var seen = ""
            while !seen.contains("tick 1"), let chunk = try await iterator.next() { seen += String(buffer: chunk) }
            #expect(seen.contains("tick 0"))

            var stop = try consumer.credentials("stopCompute")
            stop["jobId"] = jobID
            let stopped = try await deployment.request(.PUT, "/api/services/compute?" + Self.query(stop))
            #expect(stopped.status == 200)
            #expect(jobs(stopped).first?["stopRequested"] as? Bool == true)
            // The follow ends when the step does.
            while try await iterator.next() != nil {}
            let finished = try await waitForStatus(deployment, jobID) { !($0["dateFinished"] is NSNull) }
            #expect(finished["stopRequested"] as? Bool == true)
        }
    }

    @Test("a followed computeStreamableLogs holds a slot of the gateway's stream caps, per consumer: 429 beyond")
    func streamableLogsAreCapped() async throws {
        let consumer = try Consumer(key: Self.consumerKey)
        let caps = ["C2D_SSE_MAX_STREAMS": "4", "C2D_SSE_MAX_STREAMS_PER_CALLER": "1"]
        try await Deployment.with(extraEnvironment: caps, environmentFields: Self.environmentFields) { deployment in
            try await deployment.startDev()
            let start = try startBody(deployment, consumer, algorithm: Self.algorithm(lines: 4, interval: 1))
            // Signed before the job starts: signing runs Python, which on a loaded machine can outlast the job.
            var credentials = [
                try consumer.credentials("getComputeStreamableLogs"),
                try consumer.credentials("getComputeStreamableLogs"),
            ]
            let accepted = try await post(deployment, "/api/services/freeCompute", start)
            let jobID = try #require(jobs(accepted).first?["jobId"] as? String, "\(accepted.text)")
            _ = try await waitForStatus(deployment, jobID) { $0["status"] as? Int == 40 }
            func follow() async throws -> HTTPClientResponse {
                var query = credentials.removeFirst()
                query["jobId"] = jobID
                let url = deployment.baseURL + "/api/services/computeStreamableLogs?" + Self.query(query)
                return try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
            }
            let first = try await follow()
            #expect(first.status == .ok)
            let second = try await follow()
            #expect(second.status == .tooManyRequests)
            #expect(second.headers.first(name: "x-c2d-error-code") == "too_many_streams")
            #expect(second.headers.first(name: "retry-after") == "5")
            let text = String(buffer: try await second.body.collect(upTo: 1 << 16))
            #expect(text.contains("close one first"), "\(text)")
            var streamed = ""
            for try await chunk in first.body { streamed += String(buffer: chunk) }
            #expect(streamed.contains("tick 3"), "\(streamed)")
        }
    }

    @Test("free.maxJobs caps free jobs fleet-wide: the second waits until the first ends; capacity is reported")
    func freeTierCap() async throws {
        let consumer = try Consumer(key: Self.consumerKey)
        let fields = """
            "free": {"maxJobs": 1, "maxJobDuration": 60,
                     "resources": [{"id": "cpu", "max": 1}, {"id": "ram", "max": 1}, {"id": "disk", "max": 1}]}
            """
        try await Deployment.with(environmentFields: fields) { deployment in
            try await deployment.startDev()
            // queueMaxWaitTime lets a job wait for room instead of being refused, as in ocean-node.
            var ids: [String] = []
            for _ in 0..<2 {
                let accepted = try await post(
                    deployment, "/api/services/freeCompute",
                    try startBody(
                        deployment, consumer, algorithm: Self.algorithm(lines: 60, interval: 1),
                        extra: ["queueMaxWaitTime": 120]))
                #expect(accepted.status == 200, "\(accepted.text)")
                ids.append(try #require(jobs(accepted).first?["jobId"] as? String))
            }
            _ = try await waitForStatus(deployment, ids[0]) { $0["status"] as? Int == 40 }
            try await Task.sleep(for: .seconds(3))
            #expect(try await status(deployment, ["jobId": ids[1]]).first?["status"] as? Int == 1)
            let environments =
                try JSONSerialization.jsonObject(
                    with: try await deployment.get("/api/services/computeEnvironments").body) as? [[String: Any]] ?? []
            let environment = try #require(environments.first { $0["id"] as? String == deployment.environmentID })
            #expect(environment["runningfreeJobs"] as? Int == 1 && environment["queuedFreeJobs"] as? Int == 1)
            let cpu = (environment["resources"] as? [[String: Any]])?.first { $0["id"] as? String == "cpu" }
            #expect(cpu?["inUse"] as? Double == 1)
            // Without queueMaxWaitTime a third is refused, as ocean-node refuses what it cannot start.
            let refused = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(deployment, consumer, algorithm: Self.algorithm(lines: 1, interval: 0)))
            #expect(refused.status == 400 && errorText(refused) == "Too many running free jobs ")

            var stop = try consumer.credentials("stopCompute")
            stop["jobId"] = ids[0]
            _ = try await deployment.request(.PUT, "/api/services/compute?" + Self.query(stop))
            _ = try await waitForStatus(deployment, ids[1]) { $0["status"] as? Int ?? 0 >= 20 }
            var stopSecond = try consumer.credentials("stopCompute")
            stopSecond["jobId"] = ids[1]
            _ = try await deployment.request(.PUT, "/api/services/compute?" + Self.query(stopSecond))
        }
    }

    @Test("the operator-service status object carries terminationDetails: null while running, then the exit code")
    func legacyTerminationDetails() async throws {
        try await Deployment.with(extraEnvironment: OceanAPITests.providers) { deployment in
            try await deployment.startDev()
            let client = OceanClient(deployment: deployment, key: OceanAPITests.providerKey)
            let stage: [String: Any] = [
                "index": 0, "input": [] as [Any], "compute": ["maxtime": 30], "output": [String: Any](),
                "algorithm": [
                    "rawcode": "import sys; sys.exit(3)",
                    "container": ["entrypoint": "python3 $ALGO", "image": "python"],
                ],
            ]
            let started = try await client.call(
                .POST, "/api/v1/operator/compute",
                json: client.signedStart(
                    agreementID: "agr-\(UUID().uuidString)", owner: OceanAPITests.owner,
                    environment: deployment.environmentID, stages: [stage]))
            #expect(started.status == 200, "\(started.text)")
            let created = try #require(started.list.first)
            let details = created["terminationDetails"] as? [String: Any]
            #expect(details?["exitCode"] is NSNull && details?["OOMKilled"] is NSNull)
            let jobID = try #require(created["jobId"] as? String)
            let finished = try await client.waitUntilFinished(jobID: jobID, owner: OceanAPITests.owner)
            let termination = finished["terminationDetails"] as? [String: Any]
            #expect(termination?["exitCode"] as? Int == 3 && termination?["OOMKilled"] as? Bool == false)
        }
    }

    @Test(
        "a followed step is over when the job moves past it, finishes, or starts another attempt",
        arguments: [
            (LogStep.algorithm, Domain.JobStatus.provisioningSuccess, 1, false, LogStep.Phase.before),
            (.algorithm, .runningAlgorithm, 1, false, .running),
            (.algorithm, .publishingResults, 1, false, .after),
            (.algorithm, .runningAlgorithm, 2, false, .after),
            (.algorithm, .runningAlgorithm, 1, true, .after),
            (.configure, .configuringVolumes, 1, false, .running),
            (.publish, .runningAlgorithm, 1, false, .before),
            (.publish, .publishingResults, 1, false, .running),
        ])
    func stepPhase(step: LogStep, status: Domain.JobStatus, attempt: Int, finished: Bool, expected: LogStep.Phase) {
        let job = Domain.Job(
            id: JobID(), environment: "e", owner: "o", status: status, attempt: attempt,
            finishedAt: finished ? Date() : nil, workflow: Workflow(stages: []))
        #expect(step.phase(of: job, attempt: 1) == expected)
    }

    @Test("an access list refuses a consumer not on it with 403 Access denied and lets a listed one start")
    func accessList() async throws {
        let consumer = try Consumer(key: Self.consumerKey)
        let outsider = try Consumer(key: Self.otherKey)
        // Listed in upper case: addresses are compared without regard to case.
        let listed = "0x" + consumer.address.dropFirst(2).uppercased()
        let fields = """
            "free": {"maxJobs": 2, "access": {"addresses": ["\(listed)"]},
                     "resources": [{"id": "cpu", "max": 1}, {"id": "ram", "max": 1}, {"id": "disk", "max": 1}]}
            """
        try await Deployment.with(environmentFields: fields) { deployment in
            try await deployment.startDev()
            let before = try await deployment.jobCount()
            let refused = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(deployment, outsider, algorithm: Self.algorithm(lines: 1, interval: 0)))
            #expect(refused.status == 403, "\(refused.text)")
            #expect(errorText(refused) == "Access denied")
            #expect(try await deployment.jobCount() == before, "a refused start wrote no job")
            let accepted = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(deployment, consumer, algorithm: Self.algorithm(lines: 1, interval: 0)))
            #expect(accepted.status == 200, "\(accepted.text)")
        }
    }

    @Test("a GPU request is refused on the local executor with gpu_not_available")
    func gpuRefusedLocally() async throws {
        let consumer = try Consumer(key: Self.consumerKey)
        let fields = """
            "resources": [{"id": "gpu0", "type": "gpu", "total": 1, "max": 1}],
            "free": {"maxJobs": 1, "resources": [{"id": "cpu"}, {"id": "ram"}, {"id": "disk"}, {"id": "gpu0"}]}
            """
        // With the legacy operator API on, which lists the environment's GPUs too.
        try await Deployment.with(extraEnvironment: OceanAPITests.providers, environmentFields: fields) { deployment in
            try await deployment.startDev()
            let refused = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(
                    deployment, consumer, algorithm: Self.algorithm(lines: 1, interval: 0),
                    extra: ["resources": [["id": "gpu0", "amount": 1]]]))
            #expect(refused.status == 400)
            #expect(refused.headers.first { $0.0.lowercased() == "x-c2d-error-code" }?.1 == "gpu_not_available")
            // The legacy operator API announces the environment's GPUs too.
            let legacy = try await deployment.get("/api/v1/operator/environments")
            let list = try JSONSerialization.jsonObject(with: legacy.body) as? [[String: Any]] ?? []
            let environment = try #require(
                list.first { $0["id"] as? String == deployment.environmentID }, "\(legacy.text)")
            #expect(
                environment["gpuNumber"] as? Int == 1 && environment["gpuType"] as? String == "gpu0", "\(legacy.text)")
        }
    }

    @Test("a GPU request reaches the algorithm pod: nvidia.com/gpu and the environment's node selector")
    func gpuOnKubernetes() async throws {
        let consumer = try Consumer(key: Self.consumerKey)
        let fields = """
            "resources": [{"id": "gpu0", "type": "gpu", "total": 2, "max": 2}],
            "gpuNodeSelector": {"nvidia.com/gpu.present": "true"},
            "free": {"maxJobs": 1, "resources": [{"id": "cpu"}, {"id": "ram"}, {"id": "disk"}, {"id": "gpu0"}]}
            """
        try await KubernetesExecutorTests.withKubernetesDeployment(realSteps: false, environmentFields: fields) {
            deployment, cluster in
            let accepted = try await post(
                deployment, "/api/services/freeCompute",
                try startBody(
                    deployment, consumer,
                    algorithm: [
                        "meta": ["rawcode": "print(1)", "container": ["entrypoint": "sleep 2", "image": "python"]]
                    ],
                    extra: ["resources": [["id": "gpu0", "amount": 2]]]))
            #expect(accepted.status == 200, "\(accepted.text)")
            let jobID = try #require(jobs(accepted).first?["jobId"] as? String)
            let deadline = ContinuousClock.now + .seconds(60)
            var spec: PodSpec?
            while spec == nil, ContinuousClock.now < deadline {
                let list = try await cluster.client.list(
                    Pod.self, namespace: cluster.namespace,
                    options: ListOptions(
                        labelSelector: "\(ClusterNaming.jobIDLabel)=\(jobID),\(ClusterNaming.roleLabel)=algorithm"))
                spec = list.items.first?.spec
                if spec == nil { try await Task.sleep(for: .milliseconds(200)) }
            }
            let pod = try #require(spec, "no algorithm pod:\n\(deployment.logs)")
            let resources = pod.containers.first { $0.name == ClusterNaming.Container.algorithm }?.resources
            #expect(resources?.requests?["nvidia.com/gpu"] == "2" && resources?.limits?["nvidia.com/gpu"] == "2")
            #expect(pod.nodeSelector == ["nvidia.com/gpu.present": "true"])
        }
    }
}
