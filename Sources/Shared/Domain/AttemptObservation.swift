import Foundation

/// What one container of an attempt was last seen doing, as its pod's container status says.
///
/// The states with several fields are boxed (`indirect`): an informer keeps three of these per attempt for every
/// attempt in the cluster, and inline they would take 72 bytes each where a box is only paid for by containers
/// waiting or ended.
package enum ContainerObservation: Sendable, Hashable {
    /// No status yet: the pod does not exist, is not scheduled, or has not reached this container.
    case pending
    /// Waiting to start; `reason` is the kubelet's (`PodInitializing`, `ContainerCreating`, `ErrImagePull`,
    /// `ImagePullBackOff`, `CreateContainerConfigError` …) and `since` when a start problem was first seen.
    indirect case waiting(reason: String, message: String?, since: Date?)
    case running(startedAt: Date?)
    indirect case terminated(ContainerTermination)

    package var termination: ContainerTermination? {
        if case .terminated(let termination) = self { return termination }
        return nil
    }

    package var hasStarted: Bool {
        switch self {
        case .running, .terminated: true
        case .pending, .waiting: false
        }
    }
}

/// A terminated container's state.
package struct ContainerTermination: Sendable, Hashable {
    package var exitCode: Int
    /// `Completed`, `Error`, `OOMKilled`, `ContainerCannotRun`, `StartError`, `DeadlineExceeded` …
    package var reason: String?
    /// The container's termination message (c2d's own steps write their one-line reason there).
    package var message: String?
    package var startedAt: Date?
    package var finishedAt: Date?

    package init(
        exitCode: Int, reason: String? = nil, message: String? = nil, startedAt: Date? = nil, finishedAt: Date? = nil
    ) {
        self.exitCode = exitCode
        self.reason = reason
        self.message = message
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    package var oomKilled: Bool { reason == "OOMKilled" }

    /// How long the container ran, when both times are known.
    package var ran: TimeInterval? {
        guard let startedAt, let finishedAt else { return nil }
        return finishedAt.timeIntervalSince(startedAt)
    }
}

/// One pod of an attempt, as far as the outcome depends on it.
package struct PodObservation: Sendable, Hashable {
    package enum Presence: Sendable, Hashable {
        /// Never seen (not created yet, or created and deleted while nobody watched).
        case notSeen
        case present
        /// Seen, then deleted.
        case gone
    }

    package var presence: Presence
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    package var phase: String?
    /// The pod's own reason: `DeadlineExceeded` (activeDeadlineSeconds), `Evicted` …
    package var reason: String?
    /// A deletion was requested (stop, time-out, clean-up): its containers are being stopped.
    package var deleting: Bool

    package init(presence: Presence = .notSeen, phase: String? = nil, reason: String? = nil, deleting: Bool = false) {
        self.presence = presence
        self.phase = phase
        self.reason = reason
        self.deleting = deleting
    }

    package var isFinished: Bool { phase == "Succeeded" || phase == "Failed" }
    /// Gone, or finished: none of its containers will do anything more.
    package var isOver: Bool { presence == .gone || (presence == .present && isFinished) }
}

/// Everything the cluster shows about one attempt, reduced to what decides its outcome: the three steps'
/// containers and the two pods. Built by the informer (`Kubernetes.AttemptInformer`) for the worker and the
/// scheduler alike.
package struct AttemptObservation: Sendable, Hashable {
    /// The attempt's Job (root object): seen, and whether it still exists.
    package var root: PodObservation.Presence
    /// The root Job's failure reason (`DeadlineExceeded`, `BackoffLimitExceeded`), if it failed.
    package var rootFailure: String?
    package var ioPod: PodObservation
    package var algorithmPod: PodObservation
    package var configure: ContainerObservation
    package var algorithm: ContainerObservation
    package var publish: ContainerObservation
    /// From the pods' specs, for messages: the algorithm's image and memory limit (`512Mi`), c2d's image.
    package var algorithmImage: String?
    package var algorithmMemoryLimit: String?
    package var stepImage: String?

    package init(
        root: PodObservation.Presence = .notSeen, rootFailure: String? = nil, ioPod: PodObservation = .init(),
        algorithmPod: PodObservation = .init(), configure: ContainerObservation = .pending,
        algorithm: ContainerObservation = .pending, publish: ContainerObservation = .pending,
        algorithmImage: String? = nil, algorithmMemoryLimit: String? = nil, stepImage: String? = nil
    ) {
        self.algorithmImage = algorithmImage
        self.algorithmMemoryLimit = algorithmMemoryLimit
        self.stepImage = stepImage
        self.root = root
        self.rootFailure = rootFailure
        self.ioPod = ioPod
        self.algorithmPod = algorithmPod
        self.configure = configure
        self.algorithm = algorithm
        self.publish = publish
    }

    /// Nothing of the attempt exists any more (or ever did).
    package var isGone: Bool {
        root != .present && ioPod.presence != .present && algorithmPod.presence != .present
    }
}
