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
        let snapshot = try await withDeadline(.seconds(2), operation: "metrics query") { [store] in
            try await store.metricsSnapshot()
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: Self.render(snapshot, requests: requests.snapshot()))))
    }

    /// The Prometheus text (0.0.4) of a snapshot and this gateway's request counters. A family with no samples
    /// is left out, except the leader gauges, which appear (as 0) before any scheduler ran.
    static func render(_ snapshot: MetricsSnapshot, requests: [(String, Int)]) -> String {
        var text = PrometheusText()
        text.family("c2d_jobs_unfinished", "gauge", "Jobs not yet finished, by environment and Ocean status code.")
        for jobs in snapshot.unfinished {
            text.sample(
                "c2d_jobs_unfinished", ["environment": jobs.environment, "status": "\(jobs.status)"], jobs.count)
        }
        text.family("c2d_workers", "gauge", "Workers that refreshed their registration within the last minute.")
        text.sample("c2d_workers", [:], snapshot.workers)
        text.family("c2d_worker_slots", "gauge", "Job slots of those workers.")
        text.sample("c2d_worker_slots", [:], snapshot.workerSlots)
        text.family("c2d_http_responses_total", "counter", "HTTP responses of this gateway, by status class.")
        for (statusClass, count) in requests { text.sample("c2d_http_responses_total", ["class": statusClass], count) }

        text.family("c2d_scheduler_leader", "gauge", "1 for the process holding the scheduler lease (label holder).")
        for lease in snapshot.leases {
            text.sample("c2d_scheduler_leader", ["lease": lease.name, "holder": lease.holder], lease.isHeld ? 1 : 0)
        }
        text.family(
            "c2d_scheduler_epoch", "gauge", "The scheduler lease's fencing epoch (increases on every takeover).")
        for lease in snapshot.leases { text.sample("c2d_scheduler_epoch", ["lease": lease.name], lease.epoch) }
        text.family("c2d_scheduler_lease_remaining_seconds", "gauge", "Seconds until the scheduler lease expires.")
        for lease in snapshot.leases {
            text.sample("c2d_scheduler_lease_remaining_seconds", ["lease": lease.name], lease.remainingSeconds)
        }
        text.text += renderPasses(snapshot.passes)
        return text.text
    }

    /// The leader's reconcile passes (none before a scheduler ran one).
    static func renderPasses(_ passes: [MetricsSnapshot.ReconcilePass]) -> String {
        // Grouped by family, so each family's HELP/TYPE comes once, before all leases' samples.
        var samples = PrometheusText.Families()
        for pass in passes {
            let lease: KeyValuePairs = ["lease": pass.lease]
            samples.add("c2d_scheduler_reconcile_last_pass_age_seconds", lease, pass.ageSeconds)
            samples.add(
                "c2d_scheduler_reconcile_duration_seconds", ["lease": pass.lease, "pass": "last"], pass.passSeconds)
            if let full = pass.lastFullPassSeconds {
                samples.add("c2d_scheduler_reconcile_duration_seconds", ["lease": pass.lease, "pass": "full"], full)
            }
            samples.add("c2d_scheduler_reconcile_jobs_read", lease, pass.jobsRead)
            samples.add("c2d_scheduler_reconcile_passes_total", lease, pass.passesTotal)
            samples.add("c2d_scheduler_reconcile_failed_actions_total", lease, pass.failedTotal)
            for (stage, counts) in [("planned", pass.planned), ("applied", pass.applied)] {
                for (kind, count) in counts.sorted(by: { $0.key < $1.key }) {
                    samples.add(
                        "c2d_scheduler_reconcile_actions_total",
                        ["lease": pass.lease, "kind": kind, "stage": stage], count)
                }
            }
            samples.add("c2d_scheduler_fail_safe", lease, pass.failSafe == nil ? 0 : 1)
            for reason in ["cluster_unavailable", "cluster_nearly_empty"] {
                samples.add(
                    "c2d_scheduler_fail_safe_reason", ["lease": pass.lease, "reason": reason],
                    pass.failSafe == reason ? 1 : 0)
            }
            for (environment, capacity) in pass.capacity.sorted(by: { $0.key < $1.key }) {
                let labels: KeyValuePairs = ["environment": environment]
                samples.add("c2d_scheduler_jobs_running", labels, capacity.running)
                samples.add("c2d_scheduler_jobs_admitted", labels, capacity.admitted)
                samples.add("c2d_scheduler_jobs_waiting_for_capacity", labels, capacity.waiting)
                if let maxJobs = capacity.maxJobs { samples.add("c2d_scheduler_environment_max_jobs", labels, maxJobs) }
            }
        }
        let families: [(String, String, String)] = [
            (
                "c2d_scheduler_reconcile_last_pass_age_seconds", "gauge",
                "Seconds since the leader's last reconcile pass."
            ),
            (
                "c2d_scheduler_reconcile_duration_seconds", "gauge",
                "Duration of the last pass and of the last full pass."
            ),
            ("c2d_scheduler_reconcile_jobs_read", "gauge", "Job rows the last pass read."),
            ("c2d_scheduler_reconcile_passes_total", "counter", "Reconcile passes, across leaders."),
            ("c2d_scheduler_reconcile_failed_actions_total", "counter", "Actions whose application failed (retried)."),
            ("c2d_scheduler_reconcile_actions_total", "counter", "Reconcile actions by kind, planned and applied."),
            ("c2d_scheduler_fail_safe", "gauge", "1 while the last pass withheld destructive actions (fail-safe)."),
            ("c2d_scheduler_fail_safe_reason", "gauge", "Why the last pass was in fail-safe mode."),
            ("c2d_scheduler_jobs_running", "gauge", "Claimed unfinished jobs per environment (capacity in use)."),
            ("c2d_scheduler_jobs_admitted", "gauge", "Jobs admitted to run but not yet claimed by a worker."),
            (
                "c2d_scheduler_jobs_waiting_for_capacity", "gauge",
                "Queued jobs waiting for admission (the environment's maxJobs or free worker slots)."
            ),
            ("c2d_scheduler_environment_max_jobs", "gauge", "The environment's maxJobs (absent: no limit)."),
        ]
        var text = PrometheusText()
        for (name, type, help) in families {
            guard let lines = samples.lines[name] else { continue }
            text.family(name, type, help)
            for line in lines { text.text += line }
        }
        return text.text
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

/// Prometheus' text exposition format (0.0.4).
struct PrometheusText {
    var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: some Numeric) {
        text += Self.line(name, labels.map { ($0.key, $0.value) }, value)
    }

    /// Samples collected per family, to be written under one HELP/TYPE each.
    struct Families {
        var lines: [String: [String]] = [:]

        mutating func add(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: some Numeric) {
            lines[name, default: []].append(PrometheusText.line(name, labels.map { ($0.key, $0.value) }, value))
        }
    }

    static func line(_ name: String, _ labels: [(String, String)], _ value: some Numeric) -> String {
        let rendered = labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
        let number: String
        if let double = value as? Double {
            number = double.isFinite ? String(double) : "NaN"
        } else {
            number = "\(value)"
        }
        return labels.isEmpty ? "\(name) \(number)\n" : "\(name){\(rendered)} \(number)\n"
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
