import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
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
}
