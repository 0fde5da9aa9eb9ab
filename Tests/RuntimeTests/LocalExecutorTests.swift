import Domain
import Foundation
import Runtime
import Storage
import Testing

/// Real jobs through the local executor: bubblewrap, prlimit and Debian's python3, no network beyond loopback.
/// Serialized because the timing assertions should not compete with other sandboxes for two cores.
@Suite("Local executor", .serialized)
struct LocalExecutorTests {
    static let csv = "city,temperature\nParis,14.5\nOslo,3.0\nRome,19.5\nLima,18.0\n"

    static let statistics = """
        import csv, json, os, sys
        did = json.loads(os.environ["DIDS"])[0]
        with open(os.path.join(os.environ["INPUTS"], did, "0")) as f:
            rows = list(csv.DictReader(f))
        values = [float(r["temperature"]) for r in rows]
        with open("/data/inputs/algoCustomData.json") as f:
            custom = json.load(f)
        stats = {"count": len(values), "mean": sum(values) / len(values), "max": max(values),
                 "greeting": custom["greeting"]}
        with open(os.path.join(os.environ["OUTPUTS"], "stats.json"), "w") as f:
            json.dump(stats, f, sort_keys=True)
        os.makedirs("/data/outputs/sub", exist_ok=True)
        with open("/data/outputs/sub/rows.csv", "w") as f:
            f.write("count\\n%d\\n" % len(values))
        with open("/data/logs/extra.log", "w") as f:
            f.write("extra\\n")
        print("processed", len(values), "rows")
        print("to stderr", file=sys.stderr)
        """

    @Test("a CSV from the data directory becomes statistics, published in Ocean's order with digests")
    func endToEndPathInput() async throws {
        try await RuntimeFixture.with { fixture in
            let path = try fixture.writeData("weather/cities.csv", Self.csv)
            let checksum = try FileCopy.digest(of: fixture.dataDirectory.appendingPathComponent(path)).sha256
            let workflow = RuntimeFixture.workflow(
                rawcode: Self.statistics,
                inputs: [Workflow.Input(id: "did:op:abc123", path: [path], checksum: ["sha256:\(checksum)"])])
            let (result, statuses) = try await fixture.run(workflow)

            #expect(result.status == .finished)
            #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
            #expect(result.failureReason == nil)
            #expect(statuses == [.configuringVolumes, .provisioningSuccess, .runningAlgorithm, .publishingResults])
            #expect(
                result.results.map(\.name) == [
                    "stats.json", "sub/rows.csv", "algorithm.log", "extra.log", "configure.log", "publish.log",
                ])
            #expect(
                result.results.map(\.kind) == [
                    .output, .output, .algorithmLog, .algorithmLog, .configurationLog, .publishLog,
                ])
            #expect(result.results.map(\.index) == Array(0..<6))
            for file in result.results {
                let stored = try fixture.store.file(at: file.location)
                let digest = try FileCopy.digest(of: stored)
                #expect(digest.sha256 == file.sha256, "\(file.name)")
                #expect(digest.size == file.size, "\(file.name)")
            }
            let stats = try fixture.text(of: result.results[0])
            #expect(stats == #"{"count": 4, "greeting": "hello", "max": 19.5, "mean": 13.75}"#)
            let algorithmLog = try fixture.text(of: result.results[2])
            #expect(algorithmLog.contains("processed 4 rows"))
            #expect(algorithmLog.contains("to stderr"))
            let configureLog = try fixture.text(of: result.results[4])
            #expect(configureLog.contains("checksum verified"))
            #expect(configureLog.contains(checksum))
            let publishLog = try fixture.text(of: result.results[5])
            #expect(publishLog.contains("stored output stats.json"))
            // The workspace is gone after the job.
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: fixture.workRoot.path)
            #expect(leftovers.isEmpty)
        }
    }

    @Test("an input over HTTP is downloaded and verified; a wrong checksum fails with 31")
    func httpInput() async throws {
        try await RuntimeFixture.with { fixture in
            let served = fixture.base.appendingPathComponent("served")
            try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
            try Data(Self.csv.utf8).write(to: served.appendingPathComponent("cities.csv"))
            let server = try await LocalHTTPServer(root: served)
            defer { server.stop() }
            let checksum = try FileCopy.digest(of: served.appendingPathComponent("cities.csv")).sha256

            let good = RuntimeFixture.workflow(
                rawcode: Self.statistics,
                inputs: [
                    Workflow.Input(id: "did:op:web", url: [server.url("redirect/cities.csv")], checksum: [checksum])
                ])
            let (ok, _) = try await fixture.run(good)
            #expect(ok.outcome == .succeeded, "\(ok.failureReason ?? "")")
            #expect(try fixture.text(of: ok.results[0]).contains(#""count": 4"#))
            let configureLog = try fixture.text(of: try #require(ok.results.first { $0.kind == .configurationLog }))
            #expect(configureLog.contains("redirected to http://127.0.0.1:\(server.port)/cities.csv"))

            let wrong = RuntimeFixture.workflow(
                rawcode: Self.statistics,
                inputs: [
                    Workflow.Input(
                        id: "did:op:web", url: [server.url("cities.csv")], checksum: [String(repeating: "0", count: 64)]
                    )
                ])
            let (failed, statuses) = try await fixture.run(wrong)
            #expect(failed.status == .dataProvisioningFailed)
            #expect(failed.outcome == .failed)
            #expect(failed.failureReason?.contains("checksum mismatch") == true, "\(failed.failureReason ?? "")")
            #expect(statuses == [.configuringVolumes])
            // Logs are still archived: configure.log, then publish.log.
            #expect(failed.results.map(\.kind) == [.configurationLog, .publishLog])
            #expect(try fixture.text(of: failed.results[0]).contains("checksum mismatch"))

            // The algorithm itself from a URL: verified against algorithm.checksum, 32 when it does not match.
            try Data("print('from a URL')".utf8).write(to: served.appendingPathComponent("algorithm.py"))
            var byURL = RuntimeFixture.workflow(rawcode: "")
            byURL.stages[0].algorithm.rawcode = nil
            byURL.stages[0].algorithm.url = server.url("algorithm.py")
            let (fromURL, _) = try await fixture.run(byURL)
            #expect(fromURL.outcome == .succeeded, "\(fromURL.failureReason ?? "")")
            #expect(try fixture.text(of: fromURL.results[0]) == "from a URL\n")
            byURL.stages[0].algorithm.checksum = String(repeating: "a", count: 64)
            let (badAlgorithm, _) = try await fixture.run(byURL)
            #expect(badAlgorithm.status == .algorithmProvisioningFailed)
            #expect(badAlgorithm.failureReason?.contains("checksum mismatch") == true)

            for (path, expected) in [
                ("redirect-ftp", "not an http or https URL"), ("loop", "more than 5 redirects"),
                ("missing.csv", "HTTP 404"),
            ] {
                let workflow = RuntimeFixture.workflow(
                    rawcode: "print(1)", inputs: [Workflow.Input(id: "did:op:web", url: [server.url(path)])])
                let (result, _) = try await fixture.run(workflow)
                #expect(result.status == .dataProvisioningFailed, "\(path)")
                #expect(result.failureReason?.contains(expected) == true, "\(path): \(result.failureReason ?? "")")
            }
        }
    }

    @Test("a path that escapes the data directory through .. or a symbolic link fails with 31")
    func pathEscapes() async throws {
        try await RuntimeFixture.with { fixture in
            let secret = fixture.base.appendingPathComponent("secret.txt")
            try Data("secret".utf8).write(to: secret)
            try FileManager.default.createSymbolicLink(
                at: fixture.dataDirectory.appendingPathComponent("link.txt"), withDestinationURL: secret)

            for (path, expected) in [
                ("../secret.txt", "not a relative path inside the data directory"),
                ("link.txt", "resolves outside the data directory"),
                ("nothing.txt", "does not exist"),
            ] {
                let workflow = RuntimeFixture.workflow(
                    rawcode: "print(1)", inputs: [Workflow.Input(id: "did:op:x", path: [path])])
                let (result, _) = try await fixture.run(workflow)
                #expect(result.status == .dataProvisioningFailed, "\(path)")
                #expect(result.outcome == .failed)
                #expect(result.failureReason?.contains(expected) == true, "\(path): \(result.failureReason ?? "")")
                let configureLog = try fixture.text(of: try #require(result.results.first))
                #expect(configureLog.contains(expected))
                #expect(!configureLog.contains("secret\n"))
            }
        }
    }

    @Test("a non-zero exit is a failure with its exit code, and outputs are still published")
    func nonZeroExit() async throws {
        try await RuntimeFixture.with { fixture in
            let code = """
                open("/data/outputs/partial.txt", "w").write("half")
                print("giving up")
                raise SystemExit(3)
                """
            let (result, statuses) = try await fixture.run(RuntimeFixture.workflow(rawcode: code))
            #expect(result.status == .finished)
            #expect(result.outcome == .failed)
            #expect(result.exitCode == 3)
            #expect(result.failureReason == "algorithm exited with code 3")
            #expect(statuses.last == .publishingResults)
            #expect(result.results.first?.name == "partial.txt")
        }
    }

    @Test("the time limit kills the algorithm: timed out within about two seconds")
    func timeLimit() async throws {
        try await RuntimeFixture.with { fixture in
            let clock = ContinuousClock()
            let start = clock.now
            let (result, _) = try await fixture.run(
                RuntimeFixture.workflow(
                    rawcode: "import time\nprint('sleeping', flush=True)\ntime.sleep(30)", maxtime: 1))
            let elapsed = clock.now - start
            #expect(result.status == .finished)
            #expect(result.outcome == .timedOut)
            #expect(result.stopRequest == 2)
            #expect(result.failureReason == "algorithm exceeded its time limit of 1 s")
            #expect(elapsed < .seconds(3), "took \(elapsed)")
            let log = try fixture.text(of: try #require(result.results.first { $0.kind == .algorithmLog }))
            #expect(log.contains("sleeping"))
        }
    }

    @Test("the algorithm cannot reach a port listening on the host")
    func noNetwork() async throws {
        try await RuntimeFixture.with { fixture in
            let served = fixture.base.appendingPathComponent("served")
            try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
            let server = try await LocalHTTPServer(root: served)
            defer { server.stop() }
            let code = """
                import socket
                try:
                    socket.create_connection(("127.0.0.1", \(server.port)), timeout=5).close()
                    print("CONNECTED")
                except OSError as e:
                    print("connection failed:", e)
                import socket as s
                print("interfaces:", [name for _, name in s.if_nameindex()])
                """
            let (result, _) = try await fixture.run(RuntimeFixture.workflow(rawcode: code))
            #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
            let log = try fixture.text(of: try #require(result.results.first { $0.kind == .algorithmLog }))
            #expect(log.contains("connection failed:"), "\(log)")
            #expect(!log.contains("CONNECTED"))
            #expect(log.contains("interfaces: ['lo']"), "\(log)")
        }
    }

    @Test("inputs, the algorithm and the root are read-only; secrets of the host are not visible")
    func readOnly() async throws {
        try await RuntimeFixture.with { fixture in
            try fixture.writeData("a.csv", Self.csv)
            let code = """
                import os
                for path in ["/data/inputs/x", "/data/inputs/a/0", "/data/transformations/algorithm", "/x",
                             "/usr/x", "/etc/x", "/data/x"]:
                    try:
                        with open(path, "a") as f:
                            f.write("x")
                        print("WRITABLE", path)
                    except OSError as e:
                        print("refused", path, e.errno)
                for path in ["/etc/shadow", "/root", "/work", "/var", "/home"]:
                    print("EXISTS" if os.path.exists(path) else "absent", path)
                print("uid", os.getuid(), "fds", sorted(os.listdir("/proc/self/fd")))
                open("/data/outputs/ok.txt", "w").write("ok")
                open("/tmp/scratch", "w").write("ok")
                """
            let workflow = RuntimeFixture.workflow(
                rawcode: code, inputs: [Workflow.Input(id: "did:op:a", path: ["a.csv"])])
            let (result, _) = try await fixture.run(workflow)
            #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
            let log = try fixture.text(of: try #require(result.results.first { $0.kind == .algorithmLog }))
            #expect(!log.contains("WRITABLE"), "\(log)")
            #expect(log.components(separatedBy: "refused").count - 1 == 7, "\(log)")
            #expect(!log.contains("EXISTS"), "\(log)")
            #expect(log.contains("uid 65534"), "\(log)")
            // Only stdin, stdout, stderr and the listing's own descriptor: nothing of the worker leaks in.
            #expect(log.contains("fds ['0', '1', '2', '3']"), "\(log)")
            #expect(result.results.first?.name == "ok.txt")
        }
    }

    @Test("cancelling the job kills the algorithm, still publishes the logs and returns stopped")
    func cancellation() async throws {
        try await RuntimeFixture.with { fixture in
            let job = Job(
                id: JobID(), environment: "test", owner: "0xowner", attempt: 1,
                workflow: RuntimeFixture.workflow(
                    rawcode: "import time\nprint('started', flush=True)\ntime.sleep(30)\nopen('/data/outputs/late','w')"
                ))
            let recorder = StatusRecorder()
            let clock = ContinuousClock()
            let start = clock.now
            let task = Task {
                try await fixture.executor.execute(job: job, environment: RuntimeFixture.environment) {
                    await recorder.add($0)
                }
            }
            // Wait until the algorithm runs, then stop it.
            while await !recorder.statuses.contains(.runningAlgorithm) {
                try await Task.sleep(for: .milliseconds(20))
            }
            try await Task.sleep(for: .milliseconds(500))
            task.cancel()
            let result = try await task.value
            #expect(clock.now - start < .seconds(5))
            #expect(result.status == .finished)
            #expect(result.outcome == .stopped)
            #expect(result.results.map(\.kind) == [.algorithmLog, .configurationLog, .publishLog])
            #expect(try fixture.text(of: result.results[0]).contains("started"))
            #expect(await recorder.statuses.last == .publishingResults)
        }
    }

    @Test("outputs above the environment's disk limit fail with 42 and only logs are kept")
    func diskQuota() async throws {
        try await RuntimeFixture.with { fixture in
            let environment = ComputeEnvironment(id: "small", maxJobDuration: 60, diskMiB: 1)
            let code = """
                for name in ["a", "b"]:
                    with open("/data/outputs/" + name, "wb") as f:
                        f.write(b"x" * 700_000)
                """
            let (result, statuses) = try await fixture.run(
                RuntimeFixture.workflow(rawcode: code), environment: environment)
            #expect(result.status == .diskQuotaExceeded)
            #expect(result.outcome == .failed)
            #expect(result.failureReason?.contains("disk limit") == true, "\(result.failureReason ?? "")")
            #expect(statuses.last == .runningAlgorithm)
            #expect(result.results.map(\.kind) == [.algorithmLog, .configurationLog, .publishLog])
        }
    }

    @Test("a missing program cannot start: 41 with a reason")
    func missingProgram() async throws {
        try await RuntimeFixture.with { fixture in
            let (result, _) = try await fixture.run(
                RuntimeFixture.workflow(rawcode: "print(1)", entrypoint: "no-such-interpreter $ALGO"))
            #expect(result.status == .algorithmFailed)
            #expect(result.failureReason?.contains("no-such-interpreter") == true)
        }
    }

    @Test("a GPU job that reached a local worker anyway ends with 22 before anything runs")
    func gpuFallback() async throws {
        try await RuntimeFixture.with { fixture in
            var environment = RuntimeFixture.environment
            environment.resources = [ComputeResource(id: "gpu0", type: .gpu, total: 1, max: 1)]
            var workflow = RuntimeFixture.workflow(rawcode: "open('/data/outputs/ran', 'w').write('1')")
            workflow.stages[0].compute?.resources = [.init(id: "gpu0", amount: 1)]
            let (result, statuses) = try await fixture.run(workflow, environment: environment)
            #expect(result.status == .containerCreationFailed && result.outcome == .failed)
            #expect(result.failureReason == "gpu_not_available: the local executor has no GPUs")
            #expect(result.results.isEmpty && statuses.isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.workRoot.path).isEmpty)
        }
    }

    @Test("a symbolic link planted in the outputs is not followed by the publisher")
    func plantedLink() async throws {
        try await RuntimeFixture.with { fixture in
            let code = """
                import os
                os.symlink("/etc/passwd", "/data/outputs/passwd")
                os.symlink("/etc", "/data/outputs/etc")
                open("/data/outputs/real.txt", "w").write("real")
                """
            let (result, _) = try await fixture.run(RuntimeFixture.workflow(rawcode: code))
            #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
            #expect(result.results.filter { $0.kind == .output }.map(\.name) == ["real.txt"])
            let publishLog = try fixture.text(of: try #require(result.results.last))
            #expect(publishLog.contains("skipped passwd"))
        }
    }
}
