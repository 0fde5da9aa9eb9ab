import AMQP
import ArgumentParser
import Domain
import Foundation
import Kubernetes
import Logging
import Persistence
import Scheduler
import ServiceLifecycle
import Worker

/// The scheduler's settings, read from `C2D_SCHEDULER_*` (README lists them). Durations are seconds and may be
/// fractional. The planner's lease grace is `C2D_LEASE_GRACE_SECONDS` (shared with the workers' settings).
struct SchedulerSettings {
    /// `C2D_SCHEDULER_LEASE_SECONDS` (default 10): the leader lease; a standby takes over at most about this long
    /// after the leader died (immediately after a graceful shutdown, which releases it).
    var leaderLease: Duration
    /// `C2D_SCHEDULER_RECONCILE_INTERVAL_SECONDS` (default 2): time between reconcile passes.
    var interval: Duration
    /// `C2D_SCHEDULER_FULL_PASS_SECONDS` (default 60): time between passes that re-read every unfinished job.
    var fullPassInterval: Duration
    /// `C2D_SCHEDULER_BATCH_SIZE` (default 500): rows per incremental read and actions per transaction.
    var batchSize: Int
    /// `C2D_SCHEDULER_MISSING_GRACE_SECONDS` (120), `C2D_SCHEDULER_ORPHAN_GRACE_SECONDS` (60),
    /// `C2D_SCHEDULER_TIMEOUT_GRACE_SECONDS` (30), `C2D_SCHEDULER_MAX_ATTEMPTS` (3),
    /// `C2D_SCHEDULER_ENVIRONMENT_STALE_SECONDS` (600), and `C2D_POISON_ATTEMPTS` (the delivery limit).
    var planner: ReconcilePlanner.Configuration
    /// `C2D_DISPATCH_BATCH_SIZE` (256): most jobs one dispatch pass admits in one environment;
    /// `C2D_DISPATCH_SWEEP_SECONDS` (2): time between sweeps over every environment;
    /// `C2D_SCHEDULER_REPUBLISH_AFTER_SECONDS` (30): an admitted job no worker took this long after its message was
    /// published gets it again; a worker counts as gone after `C2D_LEASE_SECONDS` without refreshing its row.
    var dispatcher: Dispatcher.Configuration
    /// `C2D_SCHEDULER_LOG_LIMIT_BYTES` (default 1 MiB): most bytes of one step's pod log archived by the scheduler.
    var logLimitBytes: Int
    /// `C2D_SCHEDULER_LIST_PAGE_SIZE` (default 500): items per Kubernetes list page.
    var listPageSize: Int

    static func load(
        _ env: [String: String] = ProcessInfo.processInfo.environment, leaseGrace: Duration, workerLease: Duration,
        poisonAttempts: Int
    ) throws -> SchedulerSettings {
        func number(_ key: String, default value: Double, range: ClosedRange<Double>) throws -> Double {
            guard let text = env[key], !text.isEmpty else { return value }
            guard let number = Double(text), range.contains(number) else {
                throw Settings.Invalid(
                    description: "\(key) must be a number in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        func seconds(_ key: String, default value: Double, range: ClosedRange<Double> = 0...86_400) throws
            -> Duration
        {
            .milliseconds(Int64((try number(key, default: value, range: range) * 1000).rounded()))
        }
        var planner = ReconcilePlanner.Configuration(
            leaseGrace: leaseGrace,
            missingObjectGrace: try seconds("C2D_SCHEDULER_MISSING_GRACE_SECONDS", default: 120),
            orphanGrace: try seconds("C2D_SCHEDULER_ORPHAN_GRACE_SECONDS", default: 60),
            timeoutGrace: try seconds("C2D_SCHEDULER_TIMEOUT_GRACE_SECONDS", default: 30),
            maxAttempts: Int(try number("C2D_SCHEDULER_MAX_ATTEMPTS", default: 3, range: 1...100)),
            poisonAttempts: poisonAttempts,
            environmentStaleAfter: try seconds(
                "C2D_SCHEDULER_ENVIRONMENT_STALE_SECONDS", default: 600, range: 1...86_400)
        )
        // The worker's start time-out, so an attempt whose image never pulls ends the same whoever reads it.
        planner.startTimeout = try seconds("C2D_IMAGE_PULL_TIMEOUT_SECONDS", default: 300, range: 1...86_400)
        let dispatcher = Dispatcher.Configuration(
            batchSize: Int(try number("C2D_DISPATCH_BATCH_SIZE", default: 256, range: 1...10_000)),
            sweepInterval: try seconds("C2D_DISPATCH_SWEEP_SECONDS", default: 2, range: 0.01...3600),
            redispatchAfter: try seconds("C2D_SCHEDULER_REPUBLISH_AFTER_SECONDS", default: 30, range: 1...86_400),
            workerStaleAfter: workerLease)
        return SchedulerSettings(
            leaderLease: try seconds("C2D_SCHEDULER_LEASE_SECONDS", default: 10, range: 1...3600),
            interval: try seconds("C2D_SCHEDULER_RECONCILE_INTERVAL_SECONDS", default: 2, range: 0.01...3600),
            fullPassInterval: try seconds("C2D_SCHEDULER_FULL_PASS_SECONDS", default: 60, range: 0...86_400),
            batchSize: Int(try number("C2D_SCHEDULER_BATCH_SIZE", default: 500, range: 1...100_000)),
            planner: planner,
            dispatcher: dispatcher,
            logLimitBytes: Int(
                try number("C2D_SCHEDULER_LOG_LIMIT_BYTES", default: 1_048_576, range: 1...1_073_741_824)),
            listPageSize: Int(try number("C2D_SCHEDULER_LIST_PAGE_SIZE", default: 500, range: 1...100_000)))
    }
}

/// What `c2d scheduler` (and `dev`) run.
///
/// On every scheduler process: the dispatcher (its passes serialize on a lock in Postgres), the event relay and the
/// poison handler (their writes are conditional and their cursors shared, so two at once only race harmlessly), the
/// leader election, and a heartbeat that keeps the configured environments' `last_seen` fresh (duty 12 hides
/// environments nobody refreshes).
/// Only on the leader: the ``Reconciler`` (duties 2–12; duty 3 hands a job whose worker's lease lapsed to another
/// worker, which adopts the attempt if its cluster objects exist).
enum SchedulerServices {
    static func make(
        settings: Settings, postgres: PostgresClient, store: PostgresJobStore, amqp: AMQPClient,
        messaging: MessagingSettings, resultStore: any ResultStore, logger: Logger
    ) throws -> [any Service] {
        let scheduler: SchedulerSettings
        do {
            scheduler = try SchedulerSettings.load(
                leaseGrace: settings.leaseGrace, workerLease: settings.leaseDuration,
                poisonAttempts: messaging.poisonAttempts)
        } catch {
            throw ValidationError("\(error)")
        }
        var services: [any Service] = [
            Dispatcher(configuration: scheduler.dispatcher, store: store, amqp: amqp, logger: logger)
        ]
        services += messaging.schedulerServices(store: store, amqp: amqp, logger: logger)
        services.append(
            EnvironmentHeartbeat(
                store: store, environments: settings.environments,
                interval: scheduler.planner.environmentStaleAfter / 4, logger: logger))

        let leadership = SchedulerLeadership(
            configuration: .init(leaseDuration: scheduler.leaderLease), client: postgres, logger: logger)
        services.append(leadership)
        var cluster: (any ReconcileCluster)?
        if let kubernetes = settings.kubernetes {
            let client: KubernetesClient
            do {
                client = try KubernetesClient(configuration: kubernetes.client, logger: logger)
            } catch {
                throw ValidationError("scheduler: cannot use the Kubernetes configuration: \(error)")
            }
            let kubernetesCluster = KubernetesReconcileCluster(
                configuration: .init(
                    namespace: kubernetes.executor.namespace, pageSize: scheduler.listPageSize,
                    logLimitBytes: scheduler.logLimitBytes),
                client: client, resultStore: resultStore, store: store, logger: logger)
            services.append(KubernetesClientOwner(client: client, cluster: kubernetesCluster))
            cluster = kubernetesCluster
        }
        services.append(
            Reconciler(
                configuration: .init(
                    interval: scheduler.interval, fullPassInterval: scheduler.fullPassInterval,
                    batchSize: scheduler.batchSize, planner: scheduler.planner),
                store: PostgresReconcileStore(client: postgres), leadership: leadership, cluster: cluster,
                removeFiles: Reconciler.removeFiles(from: resultStore), logger: logger))
        return services
    }
}

/// Refreshes `environments.last_seen` for this process's environments, so duty 12 hides only environments that no
/// running process serves any more.
private struct EnvironmentHeartbeat: Service {
    let store: PostgresJobStore
    let environments: [ComputeEnvironment]
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { break }
                do {
                    try await store.upsertEnvironments(environments)
                    // Workers that died without unregistering: long past counting as live, so only the row goes.
                    try await store.removeStaleWorkers(olderThan: .seconds(3600))
                } catch {
                    logger.warning("refreshing environments failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

/// Shuts the scheduler's Kubernetes client down with the service group.
private struct KubernetesClientOwner: Service {
    let client: KubernetesClient
    let cluster: KubernetesReconcileCluster

    func run() async throws {
        await cancelWhenGracefulShutdown { await cluster.run() }
        try await client.shutdown()
    }
}
