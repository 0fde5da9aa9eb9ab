import Domain
import Foundation

/// A job row as the reconciler reads it (migrations 0001, 0008 and 0010's `jobs`).
package struct ReconcileJob: Sendable, Hashable {
    package var id: JobID
    package var environment: String
    package var status: JobStatus
    /// Claims so far; 0 means no worker ever claimed the job.
    package var attempt: Int
    package var workerID: String?
    package var leaseUntil: Date?
    package var createdAt: Date
    /// The first claim's time (kept across attempts).
    package var startedAt: Date?
    /// The current attempt's start (kept when an attempt is adopted): its run time counts from here.
    package var attemptStartedAt: Date?
    /// Set exactly when the job is terminal.
    package var finishedAt: Date?
    /// Ocean's `stopreq`: 0 none, 1 stop requested, 2 timed out.
    package var stopRequest: Int
    /// The job's run-time limit: the workflow's `maxtime` capped by the environment's `maxJobDuration`. Nil: none.
    package var maxDuration: Duration?
    /// How long the job itself may wait in the queue (ocean-node's `queueMaxWaitTime`); nil: the environment's
    /// `maxQueueWait` alone applies.
    package var maxQueueWait: Duration?
    /// Results and logs were deleted after the storage expiry.
    package var removed: Bool
    /// The dispatcher admitted it: it holds one of its environment's slots until it finishes.
    package var admitted: Bool
    /// Times a worker lost its lease while holding the job.
    package var lapses: Int
    package var changeSeq: Int64

    package init(
        id: JobID, environment: String, status: JobStatus = .queued, attempt: Int = 0, workerID: String? = nil,
        leaseUntil: Date? = nil, createdAt: Date, startedAt: Date? = nil, attemptStartedAt: Date? = nil,
        finishedAt: Date? = nil, stopRequest: Int = 0, maxDuration: Duration? = nil, maxQueueWait: Duration? = nil,
        removed: Bool = false,
        admitted: Bool? = nil, lapses: Int = 0, changeSeq: Int64 = 0
    ) {
        self.id = id
        self.environment = environment
        self.status = status
        self.attempt = attempt
        self.workerID = workerID
        self.leaseUntil = leaseUntil
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.attemptStartedAt = attemptStartedAt ?? startedAt
        self.finishedAt = finishedAt
        self.stopRequest = stopRequest
        self.maxDuration = maxDuration
        self.maxQueueWait = maxQueueWait
        self.removed = removed
        // A job that was ever claimed was admitted first.
        self.admitted = admitted ?? (attempt > 0 || workerID != nil)
        self.lapses = lapses
        self.changeSeq = changeSeq
    }

    package var isTerminal: Bool { finishedAt != nil }

    /// Claimed at least once and not handed back to the queue before running: its objects should exist.
    package var isLaunched: Bool { !isTerminal && attempt > 0 && status != .queued }

    /// Never claimed: waiting in its environment's queue.
    package var isQueued: Bool { !isTerminal && attempt == 0 && workerID == nil }
}

/// An environment as the reconciler needs it (row of `environments` plus its definition's limits).
package struct ReconcileEnvironment: Sendable, Hashable {
    package var id: String
    /// Jobs that may run at once; 0 or less means no limit.
    package var maxJobs: Int
    /// How long a job may wait for its first claim before it expires (status 2). Nil: forever.
    package var maxQueueWait: Duration?
    /// How long results are kept after a job finishes. Nil: forever.
    package var storageExpiry: Duration?
    /// Refreshed by every process that serves the environment.
    package var lastSeen: Date
    package var hidden: Bool

    package init(
        id: String, maxJobs: Int, maxQueueWait: Duration? = nil, storageExpiry: Duration? = nil, lastSeen: Date,
        hidden: Bool = false
    ) {
        self.id = id
        self.maxJobs = maxJobs
        self.maxQueueWait = maxQueueWait
        self.storageExpiry = storageExpiry
        self.lastSeen = lastSeen
        self.hidden = hidden
    }
}
