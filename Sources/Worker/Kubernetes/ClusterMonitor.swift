import Domain
import Foundation
import Kubernetes
import Logging
import ServiceLifecycle

/// How a step's Kubernetes Job ended, as the worker needs it.
package enum StepOutcome: Sendable, Hashable {
    case succeeded
    /// The container exited non-zero or was killed; `message` is its termination message (c2d's own steps write
    /// their reason there).
    case failed(exitCode: Int?, reason: String?, message: String?, oomKilled: Bool)
    /// The Job's `activeDeadlineSeconds` passed.
    case deadlineExceeded
    /// The image could not be pulled within the configured time.
    case imagePullFailed(reason: String)
    /// The Job disappeared before it finished (deleted by someone, or the cluster lost it).
    case vanished
}

/// Follows every c2d step Job and its Pod in one namespace with one list+watch per kind (label selector
/// `app.kubernetes.io/managed-by=c2d`): no per-job polling and no per-job task. Keeps a compact projection per
/// step — a few fields, not whole objects — relists on 410 Gone and resumes from the last resourceVersion
/// otherwise. Executors wait on a step by name.
package actor ClusterMonitor: Service {
    package struct Configuration: Sendable {
        package var namespace: String
        /// How long an image may fail to pull before the step counts as failed with status 11. Default 300 s.
        package var imagePullTimeout: Duration = .seconds(300)
        /// How long a finished Job may wait for its Pod's final state to arrive on the other watch. Default 2 s.
        package var podStateGrace: Duration = .seconds(2)
        /// The watch's server-side timeout, after which it is reopened from the last resourceVersion. Default 300 s.
        package var watchTimeoutSeconds: Int = 300

        package init(namespace: String) {
            self.namespace = namespace
        }
    }

    /// What is known about one step, from its Job and its Pod.
    struct StepState {
        var jobFinished: JobEnd?
        var jobFinishedAt: ContinuousClock.Instant?
        var jobDeleted = false
        var terminated: Terminated?
        var waitingReason: String?
        var waitingSince: ContinuousClock.Instant?
    }

    enum JobEnd: Hashable {
        case complete
        case failed(reason: String?)
    }

    struct Terminated: Hashable {
        var exitCode: Int
        var reason: String?
        var message: String?
    }

    /// Counters for tests and benchmarks.
    package struct Statistics: Sendable, Hashable {
        package var lists = 0
        package var watches = 0
        package var gone = 0
        package var events = 0
        package var trackedSteps = 0
    }

    let client: KubernetesClient
    let configuration: Configuration
    let logger: Logger
    private var steps: [String: StepState] = [:]
    private var waiters: [String: CheckedContinuation<StepOutcome, any Error>] = [:]
    private var statistics = Statistics()
    private var ready: [CheckedContinuation<Void, Never>] = []
    private var listed: Set<String> = []

    package init(client: KubernetesClient, configuration: Configuration, logger: Logger) {
        self.client = client
        self.configuration = configuration
        self.logger = logger
    }

    package var stats: Statistics {
        var stats = statistics
        stats.trackedSteps = steps.count
        return stats
    }

    package func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.follow(Kubernetes.Job.self, as: JobProjection.self) }
            group.addTask { await self.follow(Pod.self, as: PodProjection.self) }
            group.addTask { await self.tick() }
            // Until graceful shutdown; the executors' waits end with their tasks.
            try? await gracefulShutdown()
            group.cancelAll()
        }
        for (_, waiter) in waiters { waiter.resume(throwing: CancellationError()) }
        waiters.removeAll()
    }

    /// Returns once both kinds were listed once, so a waiter sees objects that existed before it asked.
    package func waitUntilReady() async {
        if listed.count == 2 { return }
        await withCheckedContinuation { ready.append($0) }
    }

    /// Waits until the step's Job has ended. Cancelling the caller ends the wait with `CancellationError`.
    package func wait(forStep name: String) async throws -> StepOutcome {
        if let outcome = outcome(of: name) { return outcome }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if let previous = waiters.updateValue(continuation, forKey: name) {
                    previous.resume(throwing: CancellationError())
                }
                if let outcome = outcome(of: name) { resolve(name, outcome) }
            }
        } onCancel: {
            Task { await self.cancelWait(name) }
        }
    }

    /// Drops what is known about a step that no longer matters (its attempt ended).
    package func forget(step name: String) {
        steps[name] = nil
    }

    private func cancelWait(_ name: String) {
        waiters.removeValue(forKey: name)?.resume(throwing: CancellationError())
    }

    private func resolve(_ name: String, _ outcome: StepOutcome) {
        waiters.removeValue(forKey: name)?.resume(returning: outcome)
    }

    /// The step's end if it has one now.
    func outcome(of name: String, now: ContinuousClock.Instant = .now) -> StepOutcome? {
        guard let state = steps[name] else { return nil }
        if let end = state.jobFinished {
            if case .failed(let reason) = end, reason == "DeadlineExceeded" { return .deadlineExceeded }
            // The Pod's final state comes on the other watch; give it a moment to arrive.
            guard state.terminated != nil || now - (state.jobFinishedAt ?? now) >= configuration.podStateGrace else {
                return nil
            }
            switch end {
            case .complete:
                return .succeeded
            case .failed(let reason):
                let terminated = state.terminated
                return .failed(
                    exitCode: terminated?.exitCode, reason: terminated?.reason ?? reason,
                    message: terminated?.message, oomKilled: terminated?.reason == "OOMKilled")
            }
        }
        if let terminated = state.terminated, state.jobDeleted {
            return terminated.exitCode == 0
                ? .succeeded
                : .failed(
                    exitCode: terminated.exitCode, reason: terminated.reason, message: terminated.message,
                    oomKilled: terminated.reason == "OOMKilled")
        }
        if state.jobDeleted { return .vanished }
        if let since = state.waitingSince, let reason = state.waitingReason,
            now - since >= configuration.imagePullTimeout
        {
            return .imagePullFailed(reason: reason)
        }
        return nil
    }

    private func changed(_ name: String) {
        guard waiters[name] != nil, let outcome = outcome(of: name) else { return }
        resolve(name, outcome)
    }

    /// Image-pull timeouts and the Pod-state grace are about time passing, not events: one ticker for all steps.
    private func tick() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            for name in Array(waiters.keys) { changed(name) }
        }
    }

    // MARK: Watching

    private func follow<R: KubernetesResource, P: StepProjection>(_ type: R.Type, as projection: P.Type) async {
        var resourceVersion: String?
        var delay = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                if resourceVersion == nil {
                    let list = try await client.listAll(
                        type, as: projection, namespace: configuration.namespace,
                        options: ListOptions(labelSelector: ClusterNaming.selector))
                    replace(with: list.items)
                    resourceVersion = list.metadata.resourceVersion
                    markListed(R.resource.kind)
                }
                statistics.watches += 1
                let stream = try await client.watch(
                    type, as: projection, namespace: configuration.namespace,
                    options: WatchOptions(
                        labelSelector: ClusterNaming.selector, resourceVersion: resourceVersion,
                        timeoutSeconds: configuration.watchTimeoutSeconds))
                for try await event in stream {
                    statistics.events += 1
                    switch event {
                    case .added(let object), .modified(let object):
                        apply(object, deleted: false)
                        resourceVersion = object.resourceVersion ?? resourceVersion
                    case .deleted(let object):
                        apply(object, deleted: true)
                        resourceVersion = object.resourceVersion ?? resourceVersion
                    case .bookmark(let version):
                        resourceVersion = version
                    }
                }
                delay = .milliseconds(200)
            } catch let error as KubernetesError where error.code == .gone {
                // The history we would resume from is gone: start over from a fresh list.
                statistics.gone += 1
                logger.info("watch expired; relisting", metadata: ["kind": "\(R.resource.kind)"])
                resourceVersion = nil
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                logger.warning(
                    "watch failed; retrying", metadata: ["kind": "\(R.resource.kind)", "error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
    }

    private func markListed(_ kind: String) {
        statistics.lists += 1
        listed.insert(kind)
        if listed.count == 2 {
            for waiter in ready { waiter.resume() }
            ready.removeAll()
        }
    }

    private func replace<P: StepProjection>(with items: [P]) {
        let present = Set(items.compactMap(\.stepName))
        for item in items { apply(item, deleted: false) }
        // Anything of this kind we knew about and the list no longer has was deleted while we were not watching.
        for name in Array(steps.keys) where !present.contains(name) {
            if let gone = P.deletedMarker { apply(name: name, gone) }
        }
    }

    private func apply<P: StepProjection>(_ object: P, deleted: Bool) {
        guard let name = object.stepName else { return }
        var state = steps[name] ?? StepState()
        object.update(&state, deleted: deleted, now: .now)
        steps[name] = state
        changed(name)
    }

    private func apply(name: String, _ mark: (inout StepState) -> Void) {
        guard var state = steps[name] else { return }
        mark(&state)
        steps[name] = state
        changed(name)
    }
}

// MARK: Projections: only the fields the monitor reads are decoded.

protocol StepProjection: Decodable, Sendable {
    var stepName: String? { get }
    var resourceVersion: String? { get }
    func update(_ state: inout ClusterMonitor.StepState, deleted: Bool, now: ContinuousClock.Instant)
    /// How a relist marks a step whose object of this kind vanished meanwhile.
    static var deletedMarker: (@Sendable (inout ClusterMonitor.StepState) -> Void)? { get }
}

struct ProjectedMeta: Decodable, Sendable {
    var name: String?
    var resourceVersion: String?
    var labels: [String: String]?
}

struct JobProjection: StepProjection {
    struct Status: Decodable, Sendable {
        struct Condition: Decodable, Sendable {
            var type: String
            var status: String
            var reason: String?
        }
        var conditions: [Condition]?
    }

    var metadata: ProjectedMeta
    var status: Status?

    var stepName: String? { metadata.labels?[ClusterNaming.stepLabel] == nil ? nil : metadata.name }
    var resourceVersion: String? { metadata.resourceVersion }

    func update(_ state: inout ClusterMonitor.StepState, deleted: Bool, now: ContinuousClock.Instant) {
        let conditions = status?.conditions ?? []
        if state.jobFinished == nil {
            if conditions.contains(where: { $0.type == "Complete" && $0.status == "True" }) {
                state.jobFinished = .complete
                state.jobFinishedAt = now
            } else if let failed = conditions.first(where: { $0.type == "Failed" && $0.status == "True" }) {
                state.jobFinished = .failed(reason: failed.reason)
                state.jobFinishedAt = now
            }
        }
        if deleted { state.jobDeleted = true }
    }

    static var deletedMarker: (@Sendable (inout ClusterMonitor.StepState) -> Void)? { { $0.jobDeleted = true } }
}

struct PodProjection: StepProjection {
    struct Status: Decodable, Sendable {
        struct ContainerStatus: Decodable, Sendable {
            struct State: Decodable, Sendable {
                struct Waiting: Decodable, Sendable {
                    var reason: String?
                    var message: String?
                }
                struct Terminated: Decodable, Sendable {
                    var exitCode: Int
                    var reason: String?
                    var message: String?
                }
                var waiting: Waiting?
                var terminated: Terminated?
            }
            var state: State?
        }
        var phase: String?
        var containerStatuses: [ContainerStatus]?
    }

    var metadata: ProjectedMeta
    var status: Status?

    /// The Job a Pod belongs to: the label the Job controller sets (both spellings, old and new).
    var stepName: String? {
        guard metadata.labels?[ClusterNaming.stepLabel] != nil else { return nil }
        return metadata.labels?["batch.kubernetes.io/job-name"] ?? metadata.labels?["job-name"]
    }

    var resourceVersion: String? { metadata.resourceVersion }

    static let imagePullReasons: Set<String> = [
        "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable",
    ]

    func update(_ state: inout ClusterMonitor.StepState, deleted: Bool, now: ContinuousClock.Instant) {
        guard let container = status?.containerStatuses?.first, let current = container.state else { return }
        if let terminated = current.terminated {
            state.terminated = .init(
                exitCode: terminated.exitCode, reason: terminated.reason, message: terminated.message)
            state.waitingReason = nil
            state.waitingSince = nil
        } else if let reason = current.waiting?.reason, Self.imagePullReasons.contains(reason) {
            state.waitingReason = "\(reason): \(current.waiting?.message ?? "")"
            state.waitingSince = state.waitingSince ?? now
        } else {
            state.waitingReason = nil
            state.waitingSince = nil
        }
    }

    static var deletedMarker: (@Sendable (inout ClusterMonitor.StepState) -> Void)? { nil }
}
