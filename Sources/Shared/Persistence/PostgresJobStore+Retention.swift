import Domain
import Foundation

extension PostgresJobStore {
    /// What one ``purgeExpired(now:batchSize:maximumJobs:removeFiles:)`` call removed.
    package struct PurgeResult: Sendable, Hashable {
        /// Jobs deleted, with their events, results, logs and outbox rows.
        package var jobs: Int
        /// Where the deleted jobs' results and logs were stored (job_results and job_logs `location`).
        package var locations: [String]

        package init(jobs: Int = 0, locations: [String] = []) {
            self.jobs = jobs
            self.locations = locations
        }
    }

    /// Deletes terminal jobs whose environment's `storageExpiry` (seconds, 0 = keep forever) has passed since they
    /// finished, in transactions of at most `batchSize` jobs, until none are left or `maximumJobs` were deleted.
    ///
    /// Each batch locks its jobs with `for update skip locked`, so concurrent purgers take disjoint jobs and a batch
    /// never waits on a row someone else holds; small batches keep every transaction and its locks short.
    ///
    /// Files: when `removeFiles` is given, it is called with each batch's locations *before* that batch's rows are
    /// deleted, inside its transaction; if it throws, the batch is rolled back and the error rethrown. So a crash
    /// never leaves files past their expiry: the rows stay until their files are gone, and a retry calls
    /// `removeFiles` again, which must therefore accept locations that no longer exist. Without `removeFiles` the
    /// locations are returned and deleting them is the caller's job (a crash in between leaves orphaned files).
    @discardableResult
    package func purgeExpired(
        now: Date = Date(),
        batchSize: Int = 500,
        maximumJobs: Int = 50_000,
        removeFiles: (@Sendable ([String]) async throws -> Void)? = nil
    ) async throws -> PurgeResult {
        precondition(batchSize > 0 && maximumJobs > 0, "batchSize and maximumJobs must be positive")
        var total = PurgeResult()
        while total.jobs < maximumJobs {
            let limit = min(batchSize, maximumJobs - total.jobs)
            let batch = try await purgeBatch(now: now, limit: limit, removeFiles: removeFiles)
            total.jobs += batch.jobs
            total.locations += batch.locations
            if batch.jobs < limit { break }
        }
        return total
    }

    private func purgeBatch(
        now: Date,
        limit: Int,
        removeFiles: (@Sendable ([String]) async throws -> Void)?
    ) async throws -> PurgeResult {
        try await client.withTransaction { tx in
            // Per environment with an expiry, its oldest finished jobs first (index jobs_finished). A storageExpiry
            // that is not a JSON number counts as 0, keep forever, rather than failing the purge.
            let rows = try await tx.query(
                """
                select j.id from (
                    select id, case when jsonb_typeof(definition -> 'storageExpiry') = 'number'
                        then (definition ->> 'storageExpiry')::numeric else 0 end as expiry
                    from environments
                ) e
                cross join lateral (
                    select id from jobs
                    where jobs.environment = e.id and jobs.finished_at is not null
                        and jobs.finished_at <= $1 - make_interval(secs => e.expiry::double precision)
                    order by jobs.finished_at
                    limit $2
                    for update skip locked
                ) j
                where e.expiry > 0
                limit $2
                """,
                [.timestamp(now), .int(limit)])
            guard !rows.isEmpty else { return PurgeResult() }
            let ids = try rows.map { try $0.uuid("id") }
            let idArray = PostgresValue.text("{" + ids.map(\.uuidString).joined(separator: ",") + "}")
            let locations = try await tx.query(
                """
                select location from job_results where job_id = any($1::uuid[])
                union all
                select location from job_logs where job_id = any($1::uuid[])
                """,
                [idArray]
            ).map { try $0.string("location") }
            if let removeFiles, !locations.isEmpty { try await removeFiles(locations) }
            // Events, results, logs and outbox rows go with their job (on delete cascade).
            let deleted = try await tx.execute("delete from jobs where id = any($1::uuid[])", [idArray])
            return PurgeResult(jobs: deleted, locations: locations)
        }
    }
}
