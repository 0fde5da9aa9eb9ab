import Domain
import Foundation

/// One thing a reconcile pass decided to do. Each action carries what applying it needs and is idempotent: every
/// Postgres-side action is a conditional write on (job id, attempt) that does nothing if the row moved on.
package enum ReconcileAction: Sendable, Hashable {
    /// Duty 3: the worker's lease expired past the grace period. Clear the worker and its dispatch, so the dispatcher
    /// publishes the job again; the next worker adopts the objects of `attempt` (deterministic names) instead of
    /// starting over.
    case handOver(jobID: JobID, environment: String, attempt: Int, workerID: String)
    /// Duty 3: as ``handOver(jobID:environment:attempt:workerID:)``, but workers were lost holding the job `lapses`
    /// times, the poison threshold: fail it with reason `poison` instead of handing it to the next victim.
    case failPoison(jobID: JobID, attempt: Int, lapses: Int)
    /// Duty 4: an object whose job is finished, unknown, or on a newer attempt. Destructive.
    case deleteOrphan(ClusterObject.Reference, reason: OrphanReason)
    /// Duty 5: the launched attempt's objects are gone past the grace period and attempts remain: end this attempt
    /// and queue a new delivery (the claim makes attempt + 1). Destructive.
    case retryLost(jobID: JobID, environment: String, attempt: Int)
    /// Duty 5: as ``retryLost(jobID:environment:attempt:)`` with no attempts left: fail the job, reason `lost`.
    /// Destructive.
    case failLost(jobID: JobID, attempt: Int)
    /// Duty 6: the attempt's objects finished but the row is not terminal and no worker holds it: archive the logs
    /// first, then record the result read from the container states, then delete the objects.
    case finalizeFromCluster(jobID: JobID, attempt: Int, result: Finalization, objects: [ClusterObject.Reference])
    /// Duty 7: ran past its limit: delete the objects (logs archived first), record status 70, outcome
    /// `timed_out`, stopreq 2.
    case timeOut(jobID: JobID, attempt: Int, objects: [ClusterObject.Reference])
    /// Duty 8: a stop was requested and no worker holds the job: delete the objects in whatever step they are
    /// (logs archived first) and record status 70, outcome `stopped`.
    case finalizeStop(jobID: JobID, attempt: Int, objects: [ClusterObject.Reference])
    /// Duty 9: never claimed within the environment's queue wait: status 2, expired in queue.
    case expireInQueue(jobID: JobID)
    /// Duty 11: storage expiry passed: delete the results and logs (files, then rows) and mark the job removed.
    case removeResults(jobID: JobID)
    /// Duty 12: no process has refreshed the environment within the stale period: hide it from listings.
    case hideEnvironment(id: String)
    /// Duty 12: a hidden environment is served again.
    case showEnvironment(id: String)

    package enum Kind: String, Sendable, Hashable, CaseIterable {
        case handOver, failPoison, deleteOrphan, retryLost, failLost, finalizeFromCluster, timeOut, finalizeStop
        case expireInQueue, removeResults, hideEnvironment, showEnvironment

        /// Kinds that act on the absence of something; the fail-safe withholds them.
        package var isDestructive: Bool {
            switch self {
            case .deleteOrphan, .retryLost, .failLost: true
            default: false
            }
        }

        /// Kinds applied by Kubernetes-side code (they need the cluster or the result store before Postgres).
        package var needsCluster: Bool {
            switch self {
            case .deleteOrphan, .finalizeFromCluster: true
            default: false
            }
        }
    }

    package var kind: Kind {
        switch self {
        case .handOver: .handOver
        case .failPoison: .failPoison
        case .deleteOrphan: .deleteOrphan
        case .retryLost: .retryLost
        case .failLost: .failLost
        case .finalizeFromCluster: .finalizeFromCluster
        case .timeOut: .timeOut
        case .finalizeStop: .finalizeStop
        case .expireInQueue: .expireInQueue
        case .removeResults: .removeResults
        case .hideEnvironment: .hideEnvironment
        case .showEnvironment: .showEnvironment
        }
    }

    /// The job the action is about, if any.
    package var jobID: JobID? {
        switch self {
        case .handOver(let id, _, _, _), .failPoison(let id, _, _), .retryLost(let id, _, _), .failLost(let id, _),
            .finalizeFromCluster(let id, _, _, _), .timeOut(let id, _, _), .finalizeStop(let id, _, _),
            .expireInQueue(let id), .removeResults(let id):
            id
        case .deleteOrphan(let object, _): object.jobID
        case .hideEnvironment, .showEnvironment: nil
        }
    }
}

/// Why an object is an orphan.
package enum OrphanReason: String, Sendable, Hashable {
    /// Its job has finished (and archived its logs when it did).
    case jobTerminal
    /// No job row names it.
    case unknownJob
    /// Its job has moved on to a later attempt.
    case attemptSuperseded
}

/// The terminal record read from an attempt's finished objects (duty 6).
package struct Finalization: Sendable, Hashable {
    package var status: JobStatus
    package var outcome: JobOutcome
    package var failureReason: String?
    package var exitCode: Int?
    package var oomKilled: Bool
    /// Ocean's stopreq to record (2 when the cluster's deadline ended the algorithm).
    package var stopRequest: Int?
    /// Always true: the logs are archived before the objects holding them are deleted (DESIGN §2.5).
    package var archiveLogsFirst: Bool

    package init(
        status: JobStatus, outcome: JobOutcome, failureReason: String? = nil, exitCode: Int? = nil,
        oomKilled: Bool = false, stopRequest: Int? = nil
    ) {
        self.status = status
        self.outcome = outcome
        self.failureReason = failureReason
        self.exitCode = exitCode
        self.oomKilled = oomKilled
        self.stopRequest = stopRequest
        self.archiveLogsFirst = true
    }
}

/// Why the plan holds back destructive actions.
package enum FailSafeReason: Sendable, Hashable, CustomStringConvertible {
    /// The cluster could not be listed.
    case clusterUnavailable(String)
    /// The cluster shows objects for at most a small share of the launched jobs: more likely the control plane or
    /// our view of it is broken than that the jobs vanished (Armada #315).
    case clusterNearlyEmpty(expected: Int, present: Int)

    package var description: String {
        switch self {
        case .clusterUnavailable(let reason): "cluster unavailable: \(reason)"
        case .clusterNearlyEmpty(let expected, let present):
            "cluster shows objects for \(present) of \(expected) launched jobs"
        }
    }
}

/// Duty 10, as reported: the jobs of one environment by where they are on the way to running.
package struct EnvironmentCapacity: Sendable, Hashable {
    package var environment: String
    /// Nil: no limit.
    package var maxJobs: Int?
    /// Jobs claimed and not finished (after this plan's finalizations).
    package var running: Int
    /// Jobs the dispatcher admitted that no worker holds yet, oldest first.
    package var admitted: [JobID]
    /// Jobs waiting for admission, oldest first.
    package var waiting: [JobID]

    package init(environment: String, maxJobs: Int?, running: Int, admitted: [JobID], waiting: [JobID]) {
        self.environment = environment
        self.maxJobs = maxJobs
        self.running = running
        self.admitted = admitted
        self.waiting = waiting
    }
}

/// What a reconcile pass decided, plus the planner state to hand to the next pass.
package struct ReconcilePlan: Sendable, Hashable {
    package var actions: [ReconcileAction]
    /// Set when destructive actions were withheld; Postgres-only duties still ran.
    package var failSafe: FailSafeReason?
    /// Per environment with queued or running jobs, by id.
    package var capacity: [String: EnvironmentCapacity]
    package var nextState: ReconcilePlanner.State

    /// How many actions of each kind (kinds with none are absent).
    package var counts: [ReconcileAction.Kind: Int] {
        actions.reduce(into: [:]) { $0[$1.kind, default: 0] += 1 }
    }

    package func count(_ kind: ReconcileAction.Kind) -> Int {
        actions.reduce(0) { $0 + ($1.kind == kind ? 1 : 0) }
    }

    package func actions(_ kind: ReconcileAction.Kind) -> [ReconcileAction] {
        actions.filter { $0.kind == kind }
    }
}
