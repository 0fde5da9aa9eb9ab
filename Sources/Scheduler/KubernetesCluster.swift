import Domain
import Foundation
import Kubernetes
import Logging
import NIOCore
import Persistence
import Synchronization

/// The reconciler's view of a Kubernetes namespace (``ReconcileCluster``), over the typed client.
///
/// Lists decode compact projections (labels, phase, a few status fields), never whole objects: a full pass lists
/// every c2d Job, Pod and Secret (anchors §9 G5), page by page. With ``Configuration/watch`` one watch per kind keeps
/// that listing current, so incremental passes cost no LIST; full passes and any broken watch list again.
///
/// Deletes use Background propagation, so the attempt's Secret takes its PVC, NetworkPolicy and step Jobs with it,
/// and a Job its pods. Log archival reads each step's newest pod log (capped by ``Configuration/logLimitBytes``),
/// stores it as `<attempt>/podlogs/<step>.log` in the result store and records it in `job_logs`; a step already
/// recorded there is skipped, so archiving twice stores nothing twice.
package struct KubernetesReconcileCluster: ReconcileCluster {
    package struct Configuration: Sendable {
        /// The namespace the worker's executor uses.
        package var namespace: String
        /// Items per list page. Default 500 (the API server's usual maximum is far higher; pages bound memory).
        package var pageSize: Int
        /// The most bytes of one step's log that are archived. Default 1 MiB.
        package var logLimitBytes: Int
        /// Whether to keep the listing current with one watch per kind and answer later passes from it, instead of
        /// listing every pass (an incremental pass must not cost a full LIST of 100,000 objects). Default true.
        package var watch: Bool
        /// With ``watch``: the longest a listing is served from the watches before the next pass lists again, which
        /// bounds how stale a silently stalled watch can make it. Keep it below the planner's missing-object grace.
        /// Default 60 s.
        package var relistInterval: Duration

        package init(
            namespace: String, pageSize: Int = 500, logLimitBytes: Int = 1 << 20, watch: Bool = true,
            relistInterval: Duration = .seconds(60)
        ) {
            self.namespace = namespace
            self.pageSize = max(1, pageSize)
            self.logLimitBytes = max(1, logLimitBytes)
            self.watch = watch
            self.relistInterval = relistInterval
        }
    }

    let configuration: Configuration
    let client: KubernetesClient
    let resultStore: any ResultStore
    let store: PostgresJobStore
    let logger: Logger
    /// The watched listing (with ``Configuration/watch``).
    let cache: ClusterObjectCache?

    package init(
        configuration: Configuration, client: KubernetesClient, resultStore: any ResultStore, store: PostgresJobStore,
        logger: Logger
    ) {
        self.configuration = configuration
        self.client = client
        self.resultStore = resultStore
        self.store = store
        self.logger = logger
        self.cache = configuration.watch ? ClusterObjectCache() : nil
    }

    /// Ends the watches (before the client shuts down).
    package func stop() {
        cache?.stop()
    }

    // MARK: Listing

    /// From the watches when they are healthy and the last list is younger than ``Configuration/relistInterval``;
    /// else lists all three kinds (and, with ``Configuration/watch``, watches on from the lists' resourceVersions).
    package func listObjects() async throws -> [ClusterObject] {
        try await listObjects(full: false)
    }

    /// `full` always lists (and restarts the watches from the new lists).
    package func listObjects(full: Bool) async throws -> [ClusterObject] {
        if !full, let cache, let objects = cache.snapshot(maxAge: configuration.relistInterval) { return objects }
        async let secrets = list(Secret.self, as: ObjectProjection<Empty>.self)
        async let jobs = list(Kubernetes.Job.self, as: ObjectProjection<JobStatusProjection>.self)
        async let pods = list(Pod.self, as: ObjectProjection<PodStatusProjection>.self)
        let (secretList, jobList, podList) = try await (secrets, jobs, pods)
        let listed: [ClusterObject.Kind: [String: ClusterObject]] = [
            .secret: secretList.objects, .job: jobList.objects, .pod: podList.objects,
        ]
        guard let cache else { return listed.values.flatMap(\.values) }
        let generation = cache.replace(listed)
        watch(Secret.self, as: ObjectProjection<Empty>.self, from: secretList.resourceVersion, generation)
        watch(
            Kubernetes.Job.self, as: ObjectProjection<JobStatusProjection>.self,
            from: jobList.resourceVersion, generation)
        watch(
            Pod.self, as: ObjectProjection<PodStatusProjection>.self, from: podList.resourceVersion, generation
        )
        return listed.values.flatMap(\.values)
    }

    /// Every page of one kind, each turned into ``ClusterObject``s before the next is fetched, so only one page of
    /// decoded projections is alive at a time. Returns the objects by name and the list's resourceVersion.
    private func list<R: KubernetesResource, P: ClusterProjection>(_ type: R.Type, as projection: P.Type) async throws
        -> (objects: [String: ClusterObject], resourceVersion: String?)
    {
        var options = ListOptions(labelSelector: ClusterNaming.selector, limit: configuration.pageSize)
        var objects: [String: ClusterObject] = [:]
        var resourceVersion: String?
        repeat {
            let page = try await client.list(type, as: projection, namespace: configuration.namespace, options: options)
            if resourceVersion == nil { resourceVersion = page.metadata.resourceVersion }
            objects.reserveCapacity(objects.count + page.items.count)
            for item in page.items {
                if let object = item.clusterObject() { objects[object.name] = object }
            }
            options.continueToken = page.metadata.continue.flatMap { $0.isEmpty ? nil : $0 }
        } while options.continueToken != nil
        return (objects, resourceVersion)
    }

    /// Follows one kind from `resourceVersion` into the cache; reopens after the server's timeout, and marks the
    /// cache stale (the next pass relists) on any error, 410 Gone included.
    private func watch<R: KubernetesResource, P: ClusterProjection>(
        _ type: R.Type, as projection: P.Type, from resourceVersion: String?, _ generation: Int
    ) {
        guard let cache, let resourceVersion else {
            cache?.invalidate(generation)
            return
        }
        let client = self.client
        let namespace = configuration.namespace
        let logger = self.logger
        let task = Task {
            var version = resourceVersion
            do {
                while !Task.isCancelled {
                    let stream = try await client.watch(
                        type, as: projection, namespace: namespace,
                        options: WatchOptions(labelSelector: ClusterNaming.selector, resourceVersion: version))
                    for try await event in stream {
                        switch event {
                        case .added(let item), .modified(let item):
                            if let object = item.clusterObject() { cache.apply(generation, put: object) }
                            if let next = item.resourceVersion { version = next }
                        case .deleted(let item):
                            if let object = item.clusterObject() { cache.apply(generation, remove: object) }
                            if let next = item.resourceVersion { version = next }
                        case .bookmark(let next):
                            version = next
                        }
                    }
                }
            } catch {
                if !Task.isCancelled {
                    logger.debug("watch ended; the next pass relists", metadata: ["error": "\(error)"])
                }
            }
            cache.invalidate(generation)
        }
        cache.adopt(task, generation)
    }

    // MARK: Deleting

    package func delete(_ objects: [ClusterObject.Reference]) async throws {
        // Owners first: a Secret's deletion cascades to the rest, so later deletes often find nothing (done).
        let ordered = objects.sorted { Self.order($0.kind) < Self.order($1.kind) }
        for object in ordered {
            do {
                switch object.kind {
                case .secret:
                    try await client.delete(
                        Secret.self, name: object.name, namespace: configuration.namespace,
                        propagationPolicy: .background)
                case .job:
                    try await client.delete(
                        Kubernetes.Job.self, name: object.name, namespace: configuration.namespace,
                        propagationPolicy: .background)
                case .pod:
                    try await client.delete(
                        Pod.self, name: object.name, namespace: configuration.namespace, propagationPolicy: nil)
                }
            } catch let error as KubernetesError where error.code == .notFound {
                continue
            }
        }
    }

    private static func order(_ kind: ClusterObject.Kind) -> Int {
        switch kind {
        case .secret: 0
        case .job: 1
        case .pod: 2
        }
    }

    // MARK: Archiving logs

    package func archiveLogs(jobID: JobID, attempt: Int, objects: [ClusterObject.Reference]) async throws {
        let recorded = Set(
            try await store.client.query(
                "select step from job_logs where job_id = $1 and attempt = $2 and name = $3",
                [.uuid(jobID.uuid), .int(Int64(attempt)), .text(Self.logName)]
            ).map { try $0.string("step") })
        // The attempt's pods by label: the references may predate pods, and pod names do not carry the step alone.
        let selector =
            "\(ClusterNaming.selector),\(ClusterNaming.jobIDLabel)=\(jobID),\(ClusterNaming.attemptLabel)=\(attempt)"
        let pods = try await client.listAll(
            Pod.self, as: ObjectProjection<PodStatusProjection>.self, namespace: configuration.namespace,
            options: ListOptions(labelSelector: selector), pageSize: configuration.pageSize)
        var newest: [String: ObjectProjection<PodStatusProjection>] = [:]
        for pod in pods.items {
            guard let step = pod.metadata.labels?.step, !recorded.contains(step) else { continue }
            if let current = newest[step],
                (current.metadata.creationTimestamp ?? .distantPast) >= (pod.metadata.creationTimestamp ?? .distantPast)
            {
                continue
            }
            newest[step] = pod
        }
        for (step, pod) in newest.sorted(by: { $0.key < $1.key }) {
            guard let name = pod.metadata.name else { continue }
            let log: [UInt8]
            do {
                var buffer = try await client.podLogs(
                    name: name, namespace: configuration.namespace,
                    options: PodLogOptions(limitBytes: configuration.logLimitBytes))
                log = buffer.readBytes(length: buffer.readableBytes) ?? []
            } catch let error as KubernetesError where error.code == .notFound || error.code == .badRequest {
                // Gone, or never started a container (400 "waiting to start"): there is no log to keep.
                logger.debug("no log to archive", metadata: ["k8s.pod.name": "\(name)", "error": "\(error)"])
                continue
            }
            let stored = try await storeLog(log, jobID: jobID, attempt: attempt, step: step)
            try await store.client.execute(
                """
                insert into job_logs (job_id, attempt, step, name, size, sha256, location)
                values ($1, $2, $3, $4, $5, $6, $7)
                on conflict (job_id, attempt, step, name) do update
                    set size = excluded.size, sha256 = excluded.sha256, location = excluded.location
                """,
                [
                    .uuid(jobID.uuid), .int(Int64(attempt)), .text(step), .text(Self.logName), .int(stored.size),
                    .text(stored.sha256), .text(stored.location),
                ])
        }
    }

    /// The `job_logs.name` of an archived pod log (the step is its own column).
    static let logName = "pod.log"

    private func storeLog(_ bytes: [UInt8], jobID: JobID, attempt: Int, step: String) async throws -> StoredObject {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-podlog-\(UUID().uuidString)")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try await resultStore.store(jobID: jobID, name: "\(attempt)/podlogs/\(step).log", from: file)
    }
}

// MARK: Projections (only the fields the reconciler reads)

/// Secrets: no status is read.
struct Empty: StatusProjecting {
    static var kind: ClusterObject.Kind { .secret }
    var projected: Projected { Projected(phase: .pending) }
}

/// A projection that knows how to become a ``ClusterObject``.
protocol ClusterProjection: Decodable, Sendable {
    var resourceVersion: String? { get }
    /// Nil for an object without c2d's job labels (not ours to judge).
    func clusterObject() -> ClusterObject?
}

extension ObjectProjection: ClusterProjection where Status: StatusProjecting {
    var resourceVersion: String? { metadata.resourceVersion }

    func clusterObject() -> ClusterObject? {
        let projected = status?.projected
        guard var object = object(kind: Status.kind, phase: Status.kind == .secret ? nil : projected?.phase ?? .pending)
        else { return nil }
        object.reason = projected?.reason
        object.exitCode = projected?.exitCode
        object.oomKilled = projected?.oomKilled ?? false
        return object
    }
}

/// The status part of a projection, per kind.
protocol StatusProjecting: Decodable, Sendable {
    static var kind: ClusterObject.Kind { get }
    var projected: Projected { get }
}

struct ObjectProjection<Status: Decodable & Sendable>: Decodable, Sendable {
    struct Metadata: Decodable, Sendable {
        var name: String?
        var resourceVersion: String?
        var labels: Labels?
        var creationTimestamp: Date?
        var deletionTimestamp: Date?
    }

    var metadata: Metadata
    var status: Status?

    /// Nil for an object without c2d's job labels (not ours to judge).
    func object(kind: ClusterObject.Kind, phase: ClusterObject.Phase?) -> ClusterObject? {
        guard let labels = metadata.labels, let name = metadata.name,
            let jobID = labels.jobID.flatMap(JobID.init), let attempt = labels.attempt.flatMap({ Int($0) })
        else { return nil }
        let step = labels.step.flatMap(ClusterObject.Step.init(rawValue:))
        if kind != .secret && step == nil { return nil }
        return ClusterObject(
            kind: kind, name: name, jobID: jobID, attempt: attempt, step: kind == .secret ? nil : step,
            phase: kind == .secret ? nil : phase, createdAt: metadata.creationTimestamp ?? .distantPast,
            deleting: metadata.deletionTimestamp != nil)
    }
}

/// The three labels the reconciler reads, decoded without building a dictionary of all labels.
struct Labels: Decodable, Sendable {
    var jobID: String?
    var attempt: String?
    var step: String?

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }

        static let jobID = Key(stringValue: ClusterNaming.jobIDLabel)
        static let attempt = Key(stringValue: ClusterNaming.attemptLabel)
        static let step = Key(stringValue: ClusterNaming.stepLabel)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        jobID = try container.decodeIfPresent(String.self, forKey: .jobID)
        attempt = try container.decodeIfPresent(String.self, forKey: .attempt)
        step = try container.decodeIfPresent(String.self, forKey: .step)
    }
}

struct Projected: Sendable {
    var phase: ClusterObject.Phase
    var reason: String?
    var exitCode: Int?
    var oomKilled: Bool = false
}

/// batch/v1 Job status: the terminal conditions and whether a pod runs.
struct JobStatusProjection: StatusProjecting {
    static var kind: ClusterObject.Kind { .job }

    struct Condition: Decodable, Sendable {
        var type: String
        var status: String
        var reason: String?
    }

    var active: Int?
    var ready: Int?
    var conditions: [Condition]?

    var projected: Projected {
        let holds = (conditions ?? []).filter { $0.status == "True" }
        if let failed = holds.first(where: { $0.type == "Failed" }) {
            return Projected(phase: .failed, reason: failed.reason)
        }
        if holds.contains(where: { $0.type == "Complete" }) { return Projected(phase: .succeeded) }
        if let target = holds.first(where: { $0.type == "FailureTarget" }) {
            // Terminating its pods before Failed: not finished yet, but its reason is known.
            return Projected(phase: .running, reason: target.reason)
        }
        return Projected(phase: (active ?? 0) > 0 || (ready ?? 0) > 0 ? .running : .pending)
    }
}

/// core/v1 Pod status: phase, reason, and the containers' terminated states.
struct PodStatusProjection: StatusProjecting {
    static var kind: ClusterObject.Kind { .pod }

    struct ContainerStatus: Decodable, Sendable {
        struct State: Decodable, Sendable {
            struct Terminated: Decodable, Sendable {
                var exitCode: Int
                var reason: String?
            }

            struct Waiting: Decodable, Sendable {
                var reason: String?
            }

            var terminated: Terminated?
            var waiting: Waiting?
        }

        var state: State?
        var lastState: State?
    }

    var phase: String?
    var reason: String?
    var containerStatuses: [ContainerStatus]?

    var projected: Projected {
        let phase: ClusterObject.Phase =
            switch self.phase {
            case "Running": .running
            case "Succeeded": .succeeded
            case "Failed": .failed
            default: .pending
            }
        let statuses = containerStatuses ?? []
        let terminated = statuses.compactMap { $0.state?.terminated ?? $0.lastState?.terminated }
        // The failing container speaks for the pod; one step pod has one container.
        let main = terminated.first { $0.exitCode != 0 } ?? terminated.first
        let oom = terminated.contains { $0.reason == "OOMKilled" }
        let waiting = statuses.compactMap { $0.state?.waiting?.reason }.first
        return Projected(
            phase: phase, reason: reason ?? (oom ? "OOMKilled" : waiting), exitCode: main?.exitCode, oomKilled: oom)
    }
}

/// The listing kept current by the watches: objects per kind by name, the time of the list it started from, and
/// a generation that changes on every relist, so a superseded watch cannot write into the new listing.
final class ClusterObjectCache: Sendable {
    private struct State: Sendable {
        var objects: [ClusterObject.Kind: [String: ClusterObject]] = [:]
        var listedAt: ContinuousClock.Instant?
        var healthy = false
        var generation = 0
        var tasks: [Task<Void, Never>] = []
        var stopped = false
    }

    private let state = Mutex(State())

    /// The objects, if every watch of the current generation is running and the list is younger than `maxAge`.
    func snapshot(maxAge: Duration) -> [ClusterObject]? {
        state.withLock { state in
            guard state.healthy, let listedAt = state.listedAt, ContinuousClock.now - listedAt < maxAge else {
                return nil
            }
            var all: [ClusterObject] = []
            all.reserveCapacity(state.objects.values.reduce(0) { $0 + $1.count })
            for objects in state.objects.values { all.append(contentsOf: objects.values) }
            return all
        }
    }

    /// Starts a new generation from a fresh listing; returns it. The previous generation's watches are cancelled.
    func replace(_ objects: [ClusterObject.Kind: [String: ClusterObject]]) -> Int {
        let (generation, old) = state.withLock { state in
            state.generation += 1
            state.objects = objects
            state.listedAt = .now
            state.healthy = !state.stopped
            defer { state.tasks = [] }
            return (state.generation, state.tasks)
        }
        for task in old { task.cancel() }
        return generation
    }

    func adopt(_ task: Task<Void, Never>, _ generation: Int) {
        let cancel = state.withLock { state in
            guard state.generation == generation, !state.stopped else { return true }
            state.tasks.append(task)
            return false
        }
        if cancel { task.cancel() }
    }

    func apply(_ generation: Int, put object: ClusterObject) {
        state.withLock { state in
            guard state.generation == generation else { return }
            state.objects[object.kind, default: [:]][object.name] = object
        }
    }

    func apply(_ generation: Int, remove object: ClusterObject) {
        state.withLock { state in
            guard state.generation == generation else { return }
            state.objects[object.kind]?[object.name] = nil
        }
    }

    /// A watch of `generation` ended: serve no more from it.
    func invalidate(_ generation: Int) {
        state.withLock { state in
            if state.generation == generation { state.healthy = false }
        }
    }

    func stop() {
        let tasks = state.withLock { state in
            state.stopped = true
            state.healthy = false
            defer { state.tasks = [] }
            return state.tasks
        }
        for task in tasks { task.cancel() }
    }
}
