import AMQP
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
import Worker

/// A part of c2d one process runs; `c2d dev` runs all three.
package enum Role: String, Sendable, Hashable, CaseIterable {
    case gateway, worker, scheduler
}

/// What a process of some roles runs, built by ``build(settings:roles:listener:postgres:logger:)`` from the settings
/// (hummingbird's `buildApplication` is the model). `services` are in start order; a ``ServiceGroup`` stops them in
/// reverse, so the clients that come first (Postgres, HTTP, Kubernetes) outlive the services that use them.
package struct C2DServices {
    package var services: [any Service] = []
    /// The RabbitMQ clients among `services`, to wait for at start: a wrong URL or password fails fast.
    package var amqpClients: [AMQPClient] = []

    /// Adds a client that `shutdown` closes when the group stops, before the services that use it are added.
    mutating func own(_ name: String, logger: Logger, shutdown: @escaping @Sendable () async throws -> Void) {
        services.append(ClientLifetime(name: name, shutdown: shutdown, logger: logger))
    }

    /// The services of `roles`. `postgres` must be reachable (the caller checked it): it is added first, so it is
    /// shut down last, after the worker's hand-back writes. On a throw, what was built so far is shut down.
    package static func build(
        settings: Settings, roles: Set<Role>, listener: (host: String, port: Int)?, postgres: PostgresClient,
        logger: Logger
    ) async throws -> C2DServices {
        var built = C2DServices()
        built.own("postgres", logger: logger) { await postgres.shutdown() }
        do {
            try await built.add(
                settings: settings, roles: roles, listener: listener, postgres: postgres, logger: logger)
            return built
        } catch {
            await built.shutDownClients()
            throw error
        }
    }

    private mutating func add(
        settings: Settings, roles: Set<Role>, listener: (host: String, port: Int)?, postgres: PostgresClient,
        logger: Logger
    ) async throws {
        let store = PostgresJobStore(client: postgres)
        let (resultStore, resultStoreClient) = try settings.resultStore.make()
        if let resultStoreClient { own("result store", logger: logger) { try await resultStoreClient.shutdown() } }
        let topology = AMQPTopology.jobs(
            environments: settings.environments.map(\.id), deliveryLimit: settings.messaging.deliveryLimit)
        if roles.contains(.scheduler) {
            let amqp = amqpClient(
                "scheduler", settings, topology.adding(.events(maxAge: settings.messaging.eventsMaxAge)), logger)
            try addScheduler(
                settings: settings, postgres: postgres, store: store, amqp: amqp, resultStore: resultStore,
                logger: logger)
        }
        if roles.contains(.worker) {
            let amqp = amqpClient("worker", settings, topology, logger)
            try await addWorker(settings: settings, store: store, amqp: amqp, resultStore: resultStore, logger: logger)
        }
        if roles.contains(.gateway), let listener {
            addGateway(settings: settings, listener: listener, store: store, resultStore: resultStore, logger: logger)
        }
    }

    private mutating func amqpClient(
        _ name: String, _ settings: Settings, _ topology: AMQPTopology, _ logger: Logger
    ) -> AMQPClient {
        var logger = logger
        logger[metadataKey: "amqp.client"] = "\(name)"
        let client = AMQPClient(configuration: settings.amqp, topology: topology, logger: logger)
        amqpClients.append(client)
        services.append(client)
        return client
    }

    /// The worker and what it runs jobs with: the Kubernetes executor and its cluster watch, or the local sandbox
    /// (checked here, so a machine that cannot run it fails at start) and its workspace janitor.
    private mutating func addWorker(
        settings: Settings, store: PostgresJobStore, amqp: AMQPClient, resultStore: any ResultStore, logger: Logger
    ) async throws {
        let configuration = WorkerConfiguration(
            environments: settings.environments, slots: settings.workerSlots,
            executorKind: settings.kubernetes == nil ? "local" : "kubernetes",
            leaseDuration: settings.leaseDuration, exitAfterClaimForTesting: settings.exitAfterClaimForTesting)
        let executor: any Executor
        if let kubernetes = settings.kubernetes {
            let client = try KubernetesClient(configuration: kubernetes.client, logger: logger)
            own("worker's Kubernetes client", logger: logger) { try await client.shutdown() }
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
            try await Launcher.failClearly("cannot set up the jobs namespace's network policy") {
                try await kubernetesExecutor.prepare()
            }
            executor = kubernetesExecutor
        } else {
            let local = try await localExecutor(settings: settings, resultStore: resultStore, logger: logger)
            executor = local
            services.append(WorkspaceJanitor(logger: logger) { await local.removeStaleWorkspaces() })
        }
        services.append(
            JobWorker(configuration: configuration, amqp: amqp, store: store, executor: executor, logger: logger))
    }

    private mutating func localExecutor(
        settings: Settings, resultStore: any ResultStore, logger: Logger
    ) async throws -> LocalExecutor {
        var configuration = LocalExecutorConfiguration(
            workRoot: settings.workDirectory, dataDirectory: settings.dataDirectory,
            allowPrivateNetworks: settings.allowPrivateURLs)
        configuration.provisioner.operatorPrivateKey = settings.operatorPrivateKey
        configuration.provisioner.allowedNetworks = settings.allowedPrivateNetworks
        configuration.images = ImageStoreConfiguration(
            imagesDirectory: settings.imagesDirectory, cacheDirectory: settings.imageCacheDirectory)
        configuration.sandbox.isolation = settings.sandboxIsolation
        let httpClient = Provisioner.makeHTTPClient(configuration: configuration.provisioner)
        own("provisioner's HTTP client", logger: logger) { try await httpClient.shutdown() }
        let local = LocalExecutor(
            configuration: configuration, httpClient: httpClient, resultStore: resultStore, logger: logger)
        let report = try await Launcher.failClearly("the local sandbox does not work on this machine") {
            try await local.selfCheck()
        }
        for line in report.lines {
            if line.contains("NOT ENFORCED") {
                logger.warning("sandbox: \(line)")
            } else {
                logger.info("sandbox: \(line)")
            }
        }
        return local
    }

    /// The HTTP APIs. The gateway needs Postgres only: jobs wait there for the dispatcher, so it has no RabbitMQ
    /// connection.
    private mutating func addGateway(
        settings: Settings, listener: (host: String, port: Int), store: PostgresJobStore,
        resultStore: any ReadableResultStore, logger: Logger
    ) {
        var configuration = settings.gateway
        configuration.host = listener.host
        configuration.port = listener.port
        configuration.environments = settings.environments
        switch configuration.oceanAccess {
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
        if let kubernetes = settings.kubernetes {
            // Live logs only: a gateway without cluster credentials still serves everything else.
            do {
                let client = try KubernetesClient(configuration: kubernetes.client, logger: logger)
                own("gateway's Kubernetes client", logger: logger) { try await client.shutdown() }
                configuration.liveLogSource = PodLogSource(client: client, namespace: kubernetes.executor.namespace)
            } catch {
                logger.warning(
                    "no Kubernetes client for live logs; running steps cannot be followed",
                    metadata: ["error": "\(error)"])
            }
        } else {
            configuration.liveLogSource = WorkspaceLogSource(workRoot: settings.workDirectory)
        }
        services += Gateway.buildServices(
            configuration: configuration, store: store, resultStore: resultStore, logger: logger)
    }

    /// Shuts every owned client down, for a start that failed before the group ran.
    func shutDownClients() async {
        for case let client as ClientLifetime in services.reversed() { try? await client.shutdown() }
    }
}

/// Keeps a client (Postgres, an HTTP or Kubernetes client) open while the group runs and closes it when the group
/// stops. Put before the services using the client, it outlives them: the group stops services in reverse order.
struct ClientLifetime: Service {
    let name: String
    let shutdown: @Sendable () async throws -> Void
    let logger: Logger

    func run() async throws {
        // Returns on graceful shutdown, or throws at cancellation; either way the client closes.
        try? await gracefulShutdown()
        do {
            try await shutdown()
        } catch {
            logger.warning("closing \(name) failed", metadata: ["error": "\(error)"])
        }
    }
}
