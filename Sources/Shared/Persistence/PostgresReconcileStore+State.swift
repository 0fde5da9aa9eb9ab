import Foundation

extension PostgresReconcileStore {
    /// What one pass leaves in `scheduler_state` (migration 0009) for `/metrics`.
    package struct PassRecord: Sendable {
        package var leaseName: String
        package var holder: String
        package var epoch: Int64
        /// Actions planned and applied in this pass, by kind; added to the totals.
        package var planned: [String: Int]
        package var applied: [String: Int]
        package var failed: Int
        /// Why the fail-safe withheld destructive actions (a code and a sentence); nil when it did not.
        package var failSafe: (code: String, detail: String)?
        package var fullPass: Bool
        package var jobsRead: Int
        package var capacity: [String: Capacity]
        package var duration: Duration

        package struct Capacity: Sendable, Codable {
            package var running: Int
            package var admitted: Int
            package var waiting: Int
            package var maxJobs: Int?

            package init(running: Int, admitted: Int, waiting: Int, maxJobs: Int?) {
                self.running = running
                self.admitted = admitted
                self.waiting = waiting
                self.maxJobs = maxJobs
            }
        }

        package init(
            leaseName: String, holder: String, epoch: Int64, planned: [String: Int], applied: [String: Int],
            failed: Int, failSafe: (code: String, detail: String)?, fullPass: Bool, jobsRead: Int,
            capacity: [String: Capacity], duration: Duration
        ) {
            self.leaseName = leaseName
            self.holder = holder
            self.epoch = epoch
            self.planned = planned
            self.applied = applied
            self.failed = failed
            self.failSafe = failSafe
            self.fullPass = fullPass
            self.jobsRead = jobsRead
            self.capacity = capacity
            self.duration = duration
        }
    }

    /// Records the pass in the leader's fenced transaction: latest-pass columns replaced, counters added to.
    package func recordPass(_ record: PassRecord, in tx: PostgresTransaction) async throws {
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
        for (kind, count) in record.planned { planned[kind, default: 0] += count }
        for (kind, count) in record.applied { applied[kind, default: 0] += count }
        let seconds = record.duration.seconds
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
                .bool(record.fullPass), .int(record.jobsRead), .int(passes + 1), .text(try Self.json(planned)),
                .text(try Self.json(applied)), .int(failed + record.failed), .optional(record.failSafe?.code),
                .optional(record.failSafe.map { String($0.detail.prefix(500)) }), .text(try Self.json(record.capacity)),
            ])
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
