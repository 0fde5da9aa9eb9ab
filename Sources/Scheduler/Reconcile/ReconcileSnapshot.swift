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
    package var jobs: ReconcileJobs
    package var cluster: ClusterSnapshot
    package var environments: [ReconcileEnvironment]

    package init(now: Date, jobs: ReconcileJobs, cluster: ClusterSnapshot, environments: [ReconcileEnvironment]) {
        self.now = now
        self.jobs = jobs
        self.cluster = cluster
        self.environments = environments
    }

    package init(now: Date, jobs: [ReconcileJob], cluster: ClusterSnapshot, environments: [ReconcileEnvironment]) {
        self.init(now: now, jobs: ReconcileJobs(jobs), cluster: cluster, environments: environments)
    }
}

/// The job rows of a pass, by id: the reconciler's table of unfinished jobs, shared without copying (a dictionary is
/// copy-on-write), plus the few rows read for this pass alone (finished jobs that objects name or whose storage
/// expired), which take precedence. A pass over 100,000 jobs then neither copies them into a list nor indexes them.
package struct ReconcileJobs: Sendable, Hashable, Sequence, ExpressibleByArrayLiteral {
    package private(set) var unfinished: [JobID: ReconcileJob]
    package private(set) var others: [JobID: ReconcileJob] = [:]

    package init(unfinished: [JobID: ReconcileJob]) {
        self.unfinished = unfinished
    }

    /// From a list; a later row with the same id replaces an earlier one.
    package init(_ list: some Sequence<ReconcileJob>) {
        var byID: [JobID: ReconcileJob] = [:]
        for job in list { byID[job.id] = job }
        self.unfinished = byID
    }

    package init(arrayLiteral elements: ReconcileJob...) {
        self.init(elements)
    }

    package subscript(id: JobID) -> ReconcileJob? { others[id] ?? unfinished[id] }

    /// Adds a row read for this pass; it replaces the table's row of the same job.
    package mutating func add(_ job: ReconcileJob) { others[job.id] = job }

    package var count: Int { unfinished.count + others.count(where: { unfinished[$0.key] == nil }) }

    package struct Iterator: IteratorProtocol {
        var unfinished: Dictionary<JobID, ReconcileJob>.Values.Iterator
        var others: Dictionary<JobID, ReconcileJob>.Values.Iterator
        let replaced: [JobID: ReconcileJob]

        package mutating func next() -> ReconcileJob? {
            while let job = unfinished.next() {
                if replaced.isEmpty || replaced[job.id] == nil { return job }
            }
            return others.next()
        }
    }

    package func makeIterator() -> Iterator {
        Iterator(unfinished: unfinished.values.makeIterator(), others: others.values.makeIterator(), replaced: others)
    }
}

/// What the cluster holds, as the shared informer folds it: one compact ``ObservedAttempt`` per attempt (labels,
/// phases, container states; never whole objects), tombstones of attempts whose objects are gone included.
package enum ClusterSnapshot: Sendable, Hashable {
    /// No cluster: the local executor runs jobs, so no object duties apply and nothing is missing.
    case notConfigured
    /// Listing failed (API down, timeout, 403): the planner must not infer absence from it.
    case unavailable(reason: String)
    case available(ObservedAttempts)
}

extension Date {
    /// `self` moved by a Duration: the snapshot mixes wall-clock dates (from the database) with configured Durations.
    func plus(_ duration: Duration) -> Date {
        let (seconds, attoseconds) = duration.components
        return addingTimeInterval(TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18)
    }
}
