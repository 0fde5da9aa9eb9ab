import ChildProcesses
import Foundation
import NIOHTTP1
import Persistence
import TestSupport
import Testing

/// A real job end to end: HTTP → Postgres → RabbitMQ → worker → bubblewrap sandbox → result store → HTTP,
/// with the real `c2d` binary and real services (scripts/services).
@Suite("Walking skeleton, end to end", .serialized)
struct WalkingSkeletonTests {
    static let statistics = """
        import csv, json, os, statistics
        did = json.loads(os.environ["DIDS"])[0]
        with open(f"/data/inputs/{did}/0") as f:
            values = [float(row["value"]) for row in csv.DictReader(f)]
        with open("/data/outputs/stats.json", "w") as f:
            json.dump({"count": len(values), "mean": statistics.mean(values), "max": max(values)}, f, sort_keys=True)
        print("computed", len(values), "values")
        """

    @Test("a job runs and its result downloads with the expected content")
    func jobRunsAndResultDownloads() async throws {
        try await Deployment.with() { deployment in
            let csv = "name,value\na,1\nb,2\nc,6\n"
            try csv.write(
                to: deployment.dataDirectory.appendingPathComponent("values.csv"), atomically: true, encoding: .utf8)
            try await deployment.startDev()

            let id = try await deployment.submit(
                deployment.jobRequest(
                    code: Self.statistics, inputs: [["index": 0, "id": "did:op:values", "path": "values.csv"]]))
            let job = try await deployment.waitForJob(id)
            #expect(job["status"] as? Int == 70, "\(job)")
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            #expect(job["exitCode"] as? Int == 0)

            let stats = try await deployment.download(id, name: "stats.json")
            #expect(stats == #"{"count": 3, "max": 6.0, "mean": 3.0}"#)
            let results = try await deployment.results(id)
            let kinds = results.map { $0["type"] as? String ?? "" }
            #expect(kinds.first == "output")
            #expect(kinds.contains("algorithmLog"))
            #expect(results.map { $0["index"] as? Int ?? -1 } == Array(0..<results.count))
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("computed 3 values"))

            // Ocean's status sequence, in order, for the one attempt.
            let statuses = try await deployment.postgres.query(
                "select status from job_events where job_id = $1::uuid order by id", [.text(id)]
            ).map { try $0.int("status") }
            #expect(statuses == [1, 20, 30, 40, 60, 70])
        }
    }

    @Test("a failing algorithm ends failed with its exit code")
    func failingAlgorithm() async throws {
        try await Deployment.with() { deployment in
            try await deployment.startDev()
            let id = try await deployment.submit(
                deployment.jobRequest(code: "import sys\nprint('about to fail')\nsys.exit(3)\n"))
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "failed", "\(job)")
            #expect(job["exitCode"] as? Int == 3)
            #expect((job["failureReason"] as? String ?? "").contains("3"))
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("about to fail"))
        }
    }

    @Test("an algorithm cannot open a network connection, and its log says so")
    func noNetwork() async throws {
        try await Deployment.with() { deployment in
            try await deployment.startDev()
            // The gateway's own port is listening on the host's loopback: the sandbox must not reach it.
            let code = """
                import socket
                try:
                    socket.create_connection(("127.0.0.1", \(deployment.port)), timeout=3)
                    print("NETWORK REACHABLE")
                except OSError as error:
                    print("network blocked:", error)
                """
            let id = try await deployment.submit(deployment.jobRequest(code: code))
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)")
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("network blocked"), "\(log)")
            #expect(!log.contains("NETWORK REACHABLE"))
        }
    }

    @Test("bad input gets a 4xx with a code and a message, and writes no row")
    func badInput() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_MAX_BODY_BYTES": "4096"]) { deployment in
            try await deployment.startDev()
            let valid = deployment.jobRequest(code: "print(1)")
            func with(_ change: (inout [String: Any]) -> Void) -> Data {
                var request = valid
                change(&request)
                return try! JSONSerialization.data(withJSONObject: request)
            }
            func input(_ fields: [String: Any]) -> Data {
                with { request in
                    var workflow = request["workflow"] as! [String: Any]
                    var stages = workflow["stages"] as! [[String: Any]]
                    stages[0]["input"] = [fields]
                    workflow["stages"] = stages
                    request["workflow"] = workflow
                }
            }
            let cases: [(String, Data, Int, String)] = [
                ("malformed JSON", Data("{\"environment\": ".utf8), 400, "invalid_json"),
                ("missing workflow", with { $0["workflow"] = nil }, 400, "missing_field"),
                ("missing environment", with { $0["environment"] = nil }, 400, "missing_field"),
                ("unknown environment", with { $0["environment"] = "nowhere" }, 400, "unknown_environment"),
                (
                    "body over the limit", with { $0["padding"] = String(repeating: "x", count: 8192) }, 413,
                    "body_too_large"
                ),
                ("ftp input", input(["id": "d", "url": "ftp://example.org/x"]), 400, "invalid_input_url"),
                ("file input", input(["id": "d", "url": "file:///etc/passwd"]), 400, "invalid_input_url"),
                ("escaping path", input(["id": "d", "path": "../../etc/passwd"]), 400, "input_path_outside_data_dir"),
                ("absolute path", input(["id": "d", "path": "/etc/passwd"]), 400, "input_path_outside_data_dir"),
            ]
            let before = try await deployment.jobCount()
            for (name, body, status, code) in cases {
                let response = try await deployment.request(
                    .POST, "/v1/jobs", body: body, headers: ["content-type": "application/json"])
                #expect(response.status == status, "\(name): \(response.status) \(response.text)")
                #expect(response.json["code"] as? String == code, "\(name): \(response.text)")
                #expect((response.json["message"] as? String ?? "").isEmpty == false, "\(name)")
            }
            #expect(try await deployment.jobCount() == before)
            let missing = try await deployment.get("/v1/jobs/\(String(repeating: "0", count: 32))")
            #expect(missing.status == 404)
            #expect(missing.json["code"] as? String == "job_not_found")
        }
    }
}

/// Faults: jobs wait in Postgres over a RabbitMQ outage, and a worker killed before acknowledging does not make a job
/// run twice.
@Suite("Delivery under faults", .serialized)
struct DeliveryFaultTests {
    @Test("a job submitted while RabbitMQ is stopped completes after RabbitMQ restarts")
    func submitDuringRabbitMQOutage() async throws {
        try await Deployment.with() { deployment in
            try await deployment.startDev()
            try await TestEnvironment.services("stop", "rabbitmq")
            let id: String
            let waiting: Bool
            do {
                // Accepted (the gateway needs Postgres only), and waiting there: nothing is admitted while the
                // dispatcher cannot publish.
                id = try await deployment.submit(deployment.jobRequest(code: "print('ran after the outage')"))
                try await Task.sleep(for: .seconds(1))
                waiting = try await deployment.postgres.query(
                    "select admitted_at is null and status = 1 as waiting from jobs where id = $1::uuid", [.text(id)]
                )[0].bool("waiting")
            } catch {
                try await TestEnvironment.services("start", "rabbitmq")
                throw error
            }
            try await TestEnvironment.services("start", "rabbitmq")
            #expect(waiting)
            let job = try await deployment.waitForJob(id, timeout: .seconds(120))
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("ran after the outage"))
        }
    }

    @Test("a worker killed before it acks: the job runs once, not twice")
    func workerKilledBeforeAck() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_LEASE_SECONDS": "3"]) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            try await deployment.waitUntilHealthy()
            let doomed = try deployment.start("worker-1", ["worker"], environment: ["C2D_FAULT_EXIT_AFTER_CLAIM": "1"])

            let id = try await deployment.submit(deployment.jobRequest(code: "print('the one and only run')"))
            #expect(await doomed.waitForExit(timeout: .seconds(60)), "worker 1 should die after claiming")
            #expect(doomed.exitCode == 75, "\(doomed.log.suffix(3000))")

            try deployment.start("worker-2", ["worker"])
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            #expect(job["attempt"] as? Int == 2)
            let runs = try await deployment.postgres.query(
                "select attempt from job_events where job_id = $1::uuid and status = 40", [.text(id)]
            ).map { try $0.int("attempt") }
            #expect(runs == [2], "the algorithm ran in exactly one attempt")
            let results = try await deployment.postgres.query(
                "select count(*) as n from job_results where job_id = $1::uuid and name = 'algorithm.log'", [.text(id)])
            #expect(try results[0].int("n") == 1)
        }
    }
}
