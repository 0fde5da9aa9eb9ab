import ChildProcesses
import Foundation
import NIOHTTP1
import Persistence
import TestSupport
import Testing

/// A worker that dies after acknowledging its message: the scheduler notices the lapsed lease and another
/// worker runs the job as a new attempt.
@Suite("Recovery from a dead worker", .serialized)
struct RecoveryTests {
    @Test("a worker killed in the middle of a job: another worker finishes it as attempt 2")
    func workerKilledMidJob() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_LEASE_SECONDS": "3", "C2D_LEASE_GRACE_SECONDS": "1"]) {
            deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            try await deployment.waitUntilHealthy()
            let first = try deployment.start("worker-1", ["worker"])
            let code = "import sys, time\nprint('attempt started', flush=True)\ntime.sleep(4)\nprint('done')\n"
            let id = try await deployment.submit(deployment.jobRequest(code: code))

            // Wait until worker 1 runs the algorithm, then kill it without warning.
            let deadline = ContinuousClock.now + .seconds(60)
            while try await deployment.get("/v1/jobs/\(id)").json["status"] as? Int != 40 {
                guard ContinuousClock.now < deadline else { throw TestFailure("job never ran:\n\(deployment.logs)") }
                try await Task.sleep(for: .milliseconds(50))
            }
            await first.kill9()
            try deployment.start("worker-2", ["worker"])

            let job = try await deployment.waitForJob(id, timeout: .seconds(120))
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            #expect(job["attempt"] as? Int == 2)
            let reasons = try await deployment.postgres.query(
                "select coalesce(reason, '') as reason from job_events where job_id = $1::uuid", [.text(id)]
            ).map { try $0.string("reason") }
            #expect(reasons.contains { $0.contains("lease expired") }, "\(reasons)")
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("done"))
        }
    }
}

@Suite("Stopping jobs", .serialized)
struct StopTests {
    @Test("a running job stops on request; its logs are kept and it says it was stopped")
    func stopRunningJob() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_LEASE_SECONDS": "3"]) { deployment in
            try await deployment.startDev()
            let code = "import time\nprint('working', flush=True)\ntime.sleep(60)\nprint('never')\n"
            let id = try await deployment.submit(deployment.jobRequest(code: code))
            let deadline = ContinuousClock.now + .seconds(60)
            while try await deployment.get("/v1/jobs/\(id)").json["status"] as? Int != 40 {
                guard ContinuousClock.now < deadline else { throw TestFailure("job never ran:\n\(deployment.logs)") }
                try await Task.sleep(for: .milliseconds(50))
            }
            let stop = try await deployment.request(.POST, "/v1/jobs/\(id)/stop")
            #expect(stop.status == 202)
            let started = ContinuousClock.now
            let job = try await deployment.waitForJob(id, timeout: .seconds(30))
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(job["outcome"] as? String == "stopped", "\(job)")
            #expect(job["stopreq"] as? Int == 1)
            let log = try await deployment.download(id, name: "algorithm.log")
            #expect(log.contains("working"))
            #expect(!log.contains("never"))
        }
    }

    @Test("a queued job that no worker took yet stops at once")
    func stopQueuedJob() async throws {
        try await Deployment.with { deployment in
            // Gateway only: nobody consumes, so the job stays queued.
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let id = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
            let stop = try await deployment.request(.POST, "/v1/jobs/\(id)/stop")
            #expect(stop.status == 202)
            #expect(stop.json["outcome"] as? String == "stopped", "\(stop.text)")
            #expect(stop.json["status"] as? Int == 70)
            let missing = try await deployment.request(.POST, "/v1/jobs/\(String(repeating: "1", count: 32))/stop")
            #expect(missing.status == 404)
        }
    }
}
