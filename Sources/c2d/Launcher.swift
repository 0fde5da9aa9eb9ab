import AMQP
import ArgumentParser
import AsyncHTTPClient
import Domain
import Foundation
import Gateway
import Kubernetes
import Logging
import Persistence
import Runtime
import Scheduler
import ServiceLifecycle
import Storage
import UnixSignals
import Worker

/// Wires the parts of c2d a command asks for into one ServiceGroup with graceful shutdown on SIGTERM/SIGINT.
enum Launcher {
    enum Role {
        case gateway, worker, scheduler
    }

    static func settings() throws -> Settings {
        do {
            return try Settings.load()
        } catch {
            throw ValidationError("\(error)")
        }
    }

    static func logger(_ settings: Settings) -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        return Logger(label: "c2d")
    }

    /// Turns a startup failure into one clear line and a non-zero exit instead of a stack of retries.
    static func failClearly<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw ValidationError("\(what): \(error)")
        }
    }

    static func run(roles: Set<Role>, server: ServerOptions?, migrate: Bool) async throws {
        let settings = try settings()
        let logger = logger(settings)
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        _ = try await failClearly("cannot reach Postgres") { try await postgres.query("select 1") }
        if migrate {
            let applied = try await failClearly("migrate") {
                try await MigrationRunner(client: postgres, directory: settings.migrationsDirectory, logger: logger)
                    .apply()
            }
            if !applied.isEmpty { logger.info("migrations applied", metadata: ["versions": "\(applied)"]) }
        }
        let store = PostgresJobStore(client: postgres)
        try await failClearly("cannot record environments") {
            try await store.upsertEnvironments(settings.environments)
        }
        let messaging = try MessagingSettings.load()
        let topology = AMQPTopology.jobs(
            environments: settings.environments.map(\.id), deliveryLimit: messaging.deliveryLimit)
        let (resultStore, resultStoreClient) = try settings.resultStore.make()

        var services: [any Service] = []
        var clients: [AMQPClient] = []
        func amqpClient(_ name: String, adding extra: AMQPTopology = AMQPTopology()) -> AMQPClient {
            var logger = logger
            logger[metadataKey: "amqp.client"] = "\(name)"
            let client = AMQPClient(configuration: settings.amqp, topology: topology.adding(extra), logger: logger)
            clients.append(client)
            services.append(client)
            return client
        }

        var executorConfiguration = LocalExecutorConfiguration(
            workRoot: settings.workDirectory, dataDirectory: settings.dataDirectory,
            allowPrivateNetworks: settings.allowPrivateURLs)
        executorConfiguration.provisioner.operatorPrivateKey = settings.operatorPrivateKey
        executorConfiguration.images = ImageStoreConfiguration(
            imagesDirectory: settings.imagesDirectory, cacheDirectory: settings.imageCacheDirectory)
        executorConfiguration.provisioner.allowedNetworks = settings.allowedPrivateNetworks
        executorConfiguration.sandbox.isolation = settings.sandboxIsolation
        let httpClient = Provisioner.makeHTTPClient(configuration: executorConfiguration.provisioner)
        if roles.contains(.scheduler) {
            let amqp = amqpClient("scheduler", adding: .events(maxAge: messaging.eventsMaxAge))
            services += try SchedulerServices.make(
                settings: settings, postgres: postgres, store: store, amqp: amqp, messaging: messaging,
                resultStore: resultStore, logger: logger)
        }
        var kubernetesClients: [KubernetesClient] = []
        if roles.contains(.worker) {
            let configuration = WorkerConfiguration(
                environments: settings.environments, slots: settings.workerSlots,
                executorKind: settings.kubernetes == nil ? "local" : "kubernetes",
                leaseDuration: settings.leaseDuration, exitAfterClaimForTesting: settings.exitAfterClaimForTesting)
            let executor: any Executor
            if let kubernetes = settings.kubernetes {
                let client = try KubernetesClient(configuration: kubernetes.client, logger: logger)
                kubernetesClients.append(client)
                let informer = AttemptInformer(
                    client: client, configuration: .init(namespace: kubernetes.executor.namespace), logger: logger)
                var monitoring = AttemptMonitor.Configuration()
                monitoring.startTimeout = kubernetes.executor.imagePullTimeout
                monitoring.settleTimeout = kubernetes.executor.settleTimeout
                // Added before the worker: services stop in reverse order, so the watch outlives the jobs.
                let monitor = AttemptMonitor(
                    informer: informer, client: client, namespace: kubernetes.executor.namespace,
                    configuration: monitoring, logger: logger)
                services.append(monitor)
                let kubernetesExecutor = KubernetesExecutor(
                    client: client, monitor: monitor, store: store, resultStore: resultStore,
                    configuration: kubernetes.executor, workerID: configuration.workerID, logger: logger)
                try await failClearly("cannot set up the jobs namespace's network policy") {
                    try await kubernetesExecutor.prepare()
                }
                executor = kubernetesExecutor
            } else {
                let local = LocalExecutor(
                    configuration: executorConfiguration,
                    httpClient: httpClient, resultStore: resultStore, logger: logger)
                let report = try await failClearly("the local sandbox does not work on this machine") {
                    try await local.selfCheck()
                }
                for line in report.lines {
                    if line.contains("NOT ENFORCED") {
                        logger.warning("sandbox: \(line)")
                    } else {
                        logger.info("sandbox: \(line)")
                    }
                }
                executor = local
                services.append(WorkspaceJanitor(logger: logger) { await local.removeStaleWorkspaces() })
            }
            services.append(
                JobWorker(
                    configuration: configuration, amqp: amqpClient("worker"), store: store, executor: executor,
                    logger: logger))
        }
        if roles.contains(.gateway), let server {
            var configuration = GatewayConfiguration(
                host: server.host, port: server.port, environments: settings.environments, limits: settings.limits)
            configuration.authMode = settings.authMode
            configuration.tokenCacheTTL = settings.tokenCacheTTL
            configuration.oceanAccess = settings.oceanAccess
            switch settings.oceanAccess {
            case .disabled:
                logger.info("Ocean operator-service API disabled (set C2D_ALLOWED_PROVIDERS to enable it)")
            case .providers(let providers):
                logger.info("Ocean operator-service API enabled", metadata: ["providers": "\(providers.sorted())"])
            case .openDevelopment:
                logger.warning(
                    """
                    OCEAN API OPEN (C2D_OCEAN_OPEN_DEVELOPMENT=1): any key's signature is accepted and may name any \
                    owner. For development only; never expose this gateway. Set C2D_ALLOWED_PROVIDERS instead.
                    """)
            }
            configuration.operatorAddress = settings.operatorAddress
            configuration.maxBatchJobs = settings.maxBatchJobs
            configuration.maxBatchBodyBytes = settings.maxBatchBodyBytes
            configuration.maxUploadBytes = settings.maxUploadBytes
            configuration.uploadSpoolDirectory = settings.uploadSpoolDirectory
            configuration.presignedURLLifetime = settings.resultStore.presignDuration
            configuration.executor = settings.kubernetes == nil ? .local : .kubernetes
            if let kubernetes = settings.kubernetes {
                // Live logs only: a gateway without cluster credentials still serves everything else.
                do {
                    let client = try KubernetesClient(configuration: kubernetes.client, logger: logger)
                    kubernetesClients.append(client)
                    configuration.liveLogSource = PodLogSource(
                        client: client, namespace: kubernetes.executor.namespace)
                } catch {
                    logger.warning(
                        "no Kubernetes client for live logs; running steps cannot be followed",
                        metadata: ["error": "\(error)"])
                }
            } else {
                configuration.liveLogSource = WorkspaceLogSource(workRoot: settings.workDirectory)
            }
            configuration.eventStreams = settings.eventStreams
            configuration.metricsListener = settings.metricsListener
            configuration.metricsToken = settings.metricsToken
            // The gateway needs Postgres only: jobs wait there for the dispatcher, so it has no RabbitMQ connection.
            services += Gateway.buildServices(
                configuration: configuration, store: store, resultStore: resultStore, logger: logger
            ).map { $0 as any Service }
        }

        // Start the AMQP clients first and fail fast, with one message, on a wrong URL or credentials.
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                do {
                    for client in clients {
                        try await client.waitUntilConnected(timeout: settings.amqp.connectTimeout * 3)
                    }
                } catch {
                    await group.triggerGracefulShutdown()
                    tasks.cancelAll()
                    throw ValidationError("cannot connect to RabbitMQ: \(error)")
                }
                logger.info("c2d running", metadata: ["roles": "\(roles.map { "\($0)" }.sorted())"])
                try await tasks.next()
            }
        } catch {
            // An HTTPClient dropped without shutdown traps in debug builds, hiding the real error.
            for client in kubernetesClients { try? await client.shutdown() }
            try? await httpClient.shutdown()
            try? await resultStoreClient?.shutdown()
            await postgres.shutdown()
            throw error
        }
        for client in kubernetesClients { try? await client.shutdown() }
        try await httpClient.shutdown()
        try? await resultStoreClient?.shutdown()
        await postgres.shutdown()
    }
}
