import AsyncHTTPClient
import ChildProcesses
import Foundation
import Gateway
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import TestSupport
import Testing

/// Server-Sent Events of status changes, resumable with Last-Event-ID.
@Suite("Event streams", .serialized)
struct EventStreamTests {
    /// Reads a job's event stream to its end (the server closes it after the terminal event).
    static func readStream(_ deployment: Deployment, _ path: String, lastEventID: Int? = nil) async throws
        -> [(id: Int, status: Int)]
    {
        var request = HTTPClientRequest(url: deployment.baseURL + path)
        request.headers.add(name: "authorization", value: try await deployment.defaultAuthorization())
        if let lastEventID { request.headers.add(name: "Last-Event-ID", value: String(lastEventID)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "content-type") == "text/event-stream")
        var text = ""
        for try await chunk in response.body {
            text += String(buffer: chunk)
        }
        return text.components(separatedBy: "\n\n").compactMap { block in
            let lines = block.split(separator: "\n")
            guard let idLine = lines.first(where: { $0.hasPrefix("id: ") }),
                let dataLine = lines.first(where: { $0.hasPrefix("data: ") }),
                let id = Int(idLine.dropFirst(4)),
                let json = try? JSONSerialization.jsonObject(with: Data(dataLine.dropFirst(6).utf8)) as? [String: Any],
                let status = json["status"] as? Int
            else { return nil }
            return (id, status)
        }
    }

    @Test("a job's stream carries every status change in order, ends at the end, and resumes after an id")
    func jobStream() async throws {
        try await Deployment.with { deployment in
            try await deployment.startDev()
            let id = try await deployment.submit(deployment.jobRequest(code: "print('hi')"))
            let events = try await Self.readStream(deployment, "/v1/jobs/\(id)/events")
            #expect(events.map(\.status) == [1, 20, 30, 40, 60, 70], "\(events)")
            #expect(events.map(\.id) == events.map(\.id).sorted())
            // Resuming after the third event gives exactly the rest.
            let resumed = try await Self.readStream(deployment, "/v1/jobs/\(id)/events", lastEventID: events[2].id)
            #expect(resumed.map(\.id) == events.dropFirst(3).map(\.id))
            let logs = try await deployment.get("/v1/jobs/\(id)/logs").json["results"] as? [[String: Any]] ?? []
            #expect(logs.contains { $0["filename"] as? String == "algorithm.log" })
            #expect(!logs.contains { $0["type"] as? String == "output" })
            let bad = try await deployment.get("/v1/jobs/\(id)/events", headers: ["Last-Event-ID": "x"])
            #expect(bad.status == 400)
        }
    }

    /// Opens a stream and returns once its headers arrived, leaving the body unread.
    static func open(_ deployment: Deployment, _ path: String, token: String) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: deployment.baseURL + path)
        request.headers.add(name: "authorization", value: "Bearer " + token)
        return try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    }

    @Test("open streams are capped per caller and in total with 429 too_many_streams, and freed when they end")
    func streamCaps() async throws {
        let caps = ["C2D_SSE_MAX_STREAMS": "3", "C2D_SSE_MAX_STREAMS_PER_CALLER": "2"]
        try await Deployment.with(extraEnvironment: caps) { deployment in
            try await deployment.startDev()
            let alice = try await deployment.token(owner: "alice", scopes: [.submit, .read])
            let ops = try await deployment.token(owner: "ops", scopes: [.operate])
            let auditor = try await deployment.token(owner: "auditor", scopes: [.operate])
            var request = deployment.jobRequest(code: "import time\ntime.sleep(3)")
            request["owner"] = nil
            let created = try await deployment.post("/v1/jobs", json: request, token: alice)
            let id = try #require(created.json["id"] as? String, "\(created.text)")

            let first = try await Self.open(deployment, "/v1/jobs/\(id)/events", token: alice)
            let second = try await Self.open(deployment, "/v1/jobs/\(id)/events", token: alice)
            #expect(first.status == .ok && second.status == .ok)
            let perCaller = try await deployment.get("/v1/jobs/\(id)/events", token: alice)
            #expect(perCaller.status == 429, "\(perCaller.text)")
            #expect(perCaller.json["code"] as? String == "too_many_streams")
            #expect(perCaller.header("retry-after") == "5")
            let all = try await Self.open(deployment, "/v1/events", token: ops)
            #expect(all.status == .ok)
            let total = try await deployment.get("/v1/events", token: auditor)
            #expect(total.status == 429, "\(total.text)")
            #expect((total.json["message"] as? String ?? "").contains("limit of 3 event streams"))

            // A job's streams end with the job, and give their slots back.
            for response in [first, second] {
                var text = ""
                for try await chunk in response.body { text += String(buffer: chunk) }
                #expect(text.contains("\"status\":70"), "\(text)")
            }
            let again = try await Self.readStream(deployment, "/v1/jobs/\(id)/events")
            #expect(again.last?.status == 70)
            _ = all
        }
    }

    @Test("followed logs hold a slot of the same caps as event streams; an archived log read does not")
    func followedLogsAreCapped() async throws {
        let caps = ["C2D_SSE_MAX_STREAMS": "3", "C2D_SSE_MAX_STREAMS_PER_CALLER": "2"]
        try await Deployment.with(extraEnvironment: caps) { deployment in
            try await deployment.startDev()
            let alice = try await deployment.token(owner: "alice", scopes: [.submit, .read])
            let bob = try await deployment.token(owner: "bob", scopes: [.submit, .read])
            var request = deployment.jobRequest(
                code: "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n    time.sleep(1)\n")
            request["owner"] = nil
            let created = try await deployment.post("/v1/jobs", json: request, token: alice)
            let id = try #require(created.json["id"] as? String, "\(created.text)")
            let follow = "/v1/jobs/\(id)/logs/algorithm?follow=true"

            let first = try await Self.open(deployment, follow, token: alice)
            let second = try await Self.open(deployment, "/v1/jobs/\(id)/events", token: alice)
            #expect(first.status == .ok && second.status == .ok)
            // Followed logs and event streams count together, per caller…
            let perCaller = try await deployment.get(follow, token: alice)
            #expect(perCaller.status == 429, "\(perCaller.text)")
            #expect(perCaller.json["code"] as? String == "too_many_streams")
            #expect(perCaller.header("retry-after") == "5")
            // …and in total: bob's own job's log takes the last slot, then nobody gets one.
            let bobs = try await deployment.post("/v1/jobs", json: request, token: bob)
            let bobID = try #require(bobs.json["id"] as? String, "\(bobs.text)")
            let third = try await Self.open(deployment, "/v1/jobs/\(bobID)/logs/algorithm?follow=true", token: bob)
            #expect(third.status == .ok)
            let total = try await deployment.get("/v1/jobs/\(bobID)/logs/algorithm?follow=true", token: bob)
            #expect(total.status == 429, "\(total.text)")
            #expect((total.json["message"] as? String ?? "").contains("limit of 3"))

            // Streams give their slots back when they end (a followed log ends with its step).
            for response in [first, second, third] {
                var text = ""
                for try await chunk in response.body { text += String(buffer: chunk) }
                #expect(!text.isEmpty)
            }
            for job in [id, bobID] { _ = try await deployment.waitForJob(job, timeout: .seconds(60)) }
            let deadline = ContinuousClock.now + .seconds(10)
            var again = try await deployment.get(follow, token: alice)
            while again.status == 429, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                again = try await deployment.get(follow, token: alice)
            }
            #expect(again.status == 200 && again.text.contains("tick 3"), "\(again.status) \(again.text)")
            // Reading an archived log holds no slot: with both of alice's slots taken by a new job's streams, she
            // may still read the finished job's log, but not follow it.
            var slow = deployment.jobRequest(code: "import time\ntime.sleep(4)")
            slow["owner"] = nil
            let next = try await deployment.post("/v1/jobs", json: slow, token: alice)
            let nextID = try #require(next.json["id"] as? String, "\(next.text)")
            var held: [HTTPClientResponse] = []
            for _ in 0..<2 { held.append(try await Self.open(deployment, "/v1/jobs/\(nextID)/events", token: alice)) }
            #expect(held.allSatisfy { $0.status == .ok })
            #expect(try await deployment.get(follow, token: alice).status == 429)
            let archived = try await deployment.get("/v1/jobs/\(id)/logs/algorithm", token: alice)
            #expect(archived.status == 200 && archived.text.contains("tick 3"), "\(archived.text)")
            for response in held { for try await _ in response.body {} }
        }
    }
}

@Suite("Metrics", .serialized)
struct MetricsTests {
    @Test("/metrics exposes unfinished jobs, workers and response counts in Prometheus' format")
    func metrics() async throws {
        try await Deployment.with { deployment in
            // Gateway only, so the job stays queued and shows up as unfinished.
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            _ = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
            let response = try await deployment.get("/metrics")
            #expect(response.status == 200)
            #expect(
                response.text.contains(
                    "c2d_jobs_unfinished{environment=\"\(deployment.environmentID)\",status=\"1\"} 1"),
                "\(response.text)")
            #expect(response.text.contains("c2d_workers "))
            #expect(response.text.contains("c2d_worker_slots "))
            #expect(response.text.contains("c2d_http_responses_total{class=\"2xx\"}"))
        }
    }

    @Test("/metrics can move to a listener of its own and require a bearer token")
    func metricsListenerAndToken() async throws {
        let port = try TestEnvironment.freePort()
        let token = "metrics-" + UUID().uuidString
        let settings = ["C2D_METRICS_ADDRESS": "127.0.0.1:\(port)", "C2D_METRICS_TOKEN": token]
        try await Deployment.with(extraEnvironment: settings) { deployment in
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            #expect(try await deployment.get("/metrics").status == 404, "not on the API's port")
            func scrape(_ path: String, _ authorization: String?) async throws -> Deployment.HTTPResult {
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
                if let authorization { request.headers.add(name: "authorization", value: authorization) }
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                let body = try await response.body.collect(upTo: 1 << 20)
                return Deployment.HTTPResult(
                    status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                    body: Data(buffer: body))
            }
            for authorization in [nil, "Bearer wrong", "Bearer " + token + "x", token] {
                let refused = try await scrape("/metrics", authorization)
                #expect(refused.status == 401, "\(authorization ?? "none"): \(refused.text)")
                #expect(refused.json["code"] as? String == "metrics_unauthorized")
            }
            let scraped = try await scrape("/metrics", "Bearer " + token)
            #expect(scraped.status == 200)
            #expect(scraped.text.contains("c2d_workers "), "\(scraped.text)")
            #expect(try await scrape("/v1/jobs", "Bearer " + token).status == 404, "only /metrics there")
        }
    }
}
