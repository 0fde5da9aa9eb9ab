import Domain
import Foundation
import NIOHTTP1
import Persistence
import TestSupport
import Testing

/// Admission and dispatch with separate `c2d` processes on real RabbitMQ and Postgres: maxJobs holds fleet-wide, a
/// waiting job starts when a slot frees, owners share an environment fairly, priorities order the backlog.
@Suite("Dispatch: capacity, fairness, priority", .serialized)
struct DispatchTests {
    /// One job's claim and end, from its events (the database's clock).
    struct Run {
        var job: String
        var owner: String
        var claimed: Date
        var ended: Date?
    }

    static func runs(_ deployment: Deployment) async throws -> [Run] {
        try await deployment.postgres.query(
            """
            select j.id::text as id, j.owner,
                (select min(created_at) from job_events e where e.job_id = j.id and e.status = 20) as claimed,
                j.finished_at
            from jobs j where j.environment = $1
            """,
            [.text(deployment.environmentID)]
        ).compactMap { row in
            guard let claimed = try row.optionalDate("claimed") else { return nil }
            return Run(
                job: try row.string("id"), owner: try row.string("owner"), claimed: claimed,
                ended: try row.optionalDate("finished_at"))
        }
    }

    /// The most runs that overlapped at any moment.
    static func mostAtOnce(_ runs: [Run]) -> Int {
        var changes: [(Date, Int)] = []
        for run in runs {
            changes.append((run.claimed, 1))
            if let ended = run.ended { changes.append((ended, -1)) }
        }
        // Ends before starts at the same instant: a slot freed and refilled in one tick is not an overlap.
        changes.sort { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }
        var current = 0
        var most = 0
        for (_, change) in changes {
            current += change
            most = max(most, current)
        }
        return most
    }

    @Test("maxJobs 2 with three workers: never more than two run, the backlog drains at two slots' pace")
    func capacityHoldsFleetWide() async throws {
        try await Deployment.with(maxJobs: 2, extraEnvironment: ["C2D_WORKER_SLOTS": "2"]) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            for index in 1...3 { try deployment.start("worker-\(index)", ["worker"]) }
            try await deployment.waitUntilHealthy()
            let code = "import time\ntime.sleep(0.5)\n"
            var ids: [String] = []
            for _ in 0..<12 { ids.append(try await deployment.submit(deployment.jobRequest(code: code))) }
            var sampledMost = 0
            let started = ContinuousClock.now
            for id in ids {
                while true {
                    let running = try await deployment.postgres.query(
                        """
                        select count(*) as n from jobs
                        where environment = $1 and worker_id is not null and finished_at is null
                        """,
                        [.text(deployment.environmentID)])[0].int("n")
                    sampledMost = max(sampledMost, running)
                    if try await deployment.get("/v1/jobs/\(id)").json["dateFinished"] is String { break }
                    guard ContinuousClock.now - started < .seconds(120) else {
                        throw TestFailure("jobs did not finish:\n\(deployment.logs)")
                    }
                    try await Task.sleep(for: .milliseconds(25))
                }
            }
            let elapsed = ContinuousClock.now - started
            let runs = try await Self.runs(deployment)
            #expect(runs.count == 12)
            #expect(sampledMost <= 2, "sampled \(sampledMost) running at once")
            #expect(Self.mostAtOnce(runs) <= 2, "the events show \(Self.mostAtOnce(runs)) at once")
            #expect(Self.mostAtOnce(runs) == 2, "both slots were used")
            // Twelve half-second jobs over two slots take at least three seconds; admission adds no timer.
            #expect(elapsed >= .seconds(3))
            // Wall time is only loosely bounded: on a loaded 2-core machine the same drain takes 4 s or 18 s. The
            // median gap below is what pins dispatch to the slot's release rather than to a timer.
            #expect(elapsed < .seconds(30), "drained in \(elapsed)")
            // Every job that waited for a slot started soon after one freed: the gap between an end and the next
            // claim stays far below any polling period.
            let ends = runs.compactMap(\.ended).sorted()
            let claims = runs.map(\.claimed).sorted()
            var gaps: [Double] = []
            for claim in claims.dropFirst(2) {
                if let freed = ends.last(where: { $0 <= claim }) { gaps.append(claim.timeIntervalSince(freed)) }
            }
            #expect(gaps.count == 10)
            #expect((gaps.max() ?? 0) < 1.0, "slot freed → next job claimed: \(gaps)")
            // Typically 20–30 ms, even under load: the NOTIFY, one admission and one delivery, never a polling
            // period (the dispatcher's safety-net sweep is every 2 s).
            let median = gaps.sorted()[gaps.count / 2]
            #expect(median <= 0.3, "slot freed → next job claimed, median \(median) s: \(gaps)")
            // All workers stay registered, with their slots.
            let slots = try await deployment.postgres.query(
                "select coalesce(sum(slots), 0) as n from workers where $1 = any(environments)",
                [.text(deployment.environmentID)])[0].int("n")
            #expect(slots == 6)
        }
    }

    @Test("fair share: owner a submits 500 jobs, then b one; b's job starts before a's 50th")
    func fairShare() async throws {
        try await Deployment.with(maxJobs: 0, extraEnvironment: ["C2D_WORKER_SLOTS": "2"]) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            try deployment.start("worker", ["worker"])
            try await deployment.waitUntilHealthy()
            let stage: [String: Any] = [
                "input": [], "algorithm": ["rawcode": "print(1)", "container": ["entrypoint": "python3 $ALGO"]],
            ]
            let batch = try await deployment.post(
                "/v1/batches",
                json: [
                    "environment": deployment.environmentID, "owner": "a",
                    "jobs": Array(repeating: ["workflow": ["stages": [stage]]], count: 500),
                ])
            #expect(batch.status == 201, "\(batch.text)")
            let aJobs = batch.json["jobs"] as? [String] ?? []
            var request = deployment.jobRequest(code: "print('b')")
            request["owner"] = "b"
            let b = try await deployment.submit(request)
            _ = try await deployment.waitForJob(b, timeout: .seconds(60))
            let runs = try await Self.runs(deployment)
            let bClaimed = try #require(runs.first { $0.job.replacingOccurrences(of: "-", with: "") == b }?.claimed)
            let aBefore = runs.filter { $0.owner == "a" && $0.claimed < bClaimed }.count
            #expect(aBefore < 50, "a's jobs started before b's: \(aBefore)")
            _ = try await PostgresJobStore(client: deployment.postgres).requestStop(
                jobIDs: aJobs.compactMap(JobID.init))
        }
    }

    @Test("priority: a higher priority goes first; PATCH reorders a waiting job and refuses a running one")
    func priority() async throws {
        try await Deployment.with(maxJobs: 1, extraEnvironment: ["C2D_WORKER_SLOTS": "1"]) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            try deployment.start("worker", ["worker"])
            try await deployment.waitUntilHealthy()
            let blocker = try await deployment.submit(deployment.jobRequest(code: "import time\ntime.sleep(3)\n"))
            while try await deployment.get("/v1/jobs/\(blocker)").json["status"] as? Int == 1 {
                try await Task.sleep(for: .milliseconds(50))
            }
            var low: [String] = []
            for _ in 0..<3 { low.append(try await deployment.submit(deployment.jobRequest(code: "print('low')"))) }
            var urgent = deployment.jobRequest(code: "print('urgent')")
            urgent["priority"] = 5
            let high = try await deployment.submit(urgent)
            #expect(try await deployment.get("/v1/jobs/\(high)").json["priority"] as? Int == 5)
            // The last low job jumps the queue too, above the urgent one.
            let patched = try await deployment.request(
                .PATCH, "/v1/jobs/\(low[2])", body: Data(#"{"priority": 9}"#.utf8),
                headers: ["content-type": "application/json"])
            #expect(patched.status == 200, "\(patched.text)")
            #expect(patched.json["priority"] as? Int == 9)
            let running = try await deployment.request(
                .PATCH, "/v1/jobs/\(blocker)", body: Data(#"{"priority": 9}"#.utf8),
                headers: ["content-type": "application/json"])
            #expect(running.status == 409 && running.json["code"] as? String == "not_waiting", "\(running.text)")
            let invalid = try await deployment.request(
                .PATCH, "/v1/jobs/\(low[0])", body: Data(#"{"priority": 10}"#.utf8),
                headers: ["content-type": "application/json"])
            #expect(invalid.status == 400 && invalid.json["code"] as? String == "invalid_priority")

            for id in [blocker, high] + low { _ = try await deployment.waitForJob(id, timeout: .seconds(60)) }
            let order = try await Self.runs(deployment).sorted { $0.claimed < $1.claimed }
                .map { $0.job.replacingOccurrences(of: "-", with: "") }
            #expect(order == [blocker, low[2], high, low[0], low[1]], "claim order")
        }
    }
}
