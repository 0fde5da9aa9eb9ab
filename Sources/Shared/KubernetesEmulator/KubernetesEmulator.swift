import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Settings of a ``KubernetesEmulator``. Every simulated delay (pod runtimes, scheduling, retries, garbage collection,
/// `activeDeadlineSeconds`, `ttlSecondsAfterFinished`) is multiplied by ``timeScale``; bookmark, watch-timeout and
/// compaction times are wall-clock.
package struct KubernetesEmulatorConfiguration: Sendable {
    /// How long watch history is kept; older resourceVersions answer 410 Expired.
    package struct Compaction: Sendable {
        /// Events kept at most. Default 20,000.
        package var maxEvents: Int = 20_000
        /// Age of the oldest kept event. Default 5 minutes (etcd's compaction interval).
        package var window: Duration = .seconds(300)

        package init() {}
    }

    /// Address to bind. Default `127.0.0.1`.
    package var host = "127.0.0.1"
    /// Port to bind; 0 picks a free one. Default 0.
    package var port = 0
    /// Multiplier on every simulated delay; 0.01 runs a `sleep 100` pod in one second. Default 1.
    package var timeScale: Double = 1
    /// Runtime of a container with no `sim.c2d.io/duration` annotation and no `sleep` command. Default 50 ms.
    package var defaultPodDuration: Duration = .milliseconds(50)
    /// From pod creation to PodScheduled with containers creating. Default 5 ms.
    package var schedulingDelay: Duration = .milliseconds(5)
    /// From ContainerCreating to Running. Default 10 ms.
    package var containerStartDelay: Duration = .milliseconds(10)
    /// From a Job write to the Job controller's sync. Default 1 ms.
    package var controllerDelay: Duration = .milliseconds(1)
    /// Pause before a failed Job pod is replaced or a container restarted (the real back-off starts at 10 s). Default 100 ms.
    package var podRetryDelay: Duration = .milliseconds(100)
    /// Time a gracefully deleted running pod takes to stop. Default 20 ms.
    package var podTerminationDelay: Duration = .milliseconds(20)
    /// Latency of the garbage collector acting on owner references. Default 5 ms.
    package var garbageCollectionDelay: Duration = .milliseconds(5)
    /// Interval of BOOKMARK events on watches that allow them. Default 1 s.
    package var bookmarkInterval: Duration = .seconds(1)
    /// Watch duration when the client sends no `timeoutSeconds`. Default 30 minutes.
    package var defaultWatchTimeout: Duration = .seconds(1800)
    /// Watch history retention. Default 20,000 events or 5 minutes.
    package var compaction = Compaction()
    /// Seed for uids, generated names and fault decisions. Default 1.
    package var seed: UInt64 = 1
    /// Faults active from the start. Default none.
    package var faults = KubernetesEmulatorFaults()
    /// Largest accepted request body (the real server's limit). Default 3 MiB.
    package var maxRequestBodyBytes = 3 * 1024 * 1024
    /// The first resourceVersion the emulator hands out. A real API server starts from etcd's revision, far above 1,
    /// and its watch cache begins there, so a watch from an old version such as `1` answers 410. Default 1,000.
    package var initialResourceVersion: UInt64 = 1_000
    /// Runs c2d's own step containers (`c2d pod …`) as real processes instead of simulating them. Default nil.
    package var stepRunner: StepRunner?

    /// How c2d's step containers run for real: which binary, and where their volumes and logs live.
    package struct StepRunner: Sendable {
        /// The `c2d` executable.
        package var executable: String
        /// A directory for volumes (`volumes/<namespace>_<claim>`), logs and termination messages (`pods/<uid>`).
        package var workDirectory: String

        package init(executable: String, workDirectory: String) {
            self.executable = executable
            self.workDirectory = workDirectory
        }
    }

    package init() {}
}

/// Injected faults; set at start, with ``KubernetesEmulator/setFaults(_:)``, or `POST /_emulator/faults`.
package struct KubernetesEmulatorFaults: Sendable, Equatable {
    /// A 429 storm: for `durationSeconds` after the faults are set, `fraction` of requests get 429.
    package struct Throttle: Sendable, Equatable {
        /// Share of requests answered 429 during the storm. Default 1.
        package var fraction: Double = 1
        /// Length of the storm; 0 means no storm. Default 0.
        package var durationSeconds: Double = 0

        package init(fraction: Double = 1, durationSeconds: Double = 0) {
            self.fraction = fraction
            self.durationSeconds = durationSeconds
        }
    }

    /// Added to every API request. Default 0.
    package var latencyMilliseconds: Double = 0
    /// Share of requests answered 500 InternalError. Default 0.
    package var serverErrorFraction: Double = 0
    /// A 429 storm. Default none.
    package var throttle = Throttle()
    /// `Retry-After` seconds sent with storm 429s. Default 1.
    package var retryAfterSeconds = 1
    /// Server-side requests per second (like API Priority and Fairness); excess gets 429. Default unlimited.
    package var qpsLimit: Double?
    /// Burst above `qpsLimit`. Default 10.
    package var qpsBurst = 10
    /// Ends every log follow this many seconds after it opened, while its container may still run, as an API
    /// server does when the kubelet serving the stream restarts. Default never.
    package var endFollowsAfterSeconds: Double?

    package init() {}

    init(json: JSON) {
        latencyMilliseconds = json["latencyMilliseconds"]?.double ?? 0
        serverErrorFraction = json["serverErrorFraction"]?.double ?? 0
        throttle = Throttle(
            fraction: json[["throttle", "fraction"]]?.double ?? 1,
            durationSeconds: json[["throttle", "durationSeconds"]]?.double ?? 0)
        retryAfterSeconds = Int(json["retryAfterSeconds"]?.int ?? 1)
        qpsLimit = json["qpsLimit"]?.double
        qpsBurst = Int(json["qpsBurst"]?.int ?? 10)
        endFollowsAfterSeconds = json["endFollowsAfterSeconds"]?.double
    }

    var json: JSON {
        var value: JSON = [
            "latencyMilliseconds": .double(latencyMilliseconds), "serverErrorFraction": .double(serverErrorFraction),
            "throttle": ["fraction": .double(throttle.fraction), "durationSeconds": .double(throttle.durationSeconds)],
            "retryAfterSeconds": .int(Int64(retryAfterSeconds)), "qpsBurst": .int(Int64(qpsBurst)),
        ]
        if let qpsLimit { value["qpsLimit"] = .double(qpsLimit) }
        if let endFollowsAfterSeconds { value["endFollowsAfterSeconds"] = .double(endFollowsAfterSeconds) }
        return value
    }
}

/// Request counts and object counts, from ``KubernetesEmulator/statistics()`` or `GET /_emulator/stats`.
package struct KubernetesEmulatorStatistics: Sendable {
    /// Requests by `"<verb> <resource>"`, e.g. `"create jobs"`, `"watch pods"`, `"get pods/log"`.
    package var requests: [String: Int]
    package var openWatches: Int
    /// Stored objects by resource, e.g. `"jobs"`.
    package var objects: [String: Int]
    package var resourceVersion: UInt64
    /// Watches and continue tokens from below this resourceVersion answer 410.
    package var compactedResourceVersion: UInt64
    package var retainedEvents: Int

    package func requests(verb: String, resource: String) -> Int { requests["\(verb) \(resource)"] ?? 0 }

    var json: JSON {
        [
            "requests": .object(requests.mapValues { .int(Int64($0)) }), "openWatches": .int(Int64(openWatches)),
            "objects": .object(objects.mapValues { .int(Int64($0)) }),
            "resourceVersion": .string(String(resourceVersion)),
            "compactedResourceVersion": .string(String(compactedResourceVersion)),
            "retainedEvents": .int(Int64(retainedEvents)),
        ]
    }
}

/// A failure of the emulator itself (not of an API call, which is answered with a `Status`).
package struct KubernetesEmulatorError: Error, CustomStringConvertible, Sendable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case startFailed, alreadyStarted, unknownResource, invalidObject
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        package static let startFailed = Code(.startFailed)
        package static let alreadyStarted = Code(.alreadyStarted)
        package static let unknownResource = Code(.unknownResource)
        package static let invalidObject = Code(.invalidObject)

        package var description: String { "\(value)" }
    }

    package var code: Code
    package var reason: String

    package var description: String { "KubernetesEmulatorError.\(code): \(reason)" }
}

/// An emulator of the Kubernetes API subset c2d uses: secrets, persistentvolumeclaims, pods (with logs),
/// batch/v1 jobs and networking.k8s.io/v1 networkpolicies, with resourceVersions, watches with bookmarks and 410,
/// pagination, selectors, a Job controller over simulated pods, cascading deletion, and injected faults.
///
/// Run it as a `Service` in a `ServiceGroup`, or call ``start()`` and ``shutdown()`` from tests.
package final class KubernetesEmulator: Service, Sendable {
    package let configuration: KubernetesEmulatorConfiguration
    let cluster: Cluster
    let logger: Logger
    private let state = LockedState()

    package init(
        configuration: KubernetesEmulatorConfiguration = KubernetesEmulatorConfiguration(),
        logger: Logger = Logger(label: "c2d.kube-sim")
    ) {
        self.configuration = configuration
        self.cluster = Cluster(configuration: configuration)
        self.logger = logger
    }

    /// The bound port once the server runs.
    package var port: Int? { state.withLock { $0.port } }

    /// `http://host:port` once the server runs.
    package var baseURL: String? { port.map { "http://\(configuration.host):\($0)" } }

    /// Serves until graceful shutdown or cancellation.
    package func run() async throws {
        let application = Application(
            responder: EmulatorResponder(cluster: cluster, configuration: configuration),
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            services: [ControllerLoop(cluster: cluster)],
            onServerRunning: { [state] channel in
                state.withLock { $0.port = channel.localAddress?.port }
            },
            logger: logger)
        let cluster = self.cluster
        try await withGracefulShutdownHandler {
            try await application.run()
        } onGracefulShutdown: {
            // Open watches and log follows would otherwise hold the server's drain open.
            Task { await cluster.stop() }
        }
    }

    /// Starts serving in the background and answers the bound port.
    @discardableResult
    package func start() async throws -> Int {
        let group = ServiceGroup(configuration: .init(services: [self], logger: logger))
        let task = Task { try await group.run() }
        let started = state.withLock { state -> Bool in
            guard state.group == nil else { return false }
            state.group = group
            state.task = task
            return true
        }
        guard started else {
            task.cancel()
            throw KubernetesEmulatorError(code: .alreadyStarted, reason: "the emulator is already running")
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let port { return port }
            if state.withLock({ $0.task == nil }) { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        await shutdown()
        throw KubernetesEmulatorError(
            code: .startFailed, reason: "could not listen on \(configuration.host):\(configuration.port)")
    }

    /// Ends streams and stops the server started by ``start()``.
    package func shutdown() async {
        await cluster.stop()
        let running = state.withLock { state -> (ServiceGroup, Task<Void, any Error>)? in
            defer {
                state.group = nil
                state.task = nil
                state.port = nil
            }
            guard let group = state.group, let task = state.task else { return nil }
            return (group, task)
        }
        guard let (group, task) = running else { return }
        await group.triggerGracefulShutdown()
        _ = await task.result
    }

    // MARK: Hooks for tests and benchmarks

    package func setFaults(_ faults: KubernetesEmulatorFaults) async { await cluster.setFaults(faults) }

    package func faults() async -> KubernetesEmulatorFaults { await cluster.faults }

    /// Forgets all watch history now: watches and continue tokens from an older resourceVersion get 410.
    package func compact() async { await cluster.compactAll() }

    /// Ends every open watch with an `ERROR` 410 Expired event after compacting the history, as a real API server
    /// does when its watch cache is reinitialised: clients must relist.
    package func expireWatches() async { await cluster.expireWatches() }

    /// Closes every open watch, as an API server restart does.
    package func dropWatches() async { await cluster.dropWatches() }

    package func statistics() async -> KubernetesEmulatorStatistics { await cluster.statistics() }

    /// Stores objects (JSON documents) directly, without watch events or controller work, as if they predated the
    /// watch history. `resource` is the plural name, e.g. `"jobs"`. Answers the number stored.
    @discardableResult
    package func preload(resource: String, namespace: String = "default", objects: [[UInt8]]) async throws -> Int {
        guard let type = ResourceType.all.first(where: { $0.name == resource }) else {
            throw KubernetesEmulatorError(code: .unknownResource, reason: "no resource \(resource)")
        }
        do {
            return try await cluster.preload(type, namespace: namespace, objects: objects.map { try JSON.parse($0) })
        } catch let status as APIStatus {
            throw KubernetesEmulatorError(code: .invalidObject, reason: status.message)
        } catch {
            throw KubernetesEmulatorError(code: .invalidObject, reason: "\(error)")
        }
    }

    func preload(_ type: ResourceType, namespace: String, values: [JSON]) async throws -> Int {
        do {
            return try await cluster.preload(type, namespace: namespace, objects: values)
        } catch let status as APIStatus {
            throw KubernetesEmulatorError(code: .invalidObject, reason: status.message)
        }
    }

    /// Preloads `count` minimal Jobs named `<prefix>-<n>` with `labels`, for list and watch benchmarks.
    @discardableResult
    package func preloadJobs(
        count: Int, namespace: String = "default", prefix: String = "job", labels: [String: String] = [:]
    ) async throws -> Int {
        let labelJSON = JSON.stringMap(labels)
        var objects: [JSON] = []
        objects.reserveCapacity(count)
        for index in 0..<count {
            let job: JSON = [
                "metadata": ["name": .string("\(prefix)-\(index)"), "labels": labelJSON],
                "spec": [
                    "template": [
                        "spec": [
                            "restartPolicy": "Never",
                            "containers": [["name": "main", "image": "busybox:1.36", "command": ["true"]]],
                        ]
                    ]
                ],
            ]
            objects.append(job)
        }
        return try await preload(.jobs, namespace: namespace, values: objects)
    }

    /// A kubeconfig for kubectl and c2d: the emulator's URL, a dummy token, and `namespace`.
    package static func kubeconfig(server: String, namespace: String = "default") -> String {
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: c2d-emulator
          cluster:
            server: \(server)
        users:
        - name: c2d-emulator
          user:
            token: c2d-emulator-token
        contexts:
        - name: c2d-emulator
          context:
            cluster: c2d-emulator
            user: c2d-emulator
            namespace: \(namespace)
        current-context: c2d-emulator
        preferences: {}

        """
    }
}

/// The one loop that runs every timer (pod steps, job syncs, garbage collection, TTLs) and watch housekeeping.
struct ControllerLoop: Service {
    let cluster: Cluster

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = await cluster.tick()
            try? await Task.sleep(for: max(wait, .milliseconds(1)))
        }
    }
}

/// The emulator handle's mutable state; a lock because ``KubernetesEmulator/port`` is read synchronously.
final class LockedState: @unchecked Sendable {
    struct Values {
        var port: Int?
        var group: ServiceGroup?
        var task: Task<Void, any Error>?
    }

    private let lock = NSLock()
    private var values = Values()

    func withLock<T>(_ body: (inout Values) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&values)
    }
}
