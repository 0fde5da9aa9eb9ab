import Domain
import Foundation
import Kubernetes
import Persistence

/// Everything one reconcile pass decides on: job rows, the cluster's objects, the environments, and the time.
///
/// The reader must include every unfinished job, every finished job still holding results (for storage expiry),
/// and the row of every job that a cluster object names, so an object whose job is missing from `jobs` really has
/// no job. List the cluster *before* reading the jobs: an object then never looks newer than its job's claim.
package struct ReconcileSnapshot: Sendable, Hashable {
    /// The database's time when the jobs were read; the planner never reads a clock.
    package var now: Date
    package var jobs: [ReconcileJob]
    package var cluster: ClusterSnapshot
    package var environments: [ReconcileEnvironment]

    package init(now: Date, jobs: [ReconcileJob], cluster: ClusterSnapshot, environments: [ReconcileEnvironment]) {
        self.now = now
        self.jobs = jobs
        self.cluster = cluster
        self.environments = environments
    }
}

/// What the cluster holds, as the shared informer folds it: one compact ``ObservedAttempt`` per attempt (labels,
/// phases, container states; never whole objects), tombstones of attempts whose objects are gone included.
package enum ClusterSnapshot: Sendable, Hashable {
    /// No cluster: the local executor runs jobs, so no object duties apply and nothing is missing.
    case notConfigured
    /// Listing failed (API down, timeout, 403): the planner must not infer absence from it.
    case unavailable(reason: String)
    case available([ObservedAttempt])
}

extension Date {
    /// `self` moved by a Duration: the snapshot mixes wall-clock dates (from the database) with configured Durations.
    func plus(_ duration: Duration) -> Date {
        let (seconds, attoseconds) = duration.components
        return addingTimeInterval(TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18)
    }
}
