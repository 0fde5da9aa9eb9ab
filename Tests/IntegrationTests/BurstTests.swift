import Foundation
import Persistence
import TestSupport
import Testing

/// At-least-once delivery, exactly-once effect, at the job level: RabbitMQ restarts in the middle of a burst of
/// submissions; every accepted job runs, and none runs twice (duplicates are dropped at the claim).
@Suite("Job burst across a broker restart", .serialized)
struct BurstTests {
    @Test("broker restarted during a burst of 150 jobs: every accepted job runs exactly once")
    func burstAcrossRestart() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_WORKER_SLOTS": "8", "LOG_LEVEL": "info"]) { deployment in
            try await deployment.startDev()
            let total = 150
            var ids: [String] = []
            var restart: Task<Void, any Error>?
            for chunk in stride(from: 0, to: total, by: 15) {
                if chunk >= 45 && restart == nil {
                    // Stop the broker while submissions keep arriving; bring it back while they still do.
                    restart = Task.detached {
                        try await TestEnvironment.services("stop", "rabbitmq")
                        try await TestEnvironment.services("start", "rabbitmq")
                    }
                }
                let batch = try await withThrowingTaskGroup(of: String.self) { group in
                    for _ in chunk..<min(chunk + 15, total) {
                        group.addTask { try await deployment.submit(deployment.jobRequest(code: "print('ran')")) }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
                ids += batch
                try await Task.sleep(for: .milliseconds(300))
            }
            #expect(ids.count == total, "every submission was accepted")
            // The broker is back before the jobs are waited for.
            try await restart?.value
            for id in ids {
                let job = try await deployment.waitForJob(id, timeout: .seconds(300))
                #expect(job["outcome"] as? String == "succeeded", "\(job)")
            }
            let runs = try await deployment.postgres.query(
                """
                select j.id::text as id, count(e.*) filter (where e.status = 40) as runs, max(j.attempt) as attempts
                from jobs j left join job_events e on e.job_id = j.id
                where j.environment = $1 group by j.id
                """,
                [.text(deployment.environmentID)])
            #expect(runs.count == total)
            // The outage really hit the burst: some jobs were admitted late, once the dispatcher could publish again.
            let late = try await deployment.postgres.query(
                """
                select count(*) as n from jobs
                where environment = $1 and admitted_at > created_at + interval '2 seconds'
                """,
                [.text(deployment.environmentID)])[0].int("n")
            #expect(late > 0)
            for row in runs {
                let id = try row.string("id")
                let count = try row.int("runs")
                #expect(count == 1, "job \(id) ran \(count) times")
                #expect(try row.int("attempts") == 1)
            }
        }
    }
}
