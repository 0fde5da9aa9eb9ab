import ChildProcesses
import Foundation
import Gateway
import Persistence
import TestSupport
import Testing

/// `c2d job` and `c2d batch` end to end: the real binary as a user runs it, against a live gateway, worker and
/// scheduler on real services.
@Suite("Command line client", .serialized)
struct CLITests {
    /// Runs `c2d <arguments>` to its end; returns its exit code and its output (stdout and stderr together).
    static func run(
        _ deployment: Deployment, _ arguments: [String], token: String?, url: String? = nil,
        timeout: Duration = .seconds(120)
    ) async throws -> (code: Int32, output: String) {
        let process = try C2DProcess(
            name: "cli-\(UUID().uuidString.prefix(8))", arguments: arguments,
            environment: ["C2D_URL": url ?? deployment.baseURL, "C2D_TOKEN": token ?? ""],
            logDirectory: deployment.directory)
        guard await process.waitForExit(timeout: timeout) else {
            await process.kill9()
            throw TestFailure("c2d \(arguments.joined(separator: " ")) did not end:\n\(process.log)")
        }
        return (process.exitCode ?? -1, process.log)
    }

    /// The last line of output that parses as a JSON object.
    static func lastJSON(_ output: String) -> [String: Any] {
        for line in output.split(separator: "\n").reversed() {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
                return object
            }
        }
        return [:]
    }

    static func write(_ text: String, _ name: String, in deployment: Deployment) throws -> String {
        let file = deployment.directory.appendingPathComponent(name)
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    @Test("job submit --wait, status, logs, results, watch, stop and list, with exit codes that say what happened")
    func jobCommands() async throws {
        try await Deployment.with { deployment in
            try await deployment.startDev()
            let token = try await deployment.token(owner: "cli-\(UUID())", scopes: [.submit, .read])
            let workflow = try Self.write(
                """
                environment: \(deployment.environmentID)
                workflow:
                  stages:
                    - input: []
                      algorithm:
                        rawcode: |
                          print("hello from the cli")
                          open("/data/outputs/answer.txt", "w").write("42\\n")
                        container:
                          entrypoint: python3 $ALGO
                          image: python
                """, "job.yaml", in: deployment)

            let submitted = try await Self.run(
                deployment, ["job", "submit", "-f", workflow, "--wait", "--json"], token: token)
            #expect(submitted.code == 0, "\(submitted.output)")
            let job = Self.lastJSON(submitted.output)
            #expect(job["outcome"] as? String == "succeeded", "\(submitted.output)")
            let id = try #require(job["id"] as? String)

            let status = try await Self.run(deployment, ["job", "status", id], token: token)
            #expect(status.code == 0)
            #expect(status.output.contains("outcome:      succeeded"), "\(status.output)")
            let logs = try await Self.run(deployment, ["job", "logs", id], token: token)
            #expect(logs.output.contains("hello from the cli"), "\(logs.output)")
            // In the order the steps ran.
            let headers = ["configure.log", "algorithm.log", "publish.log"].compactMap {
                logs.output.range(of: "==> \($0) <==")?.lowerBound
            }
            #expect(headers.count == 3 && headers == headers.sorted(), "\(logs.output)")
            let target = deployment.directory.appendingPathComponent("answer.txt").path
            let download = try await Self.run(
                deployment, ["job", "results", id, "--get", "0", "-o", target], token: token)
            #expect(download.code == 0, "\(download.output)")
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "42\n")
            let listed = try await Self.run(deployment, ["job", "list", "--status", "70", "--json"], token: token)
            #expect((Self.lastJSON(listed.output)["jobs"] as? [[String: Any]])?.first?["id"] as? String == id)

            // -f streams the steps' output while they run; a job submitted without waiting is followed to its end.
            let talker = try Self.write(
                #"{"stages": [{"input": [], "algorithm": {"rawcode": "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.5)", "container": {"entrypoint": "python3 $ALGO"}}}]}"#,
                "talk.json", in: deployment)
            let talking = try await Self.run(
                deployment, ["job", "submit", "-f", talker, "--environment", deployment.environmentID], token: token)
            let talkingID = talking.output.split(separator: "\n").last.map(String.init) ?? ""
            let followed = try await Self.run(deployment, ["job", "logs", "-f", talkingID], token: token)
            #expect(followed.code == 0, "\(followed.output)")
            #expect(
                followed.output.contains("tick 2") && followed.output.contains("==> publish <=="), "\(followed.output)")
            #expect(followed.output.contains("succeeded"), "\(followed.output)")

            // A failing algorithm: not exit 0 with --wait.
            let failing = try Self.write(
                #"{"stages": [{"input": [], "algorithm": {"rawcode": "import sys; sys.exit(3)", "container": {"entrypoint": "python3 $ALGO"}}}]}"#,
                "fail.json", in: deployment)
            let failed = try await Self.run(
                deployment, ["job", "submit", "-f", failing, "--environment", deployment.environmentID, "--wait"],
                token: token)
            #expect(failed.code == 1, "\(failed.output)")
            #expect(failed.output.contains("exit code 3"), "\(failed.output)")

            // A long job: watch gives up after --timeout (8), then a stop ends it (watch exits 2).
            let sleeper = try Self.write(
                #"{"stages": [{"input": [], "algorithm": {"rawcode": "import time; time.sleep(60)", "container": {"entrypoint": "python3 $ALGO"}}}]}"#,
                "sleep.json", in: deployment)
            let long = try await Self.run(
                deployment, ["job", "submit", "-f", sleeper, "--environment", deployment.environmentID], token: token)
            let longID = long.output.split(separator: "\n").last.map(String.init) ?? ""
            #expect(long.code == 0, "\(long.output)")
            let gaveUp = try await Self.run(deployment, ["job", "watch", longID, "--timeout", "1"], token: token)
            #expect(gaveUp.code == 8, "\(gaveUp.output)")
            // Its configure step is over while it runs: -f shows that log (archived only at the job's end) from the
            // workspace, then follows the algorithm until --timeout.
            try await waitUntil("the long job runs its algorithm", timeout: .seconds(60)) {
                let status = try await Self.run(deployment, ["job", "status", longID, "--json"], token: token)
                return Self.lastJSON(status.output)["status"] as? Int == 40
            }
            let configured = try await Self.run(
                deployment, ["job", "logs", "-f", longID, "--timeout", "2"], token: token)
            #expect(configured.code == 8, "\(configured.output)")
            #expect(configured.output.contains("configuration finished"), "\(configured.output)")
            // Ctrl-C stops watching, not the job, and says so.
            let watcher = try C2DProcess(
                name: "cli-interrupted", arguments: ["job", "watch", longID, "--json"],
                environment: ["C2D_URL": deployment.baseURL, "C2D_TOKEN": token], logDirectory: deployment.directory)
            try await waitUntil("the watch printed the job's first event", timeout: .seconds(30)) {
                watcher.log.contains("\"status\"")
            }
            kill(watcher.pid, SIGINT)
            #expect(await watcher.waitForExit(timeout: .seconds(10)))
            #expect(watcher.exitCode == 130, "\(watcher.log)")
            #expect(watcher.log.contains("c2d: stopped; job \(longID) goes on"), "\(watcher.log)")
            let stop = try await Self.run(deployment, ["job", "stop", longID], token: token)
            #expect(stop.code == 0, "\(stop.output)")
            let stopped = try await Self.run(deployment, ["job", "watch", longID], token: token)
            #expect(stopped.code == 2, "\(stopped.output)\n\(deployment.logs)")

            // Errors that name the fix, with their own exit codes.
            let unknown = try await Self.run(
                deployment, ["job", "submit", "-f", failing, "--environment", "nowhere"], token: token)
            #expect(unknown.code == 5)
            #expect(unknown.output.contains("unknown_environment"), "\(unknown.output)")
            let notAStatus = try await Self.run(deployment, ["job", "list", "--status", "70,abc"], token: token)
            #expect(notAStatus.code == 64, "\(notAStatus.output)")
            #expect(notAStatus.output.contains("--status abc is not a job status code"), "\(notAStatus.output)")
            // A --url that is no c2d gateway: a web server's 404 is not "no such job".
            let port = try TestEnvironment.freePort()
            let webServer = try C2DProcess(
                name: "web-server", program: "python3",
                arguments: ["-m", "http.server", String(port), "--bind", "127.0.0.1"],
                logDirectory: deployment.directory)
            defer { Task { await webServer.kill9() } }
            var notC2D: (code: Int32, output: String) = (0, "")
            try await waitUntil("the web server answers", timeout: .seconds(30)) {
                notC2D = try await Self.run(
                    deployment, ["job", "status", id], token: token, url: "http://127.0.0.1:\(port)")
                return !notC2D.output.contains("cannot reach the gateway")
            }
            await webServer.kill9()
            #expect(notC2D.code == 7, "\(notC2D.output)")
            #expect(notC2D.output.contains("without a c2d error"), "\(notC2D.output)")
            #expect(notC2D.output.contains("a c2d gateway of this version?"), "\(notC2D.output)")
            let missing = try await Self.run(deployment, ["job", "status", "0123"], token: token)
            #expect(missing.code == 4, "\(missing.output)")
            let anonymous = try await Self.run(deployment, ["job", "status", id], token: nil)
            #expect(anonymous.code == 6, "\(anonymous.output)")
            #expect(anonymous.output.contains("C2D_TOKEN"))
            let unreachable = try await Self.run(
                deployment, ["job", "status", id], token: token,
                url: "http://127.0.0.1:\(try TestEnvironment.freePort())")
            #expect(unreachable.code == 7, "\(unreachable.output)")
            #expect(unreachable.output.contains("C2D_URL"))
            let usage = try await Self.run(deployment, ["job", "results", id, "-o", "x"], token: token)
            #expect(usage.code == 64, "\(usage.output)")
            // A wait no clock can hold is refused, not a crash.
            for arguments in [
                ["job", "watch", id, "--timeout", "0"], ["batch", "watch", id, "--timeout", "9223372036854775807"],
                ["job", "list", "--request-timeout", "9223372036854775807"],
            ] {
                let refused = try await Self.run(deployment, arguments, token: token)
                #expect(refused.code == 64, "\(arguments): \(refused.output)")
                #expect(refused.output.contains("timeout must be 1 to"), "\(arguments): \(refused.output)")
            }
            // A port past 65535 would have been taken modulo 65536.
            let port70000 = try await Self.run(deployment, ["gateway", "--port", "70000"], token: token)
            #expect(port70000.code == 64, "\(port70000.output)")
            #expect(port70000.output.contains("--port must be 1 to 65535"), "\(port70000.output)")
        }
    }

    @Test("a batch of 2,000 jobs from a file, interrupted and resumed, is submitted exactly once")
    func batchInterruptedAndResumed() async throws {
        try await Deployment.with(extraEnvironment: ["LOG_LEVEL": "info"]) { deployment in
            // A gateway alone: the jobs stay queued, so the test measures submission only.
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let token = try await deployment.token(owner: "cli-batch-\(UUID())", scopes: [.submit, .read])
            let lines = (0..<2_000).map { index in
                #"{"workflow": {"stages": [{"input": [], "algorithm": {"rawcode": "print(\#(index))", "container": {"entrypoint": "python3 $ALGO"}}}]}}"#
            }
            let file = try Self.write(lines.joined(separator: "\n") + "\n", "jobs.jsonl", in: deployment)
            let arguments = [
                "batch", "submit", "-f", file, "--environment", deployment.environmentID, "--chunk-size", "50",
            ]

            // The first run is killed once it has reported some chunks.
            let first = try C2DProcess(
                name: "cli-first", arguments: arguments,
                environment: ["C2D_URL": deployment.baseURL, "C2D_TOKEN": token], logDirectory: deployment.directory)
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline, first.isRunning, !first.log.contains("submitted 150/2000") {
                try await Task.sleep(for: .milliseconds(5))
            }
            await first.kill9()
            #expect(first.log.contains("submitted 150/2000"), "\(first.log)")
            let batchID = try #require(
                first.log.split(separator: "\n").first { $0.hasPrefix("batch ") }?.split(separator: " ")[1]
                    .dropLast().description)
            let before = try await deployment.postgres.query(
                "select count(*) as n from jobs where batch_id = $1::uuid", [.text(batchID)])[0].int("n")
            #expect(before < 2_000, "the first run was interrupted before it was done")

            // Running the same command again finishes the batch and duplicates nothing.
            let second = try await Self.run(deployment, arguments, token: token)
            #expect(second.code == 0, "\(second.output)")
            #expect(second.output.contains("had been submitted before"), "\(second.output)")
            #expect(second.output.split(separator: "\n").contains { $0 == Substring(batchID) }, "\(second.output)")
            let rows = try await deployment.postgres.query(
                """
                select count(*) as n, count(distinct workflow->'stages'->0->'algorithm'->>'rawcode') as distinct_code
                from jobs where batch_id = $1::uuid
                """, [.text(batchID)])
            #expect(try rows[0].int("n") == 2_000)
            #expect(try rows[0].int("distinct_code") == 2_000)

            let status = try await Self.run(deployment, ["batch", "status", batchID, "--json"], token: token)
            #expect(Self.lastJSON(status.output)["total"] as? Int == 2_000, "\(status.output)")
            // Stop the batch; watching it then ends at once with "stopped" (exit 2).
            let stop = try await Self.run(deployment, ["batch", "stop", batchID], token: token)
            #expect(stop.code == 0, "\(stop.output)")
            #expect(stop.output.contains("2000 unfinished"), "\(stop.output)")
            let watch = try await Self.run(deployment, ["batch", "watch", batchID], token: token)
            #expect(watch.code == 2, "\(watch.output)")
            #expect(watch.output.contains("2000 stopped"), "\(watch.output)")
            let results = try await Self.run(deployment, ["batch", "results", batchID, "--json"], token: token)
            #expect((Self.lastJSON(results.output)["jobs"] as? [Any])?.count == 2_000)
        }
    }

    @Test("batch submit --wait follows a running batch to its end and exits with the worst outcome")
    func batchWait() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_WORKER_SLOTS": "4"]) { deployment in
            try await deployment.startDev()
            let token = try await deployment.token(owner: "cli-wait-\(UUID())", scopes: [.submit, .read])
            let file = try Self.write(
                """
                environment: \(deployment.environmentID)
                jobs:
                  - workflow: {stages: [{input: [], algorithm: {rawcode: "print(1)", container: {entrypoint: "python3 $ALGO"}}}]}
                  - stages: [{input: [], algorithm: {rawcode: "print(2)", container: {entrypoint: "python3 $ALGO"}}}]
                  - stages: [{input: [], algorithm: {rawcode: "import sys; sys.exit(1)", container: {entrypoint: "python3 $ALGO"}}}]
                """, "jobs.yaml", in: deployment)
            let run = try await Self.run(deployment, ["batch", "submit", "-f", file, "--wait"], token: token)
            #expect(run.code == 1, "\(run.output)")
            #expect(run.output.contains("2 succeeded, 1 failed"), "\(run.output)")
            // A refused job names its place in the file; nothing is written.
            let bad = try Self.write(
                """
                {"workflow": {"stages": [{"input": [], "algorithm": {"rawcode": "print(1)", "container": {"entrypoint": "python3 $ALGO"}}}]}}
                {"workflow": {"stages": [{"input": [{"id": "d", "url": "ftp://example.org/x"}], "algorithm": {"rawcode": "print(1)", "container": {"entrypoint": "python3 $ALGO"}}}]}}
                """, "bad.jsonl", in: deployment)
            let refused = try await Self.run(
                deployment, ["batch", "submit", "-f", bad, "--environment", deployment.environmentID], token: token)
            #expect(refused.code == 5, "\(refused.output)")
            #expect(refused.output.contains("bad.jsonl:2: invalid_input_url"), "\(refused.output)")
            // The resume line runs as printed: it repeats --environment.
            #expect(
                refused.output.contains(
                    "Fix the file, then resume with: c2d batch submit -f \(bad) --environment \(deployment.environmentID) "
                        + "--idempotency-key auto-"), "\(refused.output)")
            let nowhere = try await Self.run(
                deployment, ["batch", "submit", "-f", bad, "--environment", "nowhere"], token: token)
            #expect(nowhere.code == 5, "\(nowhere.output)")
            #expect(nowhere.output.contains("Fix --environment, then resume with:"), "\(nowhere.output)")
        }
    }
}
