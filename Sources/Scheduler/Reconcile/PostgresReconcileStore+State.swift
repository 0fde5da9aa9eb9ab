import Foundation
import Persistence

extension PostgresReconcileStore {
    /// What one pass leaves in `scheduler_state` (migration 0009) for `/metrics`.
    package struct PassRecord: Sendable {
        package var leaseName: String
        package var holder: String
        package var epoch: Int64
        package var result: ReconcileResult

        package init(leaseName: String, holder: String, epoch: Int64, result: ReconcileResult) {
            self.leaseName = leaseName
            self.holder = holder
            self.epoch = epoch
            self.result = result
        }
    }

    /// Records the pass in the leader's fenced transaction: latest-pass columns replaced, counters added to.
    package func recordPass(_ record: PassRecord, in tx: PostgresTransaction) async throws {
        let result = record.result
        var planned: [String: Int] = [:]
        var applied: [String: Int] = [:]
        var failed = 0
        var passes = 0
        let rows = try await tx.query(
            "select planned_total, applied_total, failed_total, passes_total from scheduler_state where name = $1 "
                + "for update",
            [.text(record.leaseName)])
        if let row = rows.first {
            planned = Self.counts(try row.string("planned_total"))
            applied = Self.counts(try row.string("applied_total"))
            failed = try row.int("failed_total")
            passes = try row.int("passes_total")
        }
        for (kind, count) in result.planned { planned[kind.rawValue, default: 0] += count }
        for (kind, count) in result.applied { applied[kind.rawValue, default: 0] += count }
        let capacity = Dictionary(
            uniqueKeysWithValues: result.capacity.map { environment, entry in
                (
                    environment,
                    CapacityRecord(
                        running: entry.running, admitted: entry.admitted.count, waiting: entry.waiting.count,
                        maxJobs: entry.maxJobs)
                )
            })
        let failSafe: (kind: String, detail: String)? = result.failSafe.map { reason in
            switch reason {
            case .clusterUnavailable: ("cluster_unavailable", reason.description)
            case .clusterNearlyEmpty: ("cluster_nearly_empty", reason.description)
            }
        }
        let seconds = result.duration.seconds
        try await tx.execute(
            """
            insert into scheduler_state as s (
                name, holder, epoch, pass_finished_at, pass_seconds, full_pass, last_full_pass_seconds, jobs_read,
                passes_total, planned_total, applied_total, failed_total, fail_safe, fail_safe_detail, capacity)
            values ($1, $2, $3, now(), $4, $5, case when $5 then $4 end, $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12,
                $13::jsonb)
            on conflict (name) do update set
                holder = excluded.holder, epoch = excluded.epoch, pass_finished_at = excluded.pass_finished_at,
                pass_seconds = excluded.pass_seconds, full_pass = excluded.full_pass,
                last_full_pass_seconds = coalesce(excluded.last_full_pass_seconds, s.last_full_pass_seconds),
                jobs_read = excluded.jobs_read, passes_total = excluded.passes_total,
                planned_total = excluded.planned_total, applied_total = excluded.applied_total,
                failed_total = excluded.failed_total, fail_safe = excluded.fail_safe,
                fail_safe_detail = excluded.fail_safe_detail, capacity = excluded.capacity
            """,
            [
                .text(record.leaseName), .text(record.holder), .int(record.epoch), .double(seconds),
                .bool(result.fullPass), .int(result.jobsRead), .int(passes + 1), .text(try Self.json(planned)),
                .text(try Self.json(applied)), .int(failed + result.failed), .optional(failSafe?.kind),
                .optional(failSafe.map { String($0.detail.prefix(500)) }), .text(try Self.json(capacity)),
            ])
    }

    private struct CapacityRecord: Codable {
        var running: Int
        var admitted: Int
        var waiting: Int
        var maxJobs: Int?
    }

    private static func counts(_ json: String) -> [String: Int] {
        (try? JSONDecoder().decode([String: Int].self, from: Data(json.utf8))) ?? [:]
    }

    private static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
