import Domain
import Foundation

/// The reads and writes behind ocean-node's compute API (docs/ocean-node.md). A job started through it has
/// `ocean_node` set (the fields ocean-node keeps besides the workflow, as JSON the gateway owns) and `free_tier`
/// when it runs in its environment's free tier (migration 0014).
extension PostgresJobStore {
    /// A job as ocean-node's `ComputeJob` needs it. Epochs are Postgres's `extract(epoch …)` text (seconds with a
    /// fraction), the form ocean-node writes its dates in.
    package struct OceanNodeJobRecord: Sendable {
        package var job: Job
        package var freeTier: Bool
        /// The `ocean_node` column, as JSON text.
        package var details: String
        package var createdEpoch: String
        package var finishedEpoch: String?
        /// When the current attempt's algorithm started (status 40) and stopped (its next status), if it did.
        package var algorithmStartEpoch: String?
        package var algorithmStopEpoch: String?
        package var results: [ResultFile]

        package init(
            job: Job, freeTier: Bool, details: String, createdEpoch: String, finishedEpoch: String?,
            algorithmStartEpoch: String?, algorithmStopEpoch: String?, results: [ResultFile]
        ) {
            self.job = job
            self.freeTier = freeTier
            self.details = details
            self.createdEpoch = createdEpoch
            self.finishedEpoch = finishedEpoch
            self.algorithmStartEpoch = algorithmStartEpoch
            self.algorithmStopEpoch = algorithmStopEpoch
            self.results = results
        }
    }

    /// Inserts a job started through the ocean-node API with its first event, in one statement (as
    /// ``insert(_:idempotencyKey:trace:)`` does), so the dispatcher never sees it without its tier. Returns its
    /// creation time as epoch text.
    package func insertOceanNode(
        _ job: Job, workflowJSON: String? = nil, freeTier: Bool, details: String, trace: RequestTrace
    ) async throws -> String {
        let workflow = try workflowJSON ?? WorkflowJSON(job.workflow).text
        let rows = try await client.query(
            """
            with job as (
                insert into jobs (
                    id, environment, owner, agreement_id, status, created_at, workflow, viewers, priority,
                    request_id, traceparent, free_tier, ocean_node)
                values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                returning id, status, extract(epoch from created_at)::text as created_epoch
            ), event as (
                insert into job_events (job_id, attempt, status) select id, 0, status from job
            )
            select created_epoch from job
            """,
            [
                .uuid(job.id.uuid), .text(job.environment), .text(job.owner), .optional(job.agreementID),
                .int(Int64(job.status.rawValue)), .timestamp(job.createdAt), .json(workflow),
                .textArray(job.viewers), .int(Int64(job.priority)), .optional(trace.requestID),
                .optional(trace.traceparent), .bool(freeTier), .json(details),
            ])
        guard let row = rows.first else {
            throw PostgresError(code: .server, message: "the job insert returned no row")
        }
        wakeups.wake([job.environment])
        return try row.string("created_epoch")
    }

    /// Jobs started through the ocean-node API that match every given selector, oldest first, with their results.
    /// A `jobID` that is not a job id matches nothing; `owner` compares without regard to case.
    package func oceanNodeJobs(jobID: String?, owner: String?, agreementID: String?) async throws
        -> [OceanNodeJobRecord]
    {
        var conditions = ["ocean_node is not null"]
        var parameters: [PostgresValue] = []
        if let jobID {
            guard let id = JobID(jobID) else { return [] }
            parameters.append(.uuid(id.uuid))
            conditions.append("id = $\(parameters.count)")
        }
        if let owner {
            parameters.append(.text(owner))
            conditions.append("lower(owner) = lower($\(parameters.count))")
        }
        if let agreementID {
            parameters.append(.text(agreementID))
            conditions.append("agreement_id = $\(parameters.count)")
        }
        guard parameters.count > 0 else { return [] }
        let rows = try await client.query(
            """
            select \(Self.jobColumns), free_tier, ocean_node::text as ocean_node,
                extract(epoch from created_at)::text as created_epoch,
                extract(epoch from finished_at)::text as finished_epoch,
                (select extract(epoch from min(e.created_at))::text from job_events e
                 where e.job_id = jobs.id and e.attempt = jobs.attempt and e.status = 40) as algorithm_start,
                (select extract(epoch from min(e.created_at))::text from job_events e
                 where e.job_id = jobs.id and e.attempt = jobs.attempt and e.status > 40) as algorithm_stop
            from jobs where \(conditions.joined(separator: " and ")) order by created_at, id limit 1000
            """, parameters)
        var records = try rows.map { row in
            OceanNodeJobRecord(
                job: try Self.job(from: row), freeTier: try row.bool("free_tier"),
                details: try row.optionalString("ocean_node") ?? "{}", createdEpoch: try row.string("created_epoch"),
                finishedEpoch: try row.optionalString("finished_epoch"),
                algorithmStartEpoch: try row.optionalString("algorithm_start"),
                algorithmStopEpoch: try row.optionalString("algorithm_stop"), results: [])
        }
        for index in records.indices {
            records[index].results = try await results(of: records[index].job.id)
        }
        return records
    }

    /// What an environment's jobs use right now, fleet-wide, from Postgres: the dispatcher's own counts.
    package struct EnvironmentUsage: Sendable {
        /// Admitted, unfinished jobs (they hold the environment's slots), and those of them in the free tier.
        package var running = 0
        package var runningFree = 0
        /// Jobs waiting for admission, and those of them in the free tier.
        package var queued = 0
        package var queuedFree = 0
        /// Seconds of run time left, summed over running jobs (each: its time limit minus its attempt's age).
        package var runRemainingSeconds = 0.0
        package var runRemainingSecondsFree = 0.0
        /// Seconds of queue wait left, summed over queued jobs (each: its queue limit minus its age).
        package var queueRemainingSeconds = 0.0
        package var queueRemainingSecondsFree = 0.0
        /// Slots of the live workers serving the environment.
        package var workerSlots = 0
        package var lastSeenEpoch: String?
        /// Per resource id: the amounts running jobs asked for, and how many running jobs asked for it (the others
        /// run with the environment's amounts); the same for running free jobs.
        package var requested: [String: (amount: Double, jobs: Int)] = [:]
        package var requestedFree: [String: (amount: Double, jobs: Int)] = [:]

        package init() {}

    }

    /// Usage of every recorded environment. A worker counts if it refreshed its registration within
    /// `workerStaleAfter`.
    package func environmentUsage(workerStaleAfter: Duration = .seconds(60)) async throws -> [String: EnvironmentUsage]
    {
        let rows = try await client.query(
            """
            select e.id, extract(epoch from e.last_seen)::text as last_seen,
                (select coalesce(sum(w.slots), 0) from workers w
                 where e.id = any(w.environments) and w.last_seen > now() - make_interval(secs => $1)) as worker_slots,
                count(j.id) filter (where j.admitted_at is not null) as running,
                count(j.id) filter (where j.admitted_at is not null and j.free_tier) as running_free,
                count(j.id) filter (where j.admitted_at is null) as queued,
                count(j.id) filter (where j.admitted_at is null and j.free_tier) as queued_free,
                coalesce(sum(run.remaining) filter (where j.admitted_at is not null), 0)::float8 as run_remaining,
                coalesce(sum(run.remaining) filter (where j.admitted_at is not null and j.free_tier), 0)::float8
                    as run_remaining_free,
                coalesce(sum(wait.remaining) filter (where j.admitted_at is null), 0)::float8 as queue_remaining,
                coalesce(sum(wait.remaining) filter (where j.admitted_at is null and j.free_tier), 0)::float8
                    as queue_remaining_free
            from environments e
            left join jobs j on j.environment = e.id and j.finished_at is null
            left join lateral (
                select greatest(0, coalesce(
                    (j.workflow -> 'stages' -> 0 -> 'compute' ->> 'maxtime')::numeric,
                    (e.definition ->> 'maxJobDuration')::numeric, 0)
                    - extract(epoch from now() - coalesce(j.attempt_started_at, now()))) as remaining
            ) run on true
            left join lateral (
                select greatest(0, coalesce(
                    (j.ocean_node ->> 'queueMaxWaitTime')::numeric, (e.definition ->> 'maxQueueWait')::numeric, 0)
                    - extract(epoch from now() - j.created_at)) as remaining
            ) wait on true
            group by e.id, e.last_seen
            """, [.double(workerStaleAfter.seconds)])
        var usage: [String: EnvironmentUsage] = [:]
        for row in rows {
            var entry = EnvironmentUsage()
            entry.lastSeenEpoch = try row.optionalString("last_seen")
            entry.workerSlots = try row.int("worker_slots")
            entry.running = try row.int("running")
            entry.runningFree = try row.int("running_free")
            entry.queued = try row.int("queued")
            entry.queuedFree = try row.int("queued_free")
            entry.runRemainingSeconds = try row.double("run_remaining")
            entry.runRemainingSecondsFree = try row.double("run_remaining_free")
            entry.queueRemainingSeconds = try row.double("queue_remaining")
            entry.queueRemainingSecondsFree = try row.double("queue_remaining_free")
            usage[try row.string("id")] = entry
        }
        // `environment is not null` lets the partial index over admitted jobs serve it (migration 0021).
        let resourceRows = try await client.query(
            """
            select j.environment, r ->> 'id' as id, j.free_tier,
                sum((r ->> 'amount')::float8) as amount, count(*) as jobs
            from jobs j
            cross join lateral jsonb_array_elements(
                case when jsonb_typeof(j.workflow -> 'stages' -> 0 -> 'compute' -> 'resources') = 'array'
                    then j.workflow -> 'stages' -> 0 -> 'compute' -> 'resources' else '[]'::jsonb end) r
            where j.admitted_at is not null and j.finished_at is null and j.environment is not null
                and jsonb_typeof(r -> 'amount') = 'number'
            group by j.environment, r ->> 'id', j.free_tier
            """)
        for row in resourceRows {
            let environment = try row.string("environment")
            let id = try row.string("id")
            let amount = try row.double("amount")
            let jobs = try row.int("jobs")
            var entry = usage[environment] ?? EnvironmentUsage()
            let previous = entry.requested[id] ?? (0, 0)
            entry.requested[id] = (previous.amount + amount, previous.jobs + jobs)
            if try row.bool("free_tier") {
                let previousFree = entry.requestedFree[id] ?? (0, 0)
                entry.requestedFree[id] = (previousFree.amount + amount, previousFree.jobs + jobs)
            }
            usage[environment] = entry
        }
        return usage
    }
}
