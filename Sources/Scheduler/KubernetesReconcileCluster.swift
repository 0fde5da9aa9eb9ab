import Domain
import Foundation
import Kubernetes
import Logging
import Persistence

/// The reconciler's view of a Kubernetes namespace (``ReconcileCluster``): the shared ``AttemptInformer`` (one
/// list+watch of c2d's Jobs and one of its Pods, folded per attempt into compact projections) keeps it current, so
/// no pass lists anything; the informer relists on 410 Gone by itself. It runs from the moment the scheduler starts,
/// on every instance, so a new leader already has the cluster in memory.
///
/// Deleting an attempt deletes its Job with background propagation: the Job owns the io pod and the algorithm pod,
/// which owns the data volume. Log archival reads the container logs of c2d's steps that the publish step could not
/// upload (``AttemptLogs``) into `attempt_uploads`, the same rows the worker uses, so `finish` and `terminate` record
/// the same results whoever finalizes.
package struct KubernetesReconcileCluster: ReconcileCluster {
    package struct Configuration: Sendable {
        /// The namespace the worker's executor uses.
        package var namespace: String
        /// Items per list page. Default 500 (pages bound memory during a relist).
        package var pageSize: Int
        /// The most bytes of one step's log that are archived. Default 1 MiB.
        package var logLimitBytes: Int
        /// Tombstones (attempts whose objects are all gone) are kept this long, so a job whose worker died after
        /// its attempt ended is still finalized from its last states. Default 10 minutes.
        package var tombstoneRetention: Duration

        package init(
            namespace: String, pageSize: Int = 500, logLimitBytes: Int = 1 << 20,
            tombstoneRetention: Duration = .seconds(600)
        ) {
            self.namespace = namespace
            self.pageSize = max(1, pageSize)
            self.logLimitBytes = max(1, logLimitBytes)
            self.tombstoneRetention = tombstoneRetention
        }
    }

    let configuration: Configuration
    let client: KubernetesClient
    let resultStore: any ResultStore
    let store: PostgresJobStore
    let logger: Logger
    package let informer: AttemptInformer

    package init(
        configuration: Configuration, client: KubernetesClient, resultStore: any ResultStore, store: PostgresJobStore,
        logger: Logger
    ) {
        self.configuration = configuration
        self.client = client
        self.resultStore = resultStore
        self.store = store
        self.logger = logger
        self.informer = AttemptInformer(
            client: client,
            configuration: .init(namespace: configuration.namespace, pageSize: configuration.pageSize),
            logger: logger)
        // The reconciler plans over the attempts that changed between its passes; more than this unread and it
        // walks everything instead.
        informer.recordChanges(limit: 65_536)
    }

    /// Follows the cluster until cancelled (run it as long as the scheduler runs).
    package func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.informer.run() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(30))
                    let retention = configuration.tombstoneRetention / .seconds(1)
                    informer.prune(goneBefore: Date().addingTimeInterval(-retention))
                }
            }
        }
    }

    // MARK: Listing

    /// The informer's attempts; throws while its view is not current (before its first list, or while the API
    /// cannot be reached), which puts the pass in fail-safe: nothing is inferred from a stale view.
    package func listObjects() async throws -> ObservedAttempts {
        try checkCurrent()
        return informer.snapshot()
    }

    private func checkCurrent() throws {
        guard informer.isSynced else {
            throw KubernetesError(code: .transport, message: "the cluster has not been listed yet")
        }
        guard informer.isHealthy else {
            throw KubernetesError(code: .transport, message: "the cluster's watches are failing")
        }
    }

    package func listObjects(changedSince start: AttemptChangePosition?) async throws -> ClusterReading {
        try checkCurrent()
        // The objects and their position from one reading: the next pass asks for the changes after exactly these.
        let (objects, end) = informer.snapshotWithPosition()
        return ClusterReading(
            objects: objects, position: end, changed: start.flatMap { informer.changes(after: $0, through: end) })
    }

    // MARK: Deleting

    package func delete(_ attempts: [AttemptKey]) async throws {
        for key in attempts {
            do {
                try await client.delete(
                    Kubernetes.Job.self, name: ClusterNaming.attemptName(jobID: key.jobID, attempt: key.attempt),
                    namespace: configuration.namespace, propagationPolicy: .background)
            } catch let error as KubernetesError where error.code == .notFound {
                continue
            }
        }
    }

    package func intervene(_ attempt: AttemptKey, _ intervention: AttemptOutcome.Intervention) async throws {
        switch intervention {
        case .none:
            return
        case .deleteAttempt:
            try await delete([attempt])
        case .deleteAlgorithmPod:
            do {
                try await client.delete(
                    Pod.self, name: ClusterNaming.algorithmPodName(jobID: attempt.jobID, attempt: attempt.attempt),
                    namespace: configuration.namespace, propagationPolicy: .background)
            } catch let error as KubernetesError where error.code == .notFound {
            }
        }
    }

    // MARK: Archiving logs

    package func archiveLogs(_ attempt: ObservedAttempt) async throws {
        let key = attempt.key
        let uploaded = Set(try await store.uploads(jobID: key.jobID, attempt: key.attempt).map(\.name))
        for missing in AttemptLogs.missing(attempt, uploaded: uploaded) {
            guard
                let bytes = try await AttemptLogs.read(
                    missing, client: client, namespace: configuration.namespace, limit: configuration.logLimitBytes)
            else { continue }
            try await store.archiveStepLog(
                bytes, name: missing.name, kind: missing.kind, jobID: key.jobID, attempt: key.attempt,
                resultStore: resultStore)
        }
    }
}
