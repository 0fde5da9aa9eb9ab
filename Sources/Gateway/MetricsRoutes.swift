import Domain
import Foundation
import Hummingbird
import NIOCore
import Persistence
import Synchronization

/// `GET /metrics` in Prometheus' text format: what operators alert on. Job and dispatch gauges come from Postgres
/// (the truth, shared by every gateway), read through the partial indexes over unfinished jobs; request counters
/// are this process's own. Open to anyone who reaches it unless a token is configured; operators can also move it
/// to a listener of its own (`C2D_METRICS_ADDRESS`).
struct MetricsRoutes: Sendable {
    let store: PostgresJobStore
    let requests: RequestCounter
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    let token: String?

    func register(on router: Router<GatewayRequestContext>) {
        router.get("/metrics", use: metrics)
    }

    @Sendable func metrics(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        if let token { try Self.authorize(request.headers[.authorization], token: token) }
        let client = store.client
        let (jobs, workers) = try await withDeadline(.seconds(2), operation: "metrics query") {
            let jobs = try await client.query(
                "select environment, status, count(*) as n from jobs where finished_at is null group by 1, 2 order by 1, 2"
            )
            let workers = try await client.query(
                """
                select count(*) as n, coalesce(sum(slots), 0) as slots from workers
                where last_seen > now() - interval '1 minute'
                """)
            return (
                try jobs.map { (try $0.string("environment"), try $0.int("status"), try $0.int("n")) },
                (count: try workers[0].int("n"), slots: try workers[0].int("slots"))
            )
        }
        var text = """
            # HELP c2d_jobs_unfinished Jobs not yet finished, by environment and Ocean status code.
            # TYPE c2d_jobs_unfinished gauge

            """
        for (environment, status, count) in jobs {
            text += "c2d_jobs_unfinished{environment=\"\(Self.escape(environment))\",status=\"\(status)\"} \(count)\n"
        }
        text += """
            # HELP c2d_workers Workers that refreshed their registration within the last minute.
            # TYPE c2d_workers gauge
            c2d_workers \(workers.count)
            # HELP c2d_worker_slots Job slots of those workers.
            # TYPE c2d_worker_slots gauge
            c2d_worker_slots \(workers.slots)
            # HELP c2d_http_responses_total HTTP responses of this gateway, by status class.
            # TYPE c2d_http_responses_total counter

            """
        for (statusClass, count) in requests.snapshot() {
            text += "c2d_http_responses_total{class=\"\(statusClass)\"} \(count)\n"
        }
        // The scheduler has no HTTP server; its leader records each pass in Postgres, and any gateway shows it.
        text += try await withDeadline(.seconds(2), operation: "scheduler metrics") { [store] in
            try await store.schedulerMetrics()
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Compares the bearer token in constant time, so its bytes cannot be guessed one by one from timings.
    static func authorize(_ header: String?, token: String) throws {
        let expected = Array(("Bearer " + token).utf8)
        let given = Array((header ?? "").utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for index in expected.indices {
            difference |= expected[index] ^ (index < given.count ? given[index] : 0)
        }
        guard difference == 0 else {
            throw APIError(
                .unauthorized, code: "metrics_unauthorized",
                message: "/metrics needs 'Authorization: Bearer <C2D_METRICS_TOKEN>'",
                headers: [.wwwAuthenticate: "Bearer"])
        }
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// Responses by status class (2xx, 4xx, …), counted by `RequestIDMiddleware`.
package final class RequestCounter: Sendable {
    package init() {}

    private let counts = Mutex([String: Int]())

    func record(status: Int) {
        let statusClass = "\(status / 100)xx"
        counts.withLock { $0[statusClass, default: 0] += 1 }
    }

    func snapshot() -> [(String, Int)] {
        counts.withLock { $0.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }
}
