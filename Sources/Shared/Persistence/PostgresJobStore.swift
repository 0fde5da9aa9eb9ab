import Domain
import Foundation
import Logging

/// The jobs, their events and results in Postgres: the source of truth (docs/architecture.md, "Schema").
/// Every write by a worker is fenced by the attempt it holds, so a stale worker's late write is refused.
package struct PostgresJobStore: Sendable {
    let client: PostgresClient
    /// Wakes the dispatchers after a submit committed; shared by the copies of this store.
    let wakeups: SubmitWakeups
    /// Write concurrent inserts together, plain ones and those under an idempotency key; shared by the copies of
    /// this store.
    let coalescedInserts: CoalescedJobInserts
    let coalescedIdempotentInserts: CoalescedJobInserts

    package init(client: PostgresClient) {
        self.client = client
        self.wakeups = SubmitWakeups(client: client)
        self.coalescedInserts = CoalescedJobInserts(client: client, idempotent: false)
        self.coalescedIdempotentInserts = CoalescedJobInserts(client: client, idempotent: true)
    }

    /// Runs `body` with the notifications of `channels` (see `PostgresClient.withNotifications`): how the
    /// scheduler's services wake on a commit instead of polling.
    package func withNotifications<T: Sendable>(
        channels: [String], _ body: (PostgresNotifications) async throws -> T
    ) async throws -> T {
        try await client.withNotifications(channels: channels, body)
    }

    // MARK: Environments

    /// Records the environments this process serves (insert or refresh), so jobs can reference them. A refreshed
    /// environment is shown again at once, as the reconciler's next pass would show it (duty 12: it is no longer
    /// stale); waiting for that pass left it out of listings after a restart until this process's scheduler held
    /// the lease. Every role refreshes at start, so a gateway alone shows its environments too, as before.
    package func upsertEnvironments(_ environments: [ComputeEnvironment]) async throws {
        for environment in environments {
            let definition = String(decoding: try JSONEncoder().encode(environment), as: UTF8.self)
            try await client.execute(
                """
                insert into environments (id, definition, last_seen) values ($1, $2, now())
                on conflict (id) do update set definition = excluded.definition, last_seen = now(), hidden = false
                """,
                [.text(environment.id), .json(definition)])
        }
    }

    // MARK: Claims and leases

    package enum ClaimResult: Sendable {
        /// This worker now holds the job's new attempt (or adopts its launched one).
        case claimed(Job)
        /// A worker holds a live lease until the given time (possibly this worker).
        case heldByLiveWorker(until: Date, workerID: String)
        /// The dispatcher has not admitted the job (a stale message, e.g. from before an upgrade): it waits in
        /// Postgres, and its message comes when it is admitted.
        case notAdmitted
        /// The job has finished (or was stopped); nothing to do.
        case finished
        case notFound
    }

    /// Claims an admitted job: exactly one of many concurrent claimers wins. A job is claimable while it is admitted,
    /// not finished, and nobody holds a live lease on it. The winner's attempt is the previous one plus one (its time
    /// limit counts from now), unless the current attempt was launched on a cluster (its objects exist): then the
    /// winner adopts that attempt, status and start time kept. Capacity is not checked here: admission already
    /// counted the job against its environment's maxJobs.
    package func claim(jobID: JobID, workerID: String, lease: Duration) async throws -> ClaimResult {
        try await client.withTransaction { tx in
            // A job asked to stop whose worker is gone is finished as stopped rather than run again.
            let stopped = try await tx.query(
                """
                update jobs set status = $2, outcome = 'stopped', failure_reason = 'stopped', finished_at = now(),
                    lease_until = null, worker_id = null
                where id = $1 and finished_at is null and stopreq = 1 and (lease_until is null or lease_until < now())
                returning attempt
                """,
                [.uuid(jobID.uuid), .int(Int64(JobStatus.finished.rawValue))])
            if let row = stopped.first {
                try await tx.execute(
                    "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, 'stopped')",
                    [.uuid(jobID.uuid), .int(Int64(try row.int("attempt"))), .int(Int64(JobStatus.finished.rawValue))])
                return .finished
            }
            let claimed = try await tx.query(
                """
                update jobs set
                    attempt = case when launched_attempt = attempt then attempt else attempt + 1 end,
                    status = case when launched_attempt = attempt then status else $4 end,
                    attempt_started_at = case when launched_attempt = attempt then attempt_started_at else now() end,
                    claim_number = claim_number + 1, worker_id = $2, lease_until = now() + make_interval(secs => $3),
                    started_at = coalesce(started_at, now())
                where id = $1 and finished_at is null and admitted_at is not null
                    and (lease_until is null or lease_until < now())
                returning \(Self.jobColumns), coalesce(launched_attempt = attempt, false) as adopted
                """,
                [
                    .uuid(jobID.uuid), .text(workerID), .double(lease.seconds),
                    .int(Int64(JobStatus.configuringVolumes.rawValue)),
                ])
            if let row = claimed.first {
                let job = try Self.job(from: row)
                let adopted = try row.bool("adopted")
                try await tx.execute(
                    "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, $4)",
                    [
                        .uuid(jobID.uuid), .int(Int64(job.attempt)), .int(Int64(job.status.rawValue)),
                        .text("\(adopted ? "adopted" : "claimed") by \(workerID)"),
                    ])
                return .claimed(job)
            }
            let rows = try await tx.query(
                """
                select finished_at, lease_until, worker_id, admitted_at is not null as admitted,
                    (lease_until is null or lease_until < now()) as free
                from jobs where id = $1
                """, [.uuid(jobID.uuid)])
            guard let row = rows.first else { return .notFound }
            if try row.optionalDate("finished_at") != nil { return .finished }
            if try !row.bool("admitted") { return .notAdmitted }
            return .heldByLiveWorker(
                until: try row.optionalDate("lease_until") ?? Date(),
                workerID: try row.optionalString("worker_id") ?? "")
        }
    }

    /// Records that the attempt's cluster objects exist, so a worker that takes the job over adopts them. Fenced:
    /// only the holder of `claim` may say so.
    package func markLaunched(_ claim: JobClaim) async throws {
        let updated = try await client.execute(
            "update jobs set launched_attempt = $2 where \(Self.holder)", Self.holderParameters(claim))
        guard updated == 1 else { throw FencingError(claim, reason: "the claim is no longer this worker's") }
    }

    /// The condition every write by a job's holder carries, over parameters $1 to $4 of ``holderParameters(_:)``.
    static let holder =
        "id = $1 and attempt = $2 and claim_number = $3 and worker_id is not distinct from $4 and finished_at is null"

    static func holderParameters(_ claim: JobClaim) -> [PostgresValue] {
        [.uuid(claim.jobID.uuid), .int(Int64(claim.attempt)), .int(Int64(claim.number)), .optional(claim.workerID)]
    }

    /// What a lease renewal found.
    package enum LeaseState: Sendable, Hashable {
        /// The claim still holds the job.
        case held
        /// The claim holds the job and a stop was requested: stop it and record the stop.
        case stopRequested
        /// The claim no longer holds the job (finished, or claimed by another worker after the lease lapsed).
        case lost
    }

    /// Extends the leases of many claims one worker holds, in one statement; returns the state of each job whose
    /// claim still holds it (absent: `.lost`).
    package func renewLeases(workerID: String, claims: [JobClaim], lease: Duration) async throws -> [JobID: LeaseState]
    {
        guard !claims.isEmpty else { return [:] }
        let rows = try await client.query(
            """
            update jobs set lease_until = now() + make_interval(secs => $5)
            from unnest($1::uuid[], $2::int[], $3::int[]) as held (id, attempt, claim_number)
            where jobs.id = held.id and jobs.attempt = held.attempt and jobs.claim_number = held.claim_number
                and jobs.worker_id = $4 and jobs.finished_at is null
            returning jobs.id, jobs.stopreq
            """,
            [
                .textArray(claims.map { $0.jobID.uuid.uuidString }), .text(Self.arrayLiteral(claims.map(\.attempt))),
                .text(Self.arrayLiteral(claims.map(\.number))), .text(workerID), .double(lease.seconds),
            ])
        var states: [JobID: LeaseState] = [:]
        for row in rows {
            states[JobID(uuid: try row.uuid("id"))] = try row.int("stopreq") == 0 ? .held : .stopRequested
        }
        return states
    }

    /// Asks for jobs to stop, in any phase (Ocean's `stopreq` 1). A job no worker has claimed yet is finished at
    /// once as stopped; a running one is stopped by its worker, which sees the request when it renews its lease.
    /// Returns the ids of the unfinished jobs the request reached.
    @discardableResult
    package func requestStop(jobIDs: [JobID]) async throws -> [JobID] {
        guard !jobIDs.isEmpty else { return [] }
        let ids = "{" + jobIDs.map { $0.uuid.uuidString }.joined(separator: ",") + "}"
        return try await client.withTransaction { tx in
            let unclaimed = try await tx.query(
                """
                update jobs set stopreq = 1, status = $2, outcome = 'stopped', failure_reason = 'stopped before it ran',
                    finished_at = now(), lease_until = null
                where id = any($1::uuid[]) and finished_at is null and worker_id is null
                    and (lease_until is null or lease_until < now())
                returning id, attempt
                """,
                [.text(ids), .int(Int64(JobStatus.finished.rawValue))])
            for row in unclaimed {
                try await tx.execute(
                    "insert into job_events (job_id, attempt, status, reason) values ($1, $2, $3, 'stopped before it ran')",
                    [
                        .uuid(try row.uuid("id")), .int(Int64(try row.int("attempt"))),
                        .int(Int64(JobStatus.finished.rawValue)),
                    ])
            }
            let running = try await tx.query(
                "update jobs set stopreq = 1 where id = any($1::uuid[]) and finished_at is null returning id",
                [.text(ids)])
            return try (unclaimed + running).map { JobID(uuid: try $0.uuid("id")) }
        }
    }

    /// Gives a job back without finishing it (graceful shutdown): the lease ends now and its dispatch is cleared, so
    /// the dispatcher publishes it again at once (the trigger wakes it) and another worker takes it over.
    package func release(_ claim: JobClaim) async throws {
        try await client.withTransaction { tx in
            let released = try await tx.execute(
                "update jobs set lease_until = now(), worker_id = null, dispatched_at = null where \(Self.holder)",
                Self.holderParameters(claim))
            guard released == 1 else { return }
            try await tx.execute(
                "insert into job_events (job_id, attempt, status, reason) select id, attempt, status, $2 from jobs where id = $1",
                [.uuid(claim.jobID.uuid), .text("released by \(claim.workerID ?? "?") at shutdown")])
        }
    }

    // MARK: Progress, fenced by the holder's claim

    /// Records a status change of the job `claim` holds. Refused (``FencingError``) unless the claim still holds
    /// the unfinished job; an illegal transition is refused by the state machine. One statement: the row is locked,
    /// checked, moved and its event written in a single round trip.
    package func recordStatus(_ claim: JobClaim, status: JobStatus, reason: String? = nil) async throws {
        let predecessors = JobStatus.allCases.filter { $0.canMove(to: status) }.map { String($0.rawValue) }
        let rows = try await client.query(
            """
            with current as (
                select status from jobs where \(Self.holder) for update
            ), moved as (
                update jobs set status = $5 from current
                where jobs.id = $1 and current.status <> $5 and current.status = any($6::text[]::smallint[])
                returning jobs.id
            ), event as (
                insert into job_events (job_id, attempt, status, reason) select id, $2, $5, $7 from moved
            )
            select (select status from current) as status, (select count(*) from moved) as moved
            """,
            Self.holderParameters(claim) + [
                .int(Int64(status.rawValue)), .textArray(predecessors), .optional(reason),
            ])
        guard let current = try rows.first?.optionalInt("status") else {
            throw FencingError(claim, reason: "the claim no longer holds the job, or it has finished")
        }
        let moved = try rows[0].int("moved")
        if current == status.rawValue || moved == 1 { return }
        throw IllegalTransition(from: JobStatus(rawValue: current) ?? .queued, to: status)
    }

    /// Records the terminal status, outcome and results of the job `claim` holds, in one statement; refused
    /// (``FencingError``) unless the claim still holds the unfinished job.
    package func finish(_ claim: JobClaim, result: ExecutionResult) async throws {
        let files = result.results
        let rows = try await client.query(
            """
            with done as (
                update jobs set status = $5, outcome = $6, failure_reason = $7, exit_code = $8, oom_killed = $9,
                    stopreq = coalesce($10, stopreq), finished_at = now(), lease_until = null
                where \(Self.holder)
                returning id
            ), event as (
                insert into job_events (job_id, attempt, status, reason) select id, $2, $5, $11 from done
            ), files as (
                insert into job_results (job_id, position, attempt, name, kind, size, sha256, location)
                select done.id, f.position, $2, f.name, f.kind, f.size, f.sha256, f.location
                from done, unnest($12::text[]::int[], $13::text[], $14::text[], $15::text[]::bigint[], $16::text[],
                    $17::text[]) as f (position, name, kind, size, sha256, location)
            )
            select count(*) as finished from done
            """,
            Self.holderParameters(claim) + [
                .int(Int64(result.status.rawValue)), .text(result.outcome.rawValue), .optional(result.failureReason),
                result.exitCode.map { .int(Int64($0)) } ?? .null, .bool(result.oomKilled),
                result.stopRequest.map { .int(Int64($0)) } ?? .null,
                .text(result.failureReason ?? result.outcome.rawValue),
                .textArray(files.map { String($0.index) }), .textArray(files.map(\.name)),
                .textArray(files.map(\.kind.rawValue)), .textArray(files.map { String($0.size) }),
                .textArray(files.map(\.sha256)), .textArray(files.map(\.location)),
            ])
        guard try rows.first?.int("finished") == 1 else {
            throw FencingError(claim, reason: "the claim no longer holds the job, or it has finished")
        }
    }

    // MARK: Reads

    package func job(_ id: JobID) async throws -> Job? {
        try await client.query("select \(Self.jobColumns) from jobs where id = $1", [.uuid(id.uuid)])
            .first.map(Self.job(from:))
    }

    package func results(of id: JobID) async throws -> [ResultFile] {
        try await client.query(
            """
            select position, name, kind, size, sha256, location from job_results where job_id = $1 order by position
            """,
            [.uuid(id.uuid)]
        ).map { row in
            ResultFile(
                index: try row.int("position"), name: try row.string("name"),
                kind: ResultKind(rawValue: try row.string("kind")) ?? .output, size: Int64(try row.int("size")),
                sha256: try row.string("sha256"), location: try row.string("location"))
        }
    }

    package struct Event: Sendable, Hashable {
        package var id: Int
        package var attempt: Int
        package var status: JobStatus
        package var reason: String?
        package var at: Date
    }

    package func events(of id: JobID) async throws -> [Event] {
        try await client.query(
            "select id, attempt, status, reason, created_at from job_events where job_id = $1 order by id",
            [.uuid(id.uuid)]
        ).map { row in
            Event(
                id: try row.int("id"), attempt: try row.int("attempt"),
                status: JobStatus(rawValue: try row.int("status")) ?? .queued, reason: try row.optionalString("reason"),
                at: try row.date("created_at"))
        }
    }

    // MARK: Row mapping

    static let jobColumns = """
        id, environment, owner, viewers, agreement_id, origin, ocean_signer, status, outcome, failure_reason, exit_code, \
        oom_killed, stopreq, attempt, claim_number, worker_id, lease_until, created_at, started_at, finished_at, \
        priority, workflow::text as workflow
        """

    static func job(from row: PostgresRow) throws -> Job {
        let status = try row.int("status")
        guard let jobStatus = JobStatus(rawValue: status) else {
            throw PostgresError(code: .decoding, message: "unknown job status \(status)")
        }
        return Job(
            id: JobID(uuid: try row.uuid("id")), environment: try row.string("environment"),
            owner: try row.string("owner"), viewers: try row.stringArray("viewers"),
            agreementID: try row.optionalString("agreement_id"),
            origin: try row.string("origin") == "ocean"
                ? .ocean(signer: try row.optionalString("ocean_signer") ?? "") : .native,
            status: jobStatus,
            outcome: try row.optionalString("outcome").flatMap(JobOutcome.init(rawValue:)),
            failureReason: try row.optionalString("failure_reason"), exitCode: try row.optionalInt("exit_code"),
            oomKilled: try row.bool("oom_killed"), stopRequest: try row.int("stopreq"), attempt: try row.int("attempt"),
            claimNumber: try row.int("claim_number"),
            workerID: try row.optionalString("worker_id"), leaseUntil: try row.optionalDate("lease_until"),
            createdAt: try row.date("created_at"), startedAt: try row.optionalDate("started_at"),
            finishedAt: try row.optionalDate("finished_at"), priority: try row.int("priority"),
            workflow: try JSONDecoder().decode(Workflow.self, from: Data(try row.string("workflow").utf8)))
    }

    static func arrayLiteral(_ ids: [Int]) -> String {
        "{" + ids.map(String.init).joined(separator: ",") + "}"
    }
}

/// A write by a claim that no longer holds the job: refused, never applied.
package struct FencingError: Error, CustomStringConvertible, Sendable {
    package var claim: JobClaim
    package var reason: String

    package init(_ claim: JobClaim, reason: String) {
        self.claim = claim
        self.reason = reason
    }

    package var description: String { "write for \(claim) refused: \(reason)" }
}

extension Duration {
    package var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

extension PostgresJobStore {
    /// Deletes an environment and everything in it — its jobs (with their events, results and logs), batches and
    /// worker registrations — in chunks, so a large one does not hold one long transaction. For benchmarks and tests
    /// that make environments of their own; files in the result store are the caller's to remove.
    package func removeEnvironment(_ id: String) async throws {
        while try await client.execute(
            "delete from jobs where id in (select id from jobs where environment = $1 limit 20000)", [.text(id)]) > 0
        {}
        try await client.execute("delete from batches where environment = $1", [.text(id)])
        try await client.execute("delete from workers where $1 = any(environments)", [.text(id)])
        try await client.execute("delete from environments where id = $1", [.text(id)])
    }

    /// Environments the scheduler hid because nothing served them lately (its duty 12); listings leave them out.
    package func hiddenEnvironmentIDs() async throws -> Set<String> {
        Set(try await client.query("select id from environments where hidden").map { try $0.string("id") })
    }
}
