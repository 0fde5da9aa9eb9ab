import Domain
import Foundation

/// The reads and writes behind Ocean's operator-service API (docs/ocean-operator-service.md, "Routes").
extension PostgresJobStore {
    /// A job as the operator-service's status object needs it. Dates are Postgres's own `extract(epoch …)` text,
    /// as the operator-service sends them (seconds with a fraction, as a string).
    package struct OceanJobRecord: Sendable {
        package var job: Job
        package var removed: Bool
        package var createdEpoch: String
        package var finishedEpoch: String?
        package var results: [ResultFile]

        package init(job: Job, removed: Bool, createdEpoch: String, finishedEpoch: String?, results: [ResultFile]) {
            self.job = job
            self.removed = removed
            self.createdEpoch = createdEpoch
            self.finishedEpoch = finishedEpoch
            self.results = results
        }
    }

    /// The name of the unique index that keeps one active job per agreement (migration 0004).
    package static let activeAgreementIndex = "jobs_active_agreement"

    /// Which jobs an Ocean API call may see: only jobs started through the Ocean API (migration 0015), and in the
    /// open development mode only those the calling signer started itself.
    package struct OceanScope: Sendable, Hashable {
        /// nil: every Ocean job (the signer is an allowed Provider); else only jobs this address signed.
        package var signer: String?

        package init(signer: String?) {
            self.signer = signer
        }

        /// The SQL conditions, with their parameters appended to `parameters`.
        func conditions(_ parameters: inout [PostgresValue]) -> [String] {
            var conditions = ["origin = 'ocean'"]
            if let signer {
                parameters.append(.text(signer))
                conditions.append("ocean_signer = $\(parameters.count)")
            }
            return conditions
        }
    }

    /// Jobs matching every given selector (Ocean ANDs them) within `scope`, oldest first, with their results. A
    /// `jobID` that is not a job id matches nothing.
    package func oceanJobs(
        agreementID: String?, jobID: String?, owner: String?, scope: OceanScope
    ) async throws -> [OceanJobRecord] {
        var parameters: [PostgresValue] = []
        var conditions = scope.conditions(&parameters)
        guard agreementID != nil || jobID != nil || owner != nil else { return [] }
        if let agreementID {
            parameters.append(.text(agreementID))
            conditions.append("agreement_id = $\(parameters.count)")
        }
        if let jobID {
            guard let id = JobID(jobID) else { return [] }
            parameters.append(.uuid(id.uuid))
            conditions.append("id = $\(parameters.count)")
        }
        if let owner {
            parameters.append(.text(owner))
            conditions.append("owner = $\(parameters.count)")
        }
        return try await oceanRecords(where: conditions.joined(separator: " and "), parameters)
    }

    /// Jobs within `scope` not finished yet (Ocean's `/runningjobs`: `dateFinished IS NULL`), of one owner if
    /// given, oldest first.
    package func oceanRunningJobs(owner: String?, scope: OceanScope) async throws -> [OceanJobRecord] {
        var parameters: [PostgresValue] = []
        var conditions = scope.conditions(&parameters) + ["finished_at is null"]
        if let owner {
            parameters.append(.text(owner))
            conditions.append("owner = $\(parameters.count)")
        }
        return try await oceanRecords(where: conditions.joined(separator: " and "), parameters, withResults: false)
    }

    /// One job within `scope`, or nil (also for a job of the native API).
    package func oceanJob(_ id: JobID, scope: OceanScope) async throws -> Job? {
        var parameters: [PostgresValue] = [.uuid(id.uuid)]
        let conditions = ["id = $1"] + scope.conditions(&parameters)
        return try await client.query(
            "select \(Self.jobColumns) from jobs where \(conditions.joined(separator: " and "))", parameters
        ).first.map(Self.job(from:))
    }

    /// Whether an unfinished job already holds this agreement.
    package func oceanAgreementInUse(_ agreementID: String) async throws -> Bool {
        try await !client.query(
            "select 1 from jobs where agreement_id = $1 and finished_at is null limit 1", [.text(agreementID)]
        ).isEmpty
    }

    /// Records `nonce` as the signer's latest if it is greater than the stored one, atomically: of two requests
    /// with the same nonce exactly one succeeds. Compared as numbers (Provider nonces are decimal text, some
    /// with a fraction). False when the nonce is not greater, i.e. a replay.
    package func acceptNonce(signer: String, nonce: String) async throws -> Bool {
        try await !client.query(
            """
            insert into nonces (signer, nonce) values ($1, $2::numeric)
            on conflict (signer) do update set nonce = excluded.nonce, updated_at = now()
                where excluded.nonce > nonces.nonce
            returning nonce
            """,
            [.text(signer), .text(nonce)]
        ).isEmpty
    }

    /// Per environment, fleet-wide: jobs holding one of its slots now (admitted and unfinished: what `maxJobs` counts,
    /// including jobs between admission and a worker's claim), slots of the workers serving it that refreshed
    /// their registration within `workerStaleAfter`, and when the environment was last announced.
    package func oceanEnvironmentState(workerStaleAfter: Duration = .seconds(60)) async throws -> [String: (
        currentJobs: Int, workerSlots: Int, lastSeenEpoch: String
    )] {
        let rows = try await client.query(
            """
            select e.id, extract(epoch from e.last_seen)::text as last_seen,
                (select count(*) from jobs j
                 where j.environment = e.id and j.finished_at is null and j.admitted_at is not null) as current_jobs,
                (select coalesce(sum(w.slots), 0) from workers w
                 where e.id = any(w.environments) and w.last_seen > now() - make_interval(secs => $1)) as worker_slots
            from environments e
            """, [.double(workerStaleAfter.seconds)])
        var state: [String: (currentJobs: Int, workerSlots: Int, lastSeenEpoch: String)] = [:]
        for row in rows {
            state[try row.string("id")] = (
                try row.int("current_jobs"), try row.int("worker_slots"), try row.string("last_seen")
            )
        }
        return state
    }

    private func oceanRecords(where condition: String, _ parameters: [PostgresValue], withResults: Bool = true)
        async throws -> [OceanJobRecord]
    {
        let rows = try await client.query(
            """
            select \(Self.jobColumns), removed, extract(epoch from created_at)::text as created_epoch,
                extract(epoch from finished_at)::text as finished_epoch
            from jobs where \(condition) order by created_at, id
            """,
            parameters)
        var records = try rows.map { row in
            OceanJobRecord(
                job: try Self.job(from: row), removed: try row.bool("removed"),
                createdEpoch: try row.string("created_epoch"), finishedEpoch: try row.optionalString("finished_epoch"),
                results: [])
        }
        guard withResults, !records.isEmpty else { return records }
        let ids = "{" + records.map { $0.job.id.uuid.uuidString }.joined(separator: ",") + "}"
        let resultRows = try await client.query(
            """
            select job_id, position, name, kind, size, sha256, location from job_results
            where job_id = any($1::uuid[]) order by job_id, position
            """,
            [.text(ids)])
        var byJob: [UUID: [ResultFile]] = [:]
        for row in resultRows {
            byJob[try row.uuid("job_id"), default: []].append(
                ResultFile(
                    index: try row.int("position"), name: try row.string("name"),
                    kind: ResultKind(rawValue: try row.string("kind")) ?? .output, size: Int64(try row.int("size")),
                    sha256: try row.string("sha256"), location: try row.string("location")))
        }
        for index in records.indices {
            records[index].results = byJob[records[index].job.id.uuid] ?? []
        }
        return records
    }
}
