import Foundation

/// A job as the source of truth (Postgres) records it.
package struct Job: Sendable, Hashable {
    package var id: JobID
    package var environment: String
    package var owner: String
    /// Callers besides the owner who may read the job and its results (Ocean-node's `additionalViewers`).
    package var viewers: [String]
    package var agreementID: String?
    /// Which API the job came through; each API sees only its own jobs.
    package var origin: JobOrigin
    package var status: JobStatus
    package var outcome: JobOutcome?
    package var failureReason: String?
    package var exitCode: Int?
    package var oomKilled: Bool
    /// Ocean's `stopreq`: 0 none, 1 stop requested, 2 timed out.
    package var stopRequest: Int
    package var attempt: Int
    /// Claims so far, adoptions included: the holder of claim number n writes under it (``JobClaim``).
    package var claimNumber: Int
    package var workerID: String?
    package var leaseUntil: Date?
    package var createdAt: Date
    package var startedAt: Date?
    package var finishedAt: Date?
    /// 0 to 9, higher first: among waiting jobs of an environment, higher priorities are admitted first.
    package var priority: Int
    package var workflow: Workflow

    package init(
        id: JobID, environment: String, owner: String, viewers: [String] = [], agreementID: String? = nil,
        origin: JobOrigin = .native, status: JobStatus = .queued,
        outcome: JobOutcome? = nil, failureReason: String? = nil, exitCode: Int? = nil, oomKilled: Bool = false,
        stopRequest: Int = 0, attempt: Int = 0, claimNumber: Int = 0, workerID: String? = nil,
        leaseUntil: Date? = nil,
        createdAt: Date = Date(), startedAt: Date? = nil, finishedAt: Date? = nil, priority: Int = 0,
        workflow: Workflow
    ) {
        self.id = id
        self.environment = environment
        self.owner = owner
        self.viewers = viewers
        self.agreementID = agreementID
        self.origin = origin
        self.status = status
        self.outcome = outcome
        self.failureReason = failureReason
        self.exitCode = exitCode
        self.oomKilled = oomKilled
        self.stopRequest = stopRequest
        self.attempt = attempt
        self.claimNumber = claimNumber
        self.workerID = workerID
        self.leaseUntil = leaseUntil
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.priority = priority
        self.workflow = workflow
    }
}

/// Who holds a job, as every write by its holder names it: the attempt, the claim number and the worker. A worker
/// whose lease lapsed and whose job another worker claimed — even adopting the same attempt — holds an outdated
/// claim, and its writes are refused.
package struct JobClaim: Sendable, Hashable, CustomStringConvertible {
    package var jobID: JobID
    package var attempt: Int
    package var number: Int
    /// Nil only for a job no worker ever claimed (tools and tests that finish such a job).
    package var workerID: String?

    package init(jobID: JobID, attempt: Int, number: Int, workerID: String?) {
        self.jobID = jobID
        self.attempt = attempt
        self.number = number
        self.workerID = workerID
    }

    /// The claim a job row shows now.
    package init(_ job: Job) {
        self.init(jobID: job.id, attempt: job.attempt, number: job.claimNumber, workerID: job.workerID)
    }

    package var description: String { "job \(jobID) attempt \(attempt) claim \(number)" }
}

/// The API a job was submitted through.
package enum JobOrigin: Sendable, Hashable {
    /// The native API (`/v1`), by a bearer token's owner (or anyone, with authentication off).
    case native
    /// Ocean's operator-service API, signed by this Provider address (lowercase `0x…`).
    case ocean(signer: String)

    /// The stored name (`jobs.origin`, migration 0015).
    package var name: String {
        switch self {
        case .native: "native"
        case .ocean: "ocean"
        }
    }

    /// The Ocean Provider that signed the start, for Ocean jobs.
    package var oceanSigner: String? {
        if case .ocean(let signer) = self { return signer }
        return nil
    }
}

/// What kind of file a result is; the raw values are Ocean's result `type`s (typo included).
package enum ResultKind: String, Sendable, Codable, CaseIterable {
    case output
    case algorithmLog
    case configurationLog = "configrationLog"
    case publishLog
}

/// One stored output or log of a job. Results are listed outputs first, then logs, then admin logs,
/// and a result's `index` is its position in that order (Ocean's `getResult` index).
package struct ResultFile: Sendable, Hashable, Codable {
    package var index: Int
    package var name: String
    package var kind: ResultKind
    package var size: Int64
    package var sha256: String
    /// Where the ResultStore keeps it; never shown to clients.
    package var location: String

    package init(index: Int, name: String, kind: ResultKind, size: Int64, sha256: String, location: String) {
        self.index = index
        self.name = name
        self.kind = kind
        self.size = size
        self.sha256 = sha256
        self.location = location
    }
}

/// How an execution ended, as the executor observed it.
package struct ExecutionResult: Sendable, Hashable {
    /// The terminal status to record.
    package var status: JobStatus
    package var outcome: JobOutcome
    package var failureReason: String?
    package var exitCode: Int?
    package var oomKilled: Bool
    /// Ocean's `stopreq` to record (2 after a timeout).
    package var stopRequest: Int?
    package var results: [ResultFile]

    package init(
        status: JobStatus, outcome: JobOutcome, failureReason: String? = nil, exitCode: Int? = nil,
        oomKilled: Bool = false, stopRequest: Int? = nil, results: [ResultFile] = []
    ) {
        self.status = status
        self.outcome = outcome
        self.failureReason = failureReason
        self.exitCode = exitCode
        self.oomKilled = oomKilled
        self.stopRequest = stopRequest
        self.results = results
    }
}
