import AMQP
import ChildProcesses
import Domain
import Foundation
import Logging
import Persistence
import TestSupport
import Testing

/// Poison messages, the event stream and `c2d tail`, and startup errors, with the real `c2d` binary.
@Suite("Messaging: poison, events, tail", .serialized)
struct MessagingTests {
    static let amqp = AMQPConfiguration.fromEnvironment()

    @Test("a job whose worker dies at every attempt ends as poison after C2D_POISON_ATTEMPTS lost workers")
    func crashLoopEndsAsPoison() async throws {
        let environment = ["C2D_LEASE_SECONDS": "2", "C2D_LEASE_GRACE_SECONDS": "0", "C2D_POISON_ATTEMPTS": "3"]
        try await Deployment.with(extraEnvironment: environment) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            try await deployment.waitUntilHealthy()
            let id = try await deployment.submit(deployment.jobRequest(code: "print('never runs to the end')"))

            // Each doomed worker claims the job (a new attempt each time) and exits before it runs; the scheduler
            // hands the job over once the lease lapses, and after the third lost worker it stops trying.
            var deaths = 0
            var finished = false
            for index in 1...6 where !finished {
                let worker = try deployment.start(
                    "worker-\(index)", ["worker"], environment: ["C2D_FAULT_EXIT_AFTER_CLAIM": "1"])
                let deadline = ContinuousClock.now + .seconds(40)
                while ContinuousClock.now < deadline {
                    if !worker.isRunning {
                        deaths += 1
                        #expect(worker.exitCode == 75, "\(worker.log.suffix(2000))")
                        break
                    }
                    if try await deployment.get("/v1/jobs/\(id)").json["dateFinished"] is String {
                        finished = true
                        break
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                if worker.isRunning { await worker.stop() }
            }
            let job = try await deployment.waitForJob(id, timeout: .seconds(30))
            #expect(job["outcome"] as? String == "failed", "\(job)\n\(deployment.logs)")
            #expect((job["failureReason"] as? String ?? "").contains("poison"), "\(job)")
            #expect(deaths == 3, "workers lost before the job was failed: \(deaths)")
            #expect(job["attempt"] as? Int == 3)
            let runs = try await deployment.postgres.query(
                "select count(*) as n from job_events where job_id = $1::uuid and status = 40", [.text(id)])
            #expect(try runs[0].int("n") == 0, "the algorithm never ran")
        }
    }

    @Test("a dead-lettered job message: poison if claimed often enough, else handed back to the dispatcher")
    func deadLetters() async throws {
        try await Deployment.with(extraEnvironment: ["C2D_POISON_ATTEMPTS": "2"]) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            try await deployment.waitUntilHealthy()
            // No worker: the jobs stay where the test puts them.
            let poisoned = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
            let spared = try await deployment.submit(deployment.jobRequest(code: "print(2)"))
            let store = PostgresJobStore(client: deployment.postgres)
            try await store.markAdmitted([JobID(poisoned)!, JobID(spared)!])
            try await deployment.postgres.execute(
                "update jobs set attempt = 2 where id = $1::uuid", [.text(poisoned)])
            try await AMQPClient.withConnectedClient(configuration: Self.amqp, logger: Logger(label: "test")) {
                client in
                for id in [poisoned, spared] {
                    try await client.publish(
                        AMQPMessage(
                            body: JobMessage(jobId: JobID(id)!, environment: deployment.environmentID).body,
                            headers: [JobMessage.Header.jobID: id, "x-delivery-count": "5"]),
                        exchange: JobQueueNames.deadLetterExchange, routingKey: deployment.environmentID)
                }
            }
            let job = try await deployment.waitForJob(poisoned, timeout: .seconds(30))
            #expect((job["failureReason"] as? String ?? "").contains("poison"), "\(job)")
            // The other is published to its queue again by the dispatcher, and stays unfinished.
            try await AMQPClient.withConnectedClient(configuration: Self.amqp, logger: Logger(label: "test")) {
                client in
                try await waitUntil("the spared job's message is back in its queue") {
                    try await client.queueStatus(JobQueueNames.queue(environment: deployment.environmentID)).messages
                        >= 1
                }
            }
            #expect(try await deployment.get("/v1/jobs/\(spared)").json["dateFinished"] == nil)
            // The dead letters are kept for operators in c2d.jobs.dead.
            #expect(try await Self.takeDeadLetter(jobID: poisoned), "the job's message is in c2d.jobs.dead")
            #expect(try await Self.takeDeadLetter(jobID: spared))
        }
    }

    /// Consumes c2d.jobs.dead looking for the job's message: acks it (cleanup), returns the others.
    static func takeDeadLetter(jobID: String) async throws -> Bool {
        let wanted = jobID.lowercased().replacingOccurrences(of: "-", with: "")
        return try await AMQPClient.withConnectedClient(configuration: amqp, logger: Logger(label: "test")) { client in
            let consumer = client.consume(queue: "c2d.jobs.dead", prefetch: 200)
            let watchdog = Task {
                try await Task.sleep(for: .seconds(10))
                consumer.cancel()
            }
            defer { watchdog.cancel() }
            var found = false
            for try await delivery in consumer {
                let id = (delivery.message.headers["c2d-job-id"] ?? "").lowercased().replacingOccurrences(
                    of: "-", with: "")
                if id == wanted {
                    try await delivery.ack()
                    found = true
                    break
                }
                try await delivery.nack(requeue: true)
            }
            return found
        }
    }

    @Test("every status change reaches the stream; tail --from across a disconnect loses and repeats nothing")
    func tailResumes() async throws {
        try await Deployment.with() { deployment in
            try await deployment.startDev()
            let start = try await deployment.postgres.query("select coalesce(max(id), 0) as n from job_events")[0]
                .int("n")
            let tail1 = try deployment.start(
                "tail-1", ["tail", "--json", "--environment", deployment.environmentID, "--from", String(start)])

            var jobs: [String] = []
            for index in 0..<3 {
                jobs.append(try await deployment.submit(deployment.jobRequest(code: "print(\(index))")))
            }
            for id in jobs { _ = try await deployment.waitForJob(id) }
            var expected = try await Self.eventIDs(deployment, after: start)
            try await waitUntil("tail-1 printed the first jobs' events") {
                Set(Self.printedIDs(tail1.log)).isSuperset(of: expected)
            }
            await tail1.kill9()
            let first = Self.printedIDs(tail1.log)
            let last = try #require(first.last)

            // Events that happen while nobody tails.
            var more: [String] = []
            for index in 0..<3 {
                more.append(try await deployment.submit(deployment.jobRequest(code: "print(\(index + 10))")))
            }
            for id in more { _ = try await deployment.waitForJob(id) }
            expected = try await Self.eventIDs(deployment, after: start)

            let tail2 = try deployment.start(
                "tail-2", ["tail", "--json", "--environment", deployment.environmentID, "--from", String(last)])
            try await waitUntil("tail-2 caught up") {
                Set(first + Self.printedIDs(tail2.log)).isSuperset(of: expected)
            }
            let all = first + Self.printedIDs(tail2.log)
            #expect(all == expected, "every event once, in order:\n\(all)\n\(expected)")
            await tail2.stop()

            // The events carry the job's details and the submitting request's trace context.
            let line = try #require(tail2.log.split(separator: "\n").first { $0.hasPrefix("{") })
            let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(event["environment"] as? String == deployment.environmentID)
            #expect(event["owner"] as? String == "tester")
            #expect(event["statusText"] is String)
            #expect((event["traceparent"] as? String ?? "").hasPrefix("00-"), "\(event)")
            #expect(event["requestId"] is String, "\(event)")
        }
    }

    @Test("an event whose transaction commits after a later one is relayed, in order, not skipped")
    func outOfOrderCommitsAreNotLost() async throws {
        try await Deployment.with() { deployment in
            // Gateway and scheduler, no worker: the test writes the events itself.
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try deployment.start("scheduler", ["scheduler"])
            try await deployment.waitUntilHealthy()
            let first = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
            let second = try await deployment.submit(deployment.jobRequest(code: "print(2)"))
            let start = try await deployment.postgres.query("select coalesce(max(id), 0) as n from job_events")[0]
                .int("n")
            let tail = try deployment.start(
                "tail", ["tail", "--json", "--environment", deployment.environmentID, "--from", String(start)])
            // A writer takes an event id and stays open while a later event commits, long enough for several relay
            // passes to see the gap.
            let slow = PostgresClient(configuration: .fromEnvironment(), logger: Logger(label: "test"))
            let held = Task {
                try await slow.withTransaction { tx in
                    try await tx.execute("select 1 from jobs where id = $1::uuid for update", [.text(first)])
                    try await tx.execute(
                        "insert into job_events (job_id, attempt, status, reason) values ($1::uuid, 0, 1, 'slow')",
                        [.text(first)])
                    try await Task.sleep(for: .seconds(3))
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            try await deployment.postgres.execute(
                "insert into job_events (job_id, attempt, status, reason) values ($1::uuid, 0, 1, 'fast')",
                [.text(second)])
            try await held.value
            await slow.shutdown()
            let expected = try await Self.eventIDs(deployment, after: start)
            #expect(expected.count == 2)
            try await waitUntil("the tail printed both events") {
                Set(Self.printedIDs(tail.log)).isSuperset(of: expected)
            }
            #expect(Self.printedIDs(tail.log) == expected, "in id order, the slow one first")
            await tail.stop()
        }
    }

    @Test("wrong credentials: c2d worker exits non-zero with one clear error")
    func wrongCredentials() async throws {
        // This checkout's broker (its port comes from `scripts/services env`), with a wrong password.
        let url = (ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/")
            .replacingOccurrences(of: "guest:guest@", with: "guest:wrong@")
        try await Deployment.with(extraEnvironment: ["AMQP_URL": url]) { deployment in
            let worker = try deployment.start("worker", ["worker"])
            #expect(await worker.waitForExit(timeout: .seconds(30)))
            #expect(worker.exitCode != 0)
            let errors = worker.log.split(separator: "\n").filter { $0.hasPrefix("Error:") }
            #expect(errors.count == 1, "\(worker.log)")
            #expect(errors.first?.contains("cannot connect to RabbitMQ") == true, "\(worker.log)")
            #expect(errors.first?.contains("refused the login") == true, "\(worker.log)")
        }
    }

    /// The ids of this deployment's job events after `start`, in order.
    static func eventIDs(_ deployment: Deployment, after start: Int) async throws -> [Int] {
        try await deployment.postgres.query(
            """
            select e.id from job_events e join jobs j on j.id = e.job_id
            where j.environment = $1 and e.id > $2 order by e.id
            """,
            [.text(deployment.environmentID), .int(Int64(start))]
        ).map { try $0.int("id") }
    }

    static func printedIDs(_ log: String) -> [Int] {
        log.split(separator: "\n").filter { $0.hasPrefix("{") }.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["id"] as? Int
        }
    }
}
