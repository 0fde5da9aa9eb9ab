import Foundation

/// What `/metrics` shows from Postgres, the truth shared by every gateway: unfinished jobs, live workers, and the
/// scheduler's state (its lease, and the `scheduler_state` row the leader writes after each reconcile pass — the
/// scheduler has no HTTP server of its own).
package struct MetricsSnapshot: Sendable {
    package struct UnfinishedJobs: Sendable, Equatable {
        package var environment: String
        package var status: Int
        package var count: Int
    }

    package struct Lease: Sendable, Equatable {
        package var name: String
        /// Empty when nobody holds it.
        package var holder: String
        package var epoch: Int
        package var remainingSeconds: Double
        package var isHeld: Bool { !holder.isEmpty && remainingSeconds > 0 }
    }

    /// The leader's last reconcile pass, per lease.
    package struct ReconcilePass: Sendable, Equatable {
        package struct Capacity: Sendable, Equatable, Decodable {
            package var running: Int
            package var admitted: Int
            package var waiting: Int
            package var maxJobs: Int?
        }

        package var lease: String
        package var ageSeconds: Double
        package var passSeconds: Double
        package var lastFullPassSeconds: Double?
        package var jobsRead: Int
        package var passesTotal: Int
        package var failedTotal: Int
        /// Actions by kind, planned and applied, summed over all passes.
        package var planned: [String: Int]
        package var applied: [String: Int]
        /// Why the last pass withheld destructive actions (`cluster_unavailable`, `cluster_nearly_empty`), if it did.
        package var failSafe: String?
        package var capacity: [String: Capacity]
    }

    package var unfinished: [UnfinishedJobs]
    /// Workers that refreshed their registration within the last minute, and their slots.
    package var workers: Int
    package var workerSlots: Int
    package var leases: [Lease]
    package var passes: [ReconcilePass]
}

extension PostgresJobStore {
    /// Reads the snapshot; the job counts use the partial index over unfinished jobs, which a query must name an
    /// environment to use (migration 0021): hence `environment is not null`.
    package func metricsSnapshot() async throws -> MetricsSnapshot {
        let jobs = try await client.query(
            """
            select environment, status, count(*) as n from jobs
            where finished_at is null and environment is not null group by 1, 2 order by 1, 2
            """)
        let workers = try await client.query(
            """
            select count(*) as n, coalesce(sum(slots), 0) as slots from workers
            where last_seen > now() - interval '1 minute'
            """)
        return MetricsSnapshot(
            unfinished: try jobs.map {
                .init(environment: try $0.string("environment"), status: try $0.int("status"), count: try $0.int("n"))
            },
            workers: try workers[0].int("n"), workerSlots: try workers[0].int("slots"),
            leases: try await schedulerLeases(), passes: try await reconcilePasses())
    }

    private func schedulerLeases() async throws -> [MetricsSnapshot.Lease] {
        try await client.query(
            """
            select name, coalesce(holder, '') as holder, epoch,
                coalesce(extract(epoch from lease_until - now()), 0)::double precision as remaining
            from scheduler_lease order by name
            """
        ).map {
            .init(
                name: try $0.string("name"), holder: try $0.string("holder"), epoch: try $0.int("epoch"),
                remainingSeconds: max(0, try $0.double("remaining")))
        }
    }

    private func reconcilePasses() async throws -> [MetricsSnapshot.ReconcilePass] {
        let decoder = JSONDecoder()
        func decode<T: Decodable>(_ type: T.Type, _ text: String) -> T? {
            try? decoder.decode(type, from: Data(text.utf8))
        }
        return try await client.query(
            """
            select name, pass_seconds, last_full_pass_seconds, jobs_read, passes_total,
                planned_total::text as planned, applied_total::text as applied, failed_total, fail_safe,
                capacity::text as capacity,
                extract(epoch from now() - pass_finished_at)::double precision as age
            from scheduler_state order by name
            """
        ).map {
            .init(
                lease: try $0.string("name"), ageSeconds: try $0.double("age"),
                passSeconds: try $0.double("pass_seconds"),
                lastFullPassSeconds: try $0.optionalDouble("last_full_pass_seconds"),
                jobsRead: try $0.int("jobs_read"), passesTotal: try $0.int("passes_total"),
                failedTotal: try $0.int("failed_total"),
                planned: decode([String: Int].self, try $0.string("planned")) ?? [:],
                applied: decode([String: Int].self, try $0.string("applied")) ?? [:],
                failSafe: try $0.optionalString("fail_safe"),
                capacity: decode([String: MetricsSnapshot.ReconcilePass.Capacity].self, try $0.string("capacity"))
                    ?? [:])
        }
    }

    /// Whether Postgres answers at all (readiness checks).
    package func ping() async throws {
        _ = try await client.query("select 1 as ok")
    }
}
