import AMQP
import Domain
import Kubernetes
import Logging
import Persistence
import Scheduler
import ServiceLifecycle
import Storage
import Worker

extension C2DServices {
    /// What `c2d scheduler` (and `dev`) run.
    ///
    /// On every scheduler process: the dispatcher (its passes serialize on a lock in Postgres), the event relay and
    /// the poison handler (their writes are conditional and their cursors shared, so two at once only race
    /// harmlessly), the leader election, and a heartbeat that keeps the configured environments' `last_seen` fresh
    /// (duty 12 hides environments nobody refreshes).
    /// Only on the leader: the ``Reconciler`` (duties 2–12; duty 3 hands a job whose worker's lease lapsed to another
    /// worker, which adopts the attempt if its cluster objects exist).
    mutating func addScheduler(
        settings: Settings, postgres: PostgresClient, store: PostgresJobStore, amqp: AMQPClient,
        resultStore: any ResultStore, logger: Logger
    ) throws {
        let scheduler = settings.scheduler
        services += [
            Dispatcher(configuration: scheduler.dispatcher, store: store, amqp: amqp, logger: logger),
            EventRelay(store: store, amqp: amqp, logger: logger),
            PoisonHandler(
                configuration: PoisonHandler.Configuration(minimumAttempts: settings.messaging.poisonAttempts),
                store: store, amqp: amqp, logger: logger),
            EnvironmentHeartbeat(
                store: store, environments: settings.environments,
                interval: scheduler.reconciler.planner.environmentStaleAfter / 4, logger: logger),
        ]
        let leadership = SchedulerLeadership(
            configuration: .init(leaseDuration: scheduler.leaderLease), client: postgres, logger: logger)
        services.append(leadership)
        var cluster: (any ReconcileCluster)?
        if let kubernetes = settings.kubernetes {
            let client: KubernetesClient
            do {
                client = try KubernetesClient(configuration: kubernetes.client, logger: logger)
            } catch {
                throw Launcher.StartupError(description: "scheduler: cannot use the Kubernetes configuration: \(error)")
            }
            let kubernetesCluster = KubernetesReconcileCluster(
                configuration: .init(
                    namespace: kubernetes.executor.namespace, pageSize: scheduler.listPageSize,
                    logLimitBytes: scheduler.logLimitBytes),
                client: client, resultStore: resultStore, store: store, logger: logger)
            own("scheduler's Kubernetes client", logger: logger) { try await client.shutdown() }
            // Added after its client, so the cluster's informer stops before the client closes.
            services.append(ClusterFollower(cluster: kubernetesCluster))
            cluster = kubernetesCluster
        }
        services.append(
            Reconciler(
                configuration: scheduler.reconciler, store: PostgresReconcileStore(client: postgres),
                leadership: leadership, cluster: cluster, removeFiles: Reconciler.removeFiles(from: resultStore),
                logger: logger))
    }
}

/// Runs the scheduler's view of the cluster (its informer) until graceful shutdown.
private struct ClusterFollower: Service {
    let cluster: KubernetesReconcileCluster

    func run() async throws {
        await cancelWhenGracefulShutdown { await cluster.run() }
    }
}
