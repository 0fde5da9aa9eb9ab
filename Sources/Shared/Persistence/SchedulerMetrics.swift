import Foundation

extension PostgresJobStore {
    /// The active scheduler's state as Prometheus text (0.0.4), from `scheduler_lease` and the `scheduler_state` row
    /// the leader writes after each reconcile pass (migration 0009). The scheduler has no HTTP server, so every
    /// gateway serves these on `/metrics`; with no scheduler yet, only the leader gauges appear (as 0).
    package func schedulerMetrics() async throws -> String {
        let leases = try await client.query(
            """
            select name, coalesce(holder, '') as holder, epoch,
                coalesce(extract(epoch from lease_until - now()), 0)::double precision as remaining
            from scheduler_lease order by name
            """)
        let states = try await client.query(
            """
            select name, holder, epoch, pass_seconds, full_pass, last_full_pass_seconds, jobs_read, passes_total,
                planned_total::text as planned, applied_total::text as applied, failed_total, fail_safe,
                capacity::text as capacity,
                extract(epoch from now() - pass_finished_at)::double precision as age
            from scheduler_state order by name
            """)
        var text = ""
        func family(_ name: String, _ type: String, _ help: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func label(_ value: String) -> String {
            value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
        }
        func number(_ value: Double) -> String { value.isFinite ? String(value) : "NaN" }

        family("c2d_scheduler_leader", "gauge", "1 for the process holding the scheduler lease (label holder).")
        for row in leases {
            let remaining = try row.double("remaining")
            let holder = try row.string("holder")
            let held = !holder.isEmpty && remaining > 0
            text += "c2d_scheduler_leader{lease=\"\(label(try row.string("name")))\",holder=\"\(label(holder))\"} "
            text += "\(held ? 1 : 0)\n"
        }
        family("c2d_scheduler_epoch", "gauge", "The scheduler lease's fencing epoch (increases on every takeover).")
        for row in leases {
            text += "c2d_scheduler_epoch{lease=\"\(label(try row.string("name")))\"} \(try row.int("epoch"))\n"
        }
        family("c2d_scheduler_lease_remaining_seconds", "gauge", "Seconds until the scheduler lease expires.")
        for row in leases {
            let remaining = max(0, try row.double("remaining"))
            text += "c2d_scheduler_lease_remaining_seconds{lease=\"\(label(try row.string("name")))\"} "
            text += "\(number(remaining))\n"
        }
        guard !states.isEmpty else { return text }

        struct Capacity: Decodable {
            var running: Int
            var admitted: Int
            var waiting: Int
            var maxJobs: Int?
        }
        let decoder = JSONDecoder()
        var lines: [String: [String]] = [:]
        for row in states {
            let lease = "lease=\"\(label(try row.string("name")))\""
            func add(_ family: String, _ labels: String, _ value: String) {
                lines[family, default: []].append("\(family){\(labels)} \(value)")
            }
            add("c2d_scheduler_reconcile_last_pass_age_seconds", lease, number(try row.double("age")))
            add(
                "c2d_scheduler_reconcile_duration_seconds", lease + ",pass=\"last\"",
                number(try row.double("pass_seconds")))
            if let full = try row.optionalDouble("last_full_pass_seconds") {
                add("c2d_scheduler_reconcile_duration_seconds", lease + ",pass=\"full\"", number(full))
            }
            add("c2d_scheduler_reconcile_jobs_read", lease, String(try row.int("jobs_read")))
            add("c2d_scheduler_reconcile_passes_total", lease, String(try row.int("passes_total")))
            add("c2d_scheduler_reconcile_failed_actions_total", lease, String(try row.int("failed_total")))
            for (stage, column) in [("planned", "planned"), ("applied", "applied")] {
                let counts =
                    (try? decoder.decode([String: Int].self, from: Data(try row.string(column).utf8))) ?? [:]
                for (kind, count) in counts.sorted(by: { $0.key < $1.key }) {
                    add(
                        "c2d_scheduler_reconcile_actions_total",
                        lease + ",kind=\"\(label(kind))\",stage=\"\(stage)\"", String(count))
                }
            }
            let failSafe = try row.optionalString("fail_safe")
            add("c2d_scheduler_fail_safe", lease, failSafe == nil ? "0" : "1")
            for reason in ["cluster_unavailable", "cluster_nearly_empty"] {
                add("c2d_scheduler_fail_safe_reason", lease + ",reason=\"\(reason)\"", failSafe == reason ? "1" : "0")
            }
            let capacity =
                (try? decoder.decode([String: Capacity].self, from: Data(try row.string("capacity").utf8))) ?? [:]
            for (environment, entry) in capacity.sorted(by: { $0.key < $1.key }) {
                let labels = "environment=\"\(label(environment))\""
                add("c2d_scheduler_jobs_running", labels, String(entry.running))
                add("c2d_scheduler_jobs_admitted", labels, String(entry.admitted))
                add("c2d_scheduler_jobs_waiting_for_capacity", labels, String(entry.waiting))
                if let maxJobs = entry.maxJobs { add("c2d_scheduler_environment_max_jobs", labels, String(maxJobs)) }
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
            ("c2d_scheduler_jobs_admitted", "gauge", "Queued jobs the environment's capacity admits now."),
            ("c2d_scheduler_jobs_waiting_for_capacity", "gauge", "Queued jobs held back by the environment's maxJobs."),
            ("c2d_scheduler_environment_max_jobs", "gauge", "The environment's maxJobs (absent: no limit)."),
        ]
        for (name, type, help) in families {
            guard let entries = lines[name] else { continue }
            family(name, type, help)
            for line in entries { text += line + "\n" }
        }
        return text
    }
}
