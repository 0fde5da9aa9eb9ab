import Domain
import Foundation
import Kubernetes

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
    /// Duty 4: an attempt's objects whose job is finished, unknown, or on a newer attempt: its Job is deleted, which
    /// takes the rest. Destructive.
    case deleteOrphan(AttemptKey, reason: OrphanReason)
    /// Duty 5: the launched attempt's objects are gone past the grace period and attempts remain: end this attempt
    /// and queue a new delivery (the claim makes attempt + 1). Destructive.
    case retryLost(jobID: JobID, environment: String, attempt: Int)
    /// Duty 5: as ``retryLost(jobID:environment:attempt:)`` with no attempts left: fail the job, reason `lost`.
    /// Destructive.
    case failLost(jobID: JobID, attempt: Int)
    /// Duties 6 and 8: no worker holds the job and its attempt's end is settled in the cluster (`AttemptOutcome`, the
    /// reading the worker uses): archive the step logs publish could not upload, record the verdict with the
    /// attempt's uploads as results (logs only for a stop), then delete the objects.
    case finalizeFromCluster(jobID: JobID, attempt: Int, result: Finalization, observed: ObservedAttempt)
    /// Duties 6 and 8 before the end is settled: stop the attempt (a stop request, a start that will never happen,
    /// an algorithm past its limit); publish then uploads the logs, and a later pass finalizes.
    case intervene(AttemptKey, AttemptOutcome.Intervention)
    /// Duty 7: ran past its limit plus the grace (nothing else ended it): record status 70, outcome `timed_out`,
    /// stopreq 2, with the uploads so far, then delete the objects.
    case timeOut(jobID: JobID, attempt: Int, deleteObjects: Bool)
    /// Duty 8 with no objects to stop (none exist, or the cluster cannot be seen): record status 70, `stopped`.
    case finalizeStop(jobID: JobID, attempt: Int, deleteObjects: Bool)
    /// Duty 9: never claimed within the environment's queue wait: status 2, expired in queue.
    case expireInQueue(jobID: JobID)
    /// Duty 11: storage expiry passed: delete the results and logs (files, then rows) and mark the job removed.
    case removeResults(jobID: JobID)
    /// Duty 12: no process has refreshed the environment within the stale period: hide it from listings.
    case hideEnvironment(id: String)
    /// Duty 12: a hidden environment is served again.
    case showEnvironment(id: String)

    package enum Kind: String, Sendable, Hashable, CaseIterable {
        case handOver, failPoison, deleteOrphan, retryLost, failLost, finalizeFromCluster, intervene, timeOut
        case finalizeStop, expireInQueue, removeResults, hideEnvironment, showEnvironment

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
            case .deleteOrphan, .finalizeFromCluster, .intervene: true
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
        case .intervene: .intervene
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
        case .deleteOrphan(let key, _), .intervene(let key, _): key.jobID
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

/// The terminal record read from an attempt's objects (duties 6 and 8): `AttemptOutcome`'s verdict.
package struct Finalization: Sendable, Hashable {
    package var verdict: AttemptOutcome.Verdict

    package init(_ verdict: AttemptOutcome.Verdict) {
        self.verdict = verdict
    }

    package var status: JobStatus { verdict.status }
    package var outcome: JobOutcome { verdict.outcome }
    package var failureReason: String? { verdict.failureReason }
    package var exitCode: Int? { verdict.exitCode }
    package var oomKilled: Bool { verdict.oomKilled }
    package var stopRequest: Int? { verdict.stopRequest }
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
    /// Planned over the jobs and objects that can have changed only (``ReconcileFocus``), not by walking every job.
    package var focused = false

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
