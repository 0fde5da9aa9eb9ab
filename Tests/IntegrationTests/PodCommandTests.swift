import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Persistence
import Storage
import TestSupport
import Testing

/// The Kubernetes executor's in-pod steps as real processes: `c2d pod configure` on a data directory, and
/// `c2d pod publish` against a real gateway's internal upload endpoint.
@Suite("Pod steps", .serialized)
struct PodCommandTests {
    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-pod-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func write(_ text: String, to file: URL) throws {
        try FileManager.default.createDirectory(
            at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: file)
    }

    /// Runs `c2d <arguments>` to its end and returns its exit code.
    static func run(
        _ name: String, _ arguments: [String], environment: [String: String] = [:], logDirectory: URL
    ) async throws -> (code: Int32, log: String) {
        let process = try C2DProcess(
            name: name, arguments: arguments, environment: environment, logDirectory: logDirectory)
        guard await process.waitForExit(timeout: .seconds(120)) else {
            await process.kill9()
            throw TestFailure("\(name) did not exit:\n\(process.log)")
        }
        return (process.exitCode ?? -1, process.log)
    }

    static func workflow(checksum: String) -> String {
        """
        {"stages": [{"index": 0,
          "input": [{"id": "did:op:abc", "path": ["set/hello.txt"], "checksum": ["\(checksum)"]}],
          "algorithm": {"rawcode": "print(1)", "container": {"entrypoint": "python3 $ALGO", "image": "python"}}}]}
        """
    }

    @Test("configure provisions a path input into /data; a checksum mismatch exits 31 and says why")
    func configure() async throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let datasets = root.appendingPathComponent("datasets")
        try Self.write("hello, pod\n", to: datasets.appendingPathComponent("set/hello.txt"))
        let digest = try FileCopy.digest(of: datasets.appendingPathComponent("set/hello.txt"))

        let good = root.appendingPathComponent("good.json")
        try Self.write(Self.workflow(checksum: "sha256:\(digest.sha256)"), to: good)
        let data = root.appendingPathComponent("good-data")
        let terminationLog = root.appendingPathComponent("good-termination").path
        let ok = try await Self.run(
            "configure-good",
            ["pod", "configure", "--workflow", good.path, "--data", data.path, "--termination-log", terminationLog],
            environment: ["C2D_DATA_DIR": datasets.path], logDirectory: root)
        #expect(ok.code == 0, "\(ok.log)")
        let input = data.appendingPathComponent("inputs/abc/0")
        #expect((try? String(contentsOf: input, encoding: .utf8)) == "hello, pod\n")
        #expect(
            (try? String(contentsOf: data.appendingPathComponent("transformations/algorithm"), encoding: .utf8))
                == "print(1)")
        for directory in ["ddos", "outputs", "logs"] {
            #expect(FileManager.default.fileExists(atPath: data.appendingPathComponent(directory).path))
        }
        let configureLog = try String(
            contentsOf: data.appendingPathComponent("adminlogs/configure.log"), encoding: .utf8)
        #expect(configureLog.contains("configuration finished"))
        #expect(!FileManager.default.fileExists(atPath: terminationLog))

        let bad = root.appendingPathComponent("bad.json")
        try Self.write(Self.workflow(checksum: "sha256:" + String(repeating: "0", count: 64)), to: bad)
        let badData = root.appendingPathComponent("bad-data")
        let badTermination = root.appendingPathComponent("bad-termination").path
        let failed = try await Self.run(
            "configure-bad",
            ["pod", "configure", "--workflow", bad.path, "--data", badData.path, "--termination-log", badTermination],
            environment: ["C2D_DATA_DIR": datasets.path], logDirectory: root)
        #expect(failed.code == 31, "\(failed.log)")
        let message = (try? String(contentsOfFile: badTermination, encoding: .utf8)) ?? ""
        #expect(message.contains("checksum mismatch"), "\(message)")
        #expect(message.contains("did:op:abc"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: badData.appendingPathComponent("inputs/abc/0").path))
    }

    /// A gateway alone (no worker, so submitted jobs stay queued for the test to claim) with a 4 KiB upload limit.
    static func withGateway(_ body: (Deployment, PostgresJobStore) async throws -> Void) async throws {
        try await Deployment.with(extraEnvironment: ["C2D_MAX_UPLOAD_BYTES": "4096"]) { deployment in
            try await TestDatabase.migrate(deployment.postgres)
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            try await body(deployment, PostgresJobStore(client: deployment.postgres))
        }
    }

    /// Submits a job and claims it as a worker would, returning its id and attempt.
    static func claimedJob(_ deployment: Deployment, store: PostgresJobStore) async throws -> (JobID, Int) {
        let text = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
        guard let id = JobID(text) else { throw TestFailure("bad job id \(text)") }
        try await store.markAdmitted([id])
        guard case .claimed(let job) = try await store.claim(jobID: id, workerID: "pod-test", lease: .seconds(600))
        else {
            throw TestFailure("job \(id) could not be claimed")
        }
        return (id, job.attempt)
    }

    static func put(
        _ deployment: Deployment, _ path: String, token: String?, body: String
    ) async throws -> Deployment.HTTPResult {
        var headers: [String: String] = [:]
        if let token { headers["authorization"] = "Bearer " + token }
        return try await deployment.request(.PUT, path, body: Data(body.utf8), headers: headers, authorize: false)
    }

    @Test("publish uploads outputs and logs in Ocean's order; a wrong token is 401 and exit 62")
    func publish() async throws {
        try await Self.withGateway { deployment, store in
            let (id, attempt) = try await Self.claimedJob(deployment, store: store)
            let token = UploadToken.generate()
            try await store.registerUploadToken(jobID: id, attempt: attempt, hash: UploadToken.hash(token))

            let data = deployment.directory.appendingPathComponent("pod-data")
            let files = [
                "outputs/b.txt": "bee\n", "outputs/a dir/x y.csv": "1,2\n", "logs/extra.log": "extra\n",
                "logs/algorithm.log": "ran\n", "adminlogs/configure.log": "configured\n",
            ]
            for (path, text) in files { try Self.write(text, to: data.appendingPathComponent(path)) }
            let terminationLog = deployment.directory.appendingPathComponent("termination").path
            let arguments = [
                "pod", "publish", "--data", data.path, "--results-url", deployment.baseURL, "--job-id", "\(id)",
                "--attempt", "\(attempt)", "--termination-log", terminationLog,
            ]
            let published = try await Self.run(
                "publish", arguments, environment: ["C2D_UPLOAD_TOKEN": token], logDirectory: deployment.directory)
            #expect(published.code == 0, "\(published.log)\n\(deployment.logs)")

            let uploads = try await store.uploads(jobID: id, attempt: attempt)
            #expect(
                uploads.map(\.name) == [
                    "a dir/x y.csv", "b.txt", "algorithm.log", "extra.log", "configure.log", "publish.log",
                ])
            #expect(
                uploads.map(\.kind) == [
                    .output, .output, .algorithmLog, .algorithmLog, .configurationLog, .publishLog,
                ])
            #expect(uploads.map(\.index) == Array(0..<6))
            let local = [
                "outputs/a dir/x y.csv", "outputs/b.txt", "logs/algorithm.log", "logs/extra.log",
                "adminlogs/configure.log", "adminlogs/publish.log",
            ]
            let resultsRoot = deployment.directory.appendingPathComponent("results")
            for (upload, path) in zip(uploads, local) {
                let expected = try FileCopy.digest(of: data.appendingPathComponent(path))
                #expect(upload.size == expected.size && upload.sha256 == expected.sha256, "\(path)")
                let stored = try FileCopy.digest(of: resultsRoot.appendingPathComponent(upload.location))
                #expect(stored == expected, "\(path) as stored")
            }

            // The executor hands the uploads to finish; the native API then serves them.
            // The test claimed the job once: claim number 1.
            try await store.finish(
                JobClaim(jobID: id, attempt: attempt, number: 1, workerID: "pod-test"),
                result: ExecutionResult(status: .finished, outcome: .succeeded, exitCode: 0, results: uploads))
            #expect(try await deployment.download("\(id)", name: "a dir/x y.csv") == "1,2\n")

            // A finished job takes no more uploads.
            let late = try await Self.put(
                deployment, "/internal/v1/jobs/\(id)/attempts/\(attempt)/results/output/late.txt", token: token,
                body: "late")
            #expect(late.status == 409, "\(late.text)")

            // A wrong token: every upload is refused with 401, and the step exits 62 saying so.
            let (other, otherAttempt) = try await Self.claimedJob(deployment, store: store)
            try await store.registerUploadToken(
                jobID: other, attempt: otherAttempt, hash: UploadToken.hash(UploadToken.generate()))
            let refused = try await Self.run(
                "publish-wrong-token",
                [
                    "pod", "publish", "--data", data.path, "--results-url", deployment.baseURL, "--token",
                    UploadToken.generate(), "--job-id", "\(other)", "--attempt", "\(otherAttempt)",
                    "--termination-log", terminationLog,
                ], logDirectory: deployment.directory)
            #expect(refused.code == 62, "\(refused.log)")
            let message = (try? String(contentsOfFile: terminationLog, encoding: .utf8)) ?? ""
            #expect(message.contains("401"), "\(message)")
            #expect(try await store.uploads(jobID: other, attempt: otherAttempt).isEmpty)
        }
    }

    @Test("the upload endpoint: 401 without the token, 404 unknown job, 400 bad kind or name, 413, 409 superseded")
    func endpointCodes() async throws {
        try await Self.withGateway { deployment, store in
            let (id, attempt) = try await Self.claimedJob(deployment, store: store)
            let token = UploadToken.generate()
            try await store.registerUploadToken(jobID: id, attempt: attempt, hash: UploadToken.hash(token))
            let base = "/internal/v1/jobs/\(id)/attempts/\(attempt)/results"

            #expect(try await Self.put(deployment, "\(base)/output/a.txt", token: nil, body: "x").status == 401)
            #expect(
                try await Self.put(deployment, "\(base)/output/a.txt", token: UploadToken.generate(), body: "x")
                    .status == 401)
            #expect(
                try await Self.put(
                    deployment, "/internal/v1/jobs/\(JobID())/attempts/1/results/output/a.txt", token: token,
                    body: "x"
                ).status == 404)
            #expect(try await Self.put(deployment, "\(base)/secrets/a.txt", token: token, body: "x").status == 400)
            #expect(try await Self.put(deployment, "\(base)/output/%2E%2E/a", token: token, body: "x").status == 400)
            #expect(try await Self.put(deployment, "\(base)/publishLog/a/b.log", token: token, body: "x").status == 400)
            let large = try await Self.put(
                deployment, "\(base)/output/big.bin", token: token, body: String(repeating: "x", count: 5000))
            #expect(large.status == 413, "\(large.text)")
            // Without a Content-Length the limit holds while the body streams in.
            var chunked = HTTPClientRequest(url: deployment.baseURL + "\(base)/output/big.bin")
            chunked.method = .PUT
            chunked.headers.add(name: "authorization", value: "Bearer " + token)
            let (chunks, continuation) = AsyncStream<ByteBuffer>.makeStream()
            continuation.yield(ByteBuffer(repeating: 0x78, count: 3000))
            continuation.yield(ByteBuffer(repeating: 0x78, count: 3000))
            continuation.finish()
            chunked.body = .stream(chunks, length: .unknown)
            let streamed = try await HTTPClient.shared.execute(chunked, timeout: .seconds(30))
            #expect(streamed.status.code == 413)
            #expect(try await store.uploads(jobID: id, attempt: attempt).isEmpty)

            // Idempotent: the same name again replaces the file.
            #expect(try await Self.put(deployment, "\(base)/output/a.txt", token: token, body: "one").status == 200)
            let again = try await Self.put(deployment, "\(base)/output/a.txt", token: token, body: "two!")
            #expect(again.status == 200, "\(again.text)")
            #expect(again.json["size"] as? Int == 4)
            let uploads = try await store.uploads(jobID: id, attempt: attempt)
            #expect(uploads.map(\.name) == ["a.txt"] && uploads.first?.size == 4)

            // Another attempt took over: the old attempt's token uploads nothing more.
            try await deployment.postgres.execute(
                "update jobs set attempt = attempt + 1 where id = $1", [.uuid(id.uuid)])
            let superseded = try await Self.put(deployment, "\(base)/output/c.txt", token: token, body: "late")
            #expect(superseded.status == 409, "\(superseded.text)")
        }
    }

    @Test("the two pods coordinate through the volume: workflow from the gateway, marks, publish after the end")
    func coordination() async throws {
        try await Self.withGateway { deployment, store in
            let (id, attempt) = try await Self.claimedJob(deployment, store: store)
            let token = UploadToken.generate()
            #expect(try await store.registerUploadToken(jobID: id, attempt: attempt, hash: UploadToken.hash(token)))
            // An adopting worker registers nothing: the attempt keeps the token its pods hold.
            #expect(
                try await !store.registerUploadToken(
                    jobID: id, attempt: attempt, hash: UploadToken.hash(UploadToken.generate())))
            let steps: [String: String] = [
                "C2D_RESULTS_URL": deployment.baseURL, "C2D_JOB_ID": "\(id)", "C2D_ATTEMPT": "\(attempt)",
                "C2D_UPLOAD_TOKEN": token,
            ]
            let data = deployment.directory.appendingPathComponent("attempt-data")
            let marks = data.appendingPathComponent(".c2d")
            let termination = deployment.directory.appendingPathComponent("termination").path

            // configure: the workflow comes from the gateway (no file), then the inputs-ready mark.
            let configured = try await Self.run(
                "configure", ["pod", "configure", "--data", data.path, "--termination-log", termination],
                environment: steps, logDirectory: deployment.directory)
            #expect(configured.code == 0, "\(configured.log)")
            #expect(
                (try? String(contentsOf: data.appendingPathComponent("transformations/algorithm"), encoding: .utf8))
                    == "print(1)")
            #expect(FileManager.default.fileExists(atPath: marks.appendingPathComponent("configured").path))
            let waited = try await Self.run(
                "await", ["pod", "await-inputs", "--data", data.path, "--seconds", "5"],
                logDirectory: deployment.directory)
            #expect(waited.code == 0, "\(waited.log)")

            // A wrong token gets no workflow: configure fails with the reason, and marks the failure.
            let refusedData = deployment.directory.appendingPathComponent("refused-data")
            let refused = try await Self.run(
                "configure-refused",
                ["pod", "configure", "--data", refusedData.path, "--termination-log", termination],
                environment: steps.merging(["C2D_UPLOAD_TOKEN": UploadToken.generate()]) { $1 },
                logDirectory: deployment.directory)
            #expect(refused.code == 1)
            #expect(((try? String(contentsOfFile: termination, encoding: .utf8)) ?? "").contains("401"))
            let notConfigured = try await Self.run(
                "await-refused", ["pod", "await-inputs", "--data", refusedData.path, "--seconds", "5"],
                logDirectory: deployment.directory)
            #expect(notConfigured.code == 1, "the algorithm must not start after a failed configure")

            // publish waits for the algorithm's end, marked by signal-end when it is stopped.
            try Self.write("out\n", to: data.appendingPathComponent("outputs/out.txt"))
            try Self.write("ran\n", to: data.appendingPathComponent("logs/algorithm.log"))
            let publish = try C2DProcess(
                name: "publish", arguments: ["pod", "publish", "--after-algorithm", "--data", data.path],
                environment: steps, logDirectory: deployment.directory)
            let signalEnd = try C2DProcess(
                name: "signal-end", arguments: ["pod", "signal-end", "--data", data.path], environment: [:],
                logDirectory: deployment.directory)
            // The sidecar's postStart hook returns once signal-end handles SIGTERM; only then does the algorithm
            // start, so an algorithm that ends at once cannot beat the handler.
            let ready = try await Self.run(
                "signal-end-ready", ["pod", "signal-end", "--wait-until-ready", "--data", data.path],
                logDirectory: deployment.directory)
            #expect(ready.code == 0, "\(ready.log)")
            let neverReady = try await Self.run(
                "signal-end-never-ready",
                [
                    "pod", "signal-end", "--wait-until-ready", "--ready-timeout-seconds", "1", "--data",
                    refusedData.path,
                ],
                logDirectory: deployment.directory)
            #expect(neverReady.code == 1, "no signal-end runs there: the hook fails and the kubelet restarts it")
            try await Task.sleep(for: .seconds(1))
            #expect(publish.isRunning, "publish waits for the algorithm: \(publish.log)")
            await signalEnd.stop()
            #expect(signalEnd.exitCode == 0, "\(signalEnd.log)")
            #expect(FileManager.default.fileExists(atPath: marks.appendingPathComponent("algorithm-ended").path))
            #expect(await publish.waitForExit(timeout: .seconds(30)))
            #expect(publish.exitCode == 0, "\(publish.log)")
            let names = try await store.uploads(jobID: id, attempt: attempt).map(\.name)
            #expect(names == ["out.txt", "algorithm.log", "configure.log", "publish.log"], "\(names)")
            // publish.log is written on the volume (it is writable in the io pod) and uploaded.
            #expect(FileManager.default.fileExists(atPath: data.appendingPathComponent("adminlogs/publish.log").path))

            // Stopped before the algorithm ended (SIGTERM): the logs only.
            let (other, otherAttempt) = try await Self.claimedJob(deployment, store: store)
            let otherToken = UploadToken.generate()
            try await store.registerUploadToken(jobID: other, attempt: otherAttempt, hash: UploadToken.hash(otherToken))
            let otherData = deployment.directory.appendingPathComponent("stopped-data")
            try Self.write("partial\n", to: otherData.appendingPathComponent("outputs/partial.txt"))
            try Self.write("started\n", to: otherData.appendingPathComponent("logs/algorithm.log"))
            let stopped = try C2DProcess(
                name: "publish-stopped", arguments: ["pod", "publish", "--after-algorithm", "--data", otherData.path],
                environment: steps.merging([
                    "C2D_JOB_ID": "\(other)", "C2D_ATTEMPT": "\(otherAttempt)", "C2D_UPLOAD_TOKEN": otherToken,
                ]) { $1 }, logDirectory: deployment.directory)
            try await Task.sleep(for: .seconds(1))
            await stopped.stop()
            #expect(stopped.exitCode == 0, "\(stopped.log)")
            let kept = try await store.uploads(jobID: other, attempt: otherAttempt).map(\.name)
            #expect(kept == ["algorithm.log", "publish.log"], "\(kept)")
        }
    }

    @Test("relay-log copies the algorithm's log as it grows, starts over when it shrank, drains it on SIGTERM")
    func relayLog() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-relay-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("logs/algorithm.log")
        let relay = try C2DProcess(
            name: "relay", arguments: ["pod", "relay-log", "--interval-milliseconds", "20"],
            environment: ["C2D_RELAYED_LOG": file.path], logDirectory: directory)
        func waitFor(_ text: String) async throws {
            let deadline = ContinuousClock.now + .seconds(10)
            while !relay.log.contains(text), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(relay.log.contains(text), "\(relay.log)")
        }
        // The file does not exist until the algorithm starts: the relay waits for it.
        try await Task.sleep(for: .milliseconds(200))
        #expect(relay.isRunning, "\(relay.log)")
        try Self.write("one\n", to: file)
        try await waitFor("one\n")
        let handle = try FileHandle(forWritingTo: file)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("two\n".utf8))
        try await waitFor("one\ntwo\n")
        // Truncated and rewritten: read again from the start.
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data("3\n".utf8))
        try await waitFor("one\ntwo\n3\n")
        // Written just before the algorithm's end: relayed once the sidecar is stopped.
        try handle.write(contentsOf: Data("last\n".utf8))
        try handle.close()
        await relay.stop()
        #expect(relay.exitCode == 0, "\(relay.log)")
        #expect(relay.log.hasSuffix("3\nlast\n"), "\(relay.log)")
    }
}
