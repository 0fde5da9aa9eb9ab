import Domain
import Foundation

extension PostgresJobStore {
    /// Hands jobs whose worker stopped renewing its lease to another worker: for each unfinished job whose
    /// lease expired more than `grace` ago, the dead holder is cleared and a message is queued through the
    /// outbox, in one transaction. The claim that follows starts a new attempt; a late write of the old
    /// attempt is refused by fencing. Returns the jobs handed over.
    package func requeueExpiredLeases(grace: Duration, limit: Int = 500) async throws -> [JobID] {
        try await client.withTransaction { tx in
            let rows = try await tx.query(
                """
                with expired as (
                    select id from jobs
                    where finished_at is null and worker_id is not null
                        and lease_until < now() - make_interval(secs => $1)
                    order by lease_until limit $2 for update skip locked
                ), released as (
                    update jobs set worker_id = null from expired where jobs.id = expired.id
                    returning jobs.id, jobs.environment, jobs.attempt, jobs.status
                ), events as (
                    insert into job_events (job_id, attempt, status, reason)
                    select id, attempt, status, 'lease expired; handed to another worker' from released
                )
                insert into outbox (job_id, exchange, routing_key, headers, body)
                select id, $3, environment,
                    jsonb_build_object($4::text, replace(id::text, '-', '')),
                    json_build_object('jobId', replace(id::text, '-', ''), 'environment', environment)::text
                from released
                returning job_id
                """,
                [
                    .double(grace.seconds), .int(Int64(limit)), .text(JobQueueNames.jobsExchange),
                    .text(JobMessage.Header.jobID),
                ])
            return try rows.map { JobID(uuid: try $0.uuid("job_id")) }
        }
    }
}
