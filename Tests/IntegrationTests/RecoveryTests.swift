import Foundation
import Persistence
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
