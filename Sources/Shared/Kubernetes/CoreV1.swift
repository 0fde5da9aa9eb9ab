import Foundation

/// core/v1 Secret. `data` values are raw bytes; they travel base64-encoded, which `JSONEncoder` does for `Data`.
public struct Secret: KubernetesResource, Hashable {
    public static let resource = ResourceInfo(group: "", version: "v1", kind: "Secret", plural: "secrets")

    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    /// `Opaque` when nil.
    public var type: String?
    public var data: [String: Data]?
    /// Write-only convenience: merged into `data` by the server, never returned.
    public var stringData: [String: String]?
    public var immutable: Bool?

    public init(
        metadata: ObjectMeta, type: String? = nil, data: [String: Data]? = nil, stringData: [String: String]? = nil,
        immutable: Bool? = nil
    ) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.type = type
        self.data = data
        self.stringData = stringData
        self.immutable = immutable
    }
}

/// core/v1 PersistentVolumeClaim.
public struct PersistentVolumeClaim: KubernetesResource, Hashable {
    public static let resource = ResourceInfo(
        group: "", version: "v1", kind: "PersistentVolumeClaim", plural: "persistentvolumeclaims")

    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: Spec?
    public var status: Status?

    public init(metadata: ObjectMeta, spec: Spec) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
    }

    public struct Spec: Codable, Sendable, Hashable {
        /// E.g. `ReadWriteOnce`, `ReadWriteMany`.
        public var accessModes: [String]?
        public var resources: VolumeResourceRequirements?
        public var storageClassName: String?
        /// `Filesystem` (default) or `Block`.
        public var volumeMode: String?

        public init(
            accessModes: [String]? = nil, resources: VolumeResourceRequirements? = nil,
            storageClassName: String? = nil, volumeMode: String? = nil
        ) {
            self.accessModes = accessModes
            self.resources = resources
            self.storageClassName = storageClassName
            self.volumeMode = volumeMode
        }
    }

    public struct Status: Codable, Sendable, Hashable {
        /// `Pending`, `Bound` or `Lost`.
        public var phase: String?
        public var accessModes: [String]?
        public var capacity: [String: String]?

        public init(phase: String? = nil, accessModes: [String]? = nil, capacity: [String: String]? = nil) {
            self.phase = phase
            self.accessModes = accessModes
            self.capacity = capacity
        }
    }
}

/// Storage requests of a claim, as quantities (`"1Gi"`).
public struct VolumeResourceRequirements: Codable, Sendable, Hashable {
    public var requests: [String: String]?
    public var limits: [String: String]?

    public init(requests: [String: String]? = nil, limits: [String: String]? = nil) {
        self.requests = requests
        self.limits = limits
    }
}

/// core/v1 Pod. c2d never creates bare pods; it reads those its Jobs create.
public struct Pod: KubernetesResource, Hashable {
    public static let resource = ResourceInfo(group: "", version: "v1", kind: "Pod", plural: "pods")

    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PodSpec?
    public var status: PodStatus?

    public init(metadata: ObjectMeta, spec: PodSpec? = nil, status: PodStatus? = nil) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

public struct PodTemplateSpec: Codable, Sendable, Hashable {
    public var metadata: ObjectMeta?
    public var spec: PodSpec?

    public init(metadata: ObjectMeta? = nil, spec: PodSpec? = nil) {
        self.metadata = metadata
        self.spec = spec
    }
}

public struct PodSpec: Codable, Sendable, Hashable {
    public var containers: [Container]
    public var initContainers: [Container]?
    public var volumes: [Volume]?
    /// `Never` or `OnFailure` for Jobs.
    public var restartPolicy: String?
    public var activeDeadlineSeconds: Int?
    public var terminationGracePeriodSeconds: Int?
    public var automountServiceAccountToken: Bool?
    public var serviceAccountName: String?
    public var securityContext: PodSecurityContext?
    public var enableServiceLinks: Bool?
    public var nodeSelector: [String: String]?
    public var nodeName: String?
    public var affinity: Affinity?
    /// Secrets of type `kubernetes.io/dockerconfigjson` the kubelet pulls the pod's images with.
    public var imagePullSecrets: [LocalObjectReference]?

    public init(
        containers: [Container], initContainers: [Container]? = nil, volumes: [Volume]? = nil,
        restartPolicy: String? = nil, activeDeadlineSeconds: Int? = nil, terminationGracePeriodSeconds: Int? = nil,
        automountServiceAccountToken: Bool? = nil, serviceAccountName: String? = nil,
        securityContext: PodSecurityContext? = nil, enableServiceLinks: Bool? = nil,
        nodeSelector: [String: String]? = nil, nodeName: String? = nil, affinity: Affinity? = nil
    ) {
        self.affinity = affinity
        self.containers = containers
        self.initContainers = initContainers
        self.volumes = volumes
        self.restartPolicy = restartPolicy
        self.activeDeadlineSeconds = activeDeadlineSeconds
        self.terminationGracePeriodSeconds = terminationGracePeriodSeconds
        self.automountServiceAccountToken = automountServiceAccountToken
        self.serviceAccountName = serviceAccountName
        self.securityContext = securityContext
        self.enableServiceLinks = enableServiceLinks
        self.nodeSelector = nodeSelector
        self.nodeName = nodeName
    }
}

/// core/v1 LocalObjectReference: an object in the same namespace, by name.
public struct LocalObjectReference: Codable, Sendable, Hashable {
    public var name: String

    public init(name: String) {
        self.name = name
    }
}

/// core/v1 Affinity, the pod-affinity part c2d uses (the io pod goes where its algorithm pod is).
public struct Affinity: Codable, Sendable, Hashable {
    public var podAffinity: PodAffinity?

    public init(podAffinity: PodAffinity? = nil) {
        self.podAffinity = podAffinity
    }

    public struct PodAffinity: Codable, Sendable, Hashable {
        public var requiredDuringSchedulingIgnoredDuringExecution: [PodAffinityTerm]?

        public init(requiredDuringSchedulingIgnoredDuringExecution: [PodAffinityTerm]? = nil) {
            self.requiredDuringSchedulingIgnoredDuringExecution = requiredDuringSchedulingIgnoredDuringExecution
        }
    }

    public struct PodAffinityTerm: Codable, Sendable, Hashable {
        public var labelSelector: LabelSelector?
        public var topologyKey: String

        public init(labelSelector: LabelSelector? = nil, topologyKey: String) {
            self.labelSelector = labelSelector
            self.topologyKey = topologyKey
        }
    }
}

public struct SeccompProfile: Codable, Sendable, Hashable {
    /// `RuntimeDefault`, `Unconfined` or `Localhost`.
    public var type: String
    public var localhostProfile: String?

    public init(type: String, localhostProfile: String? = nil) {
        self.type = type
        self.localhostProfile = localhostProfile
    }

    public static let runtimeDefault = SeccompProfile(type: "RuntimeDefault")
}

public struct PodSecurityContext: Codable, Sendable, Hashable {
    public var runAsNonRoot: Bool?
    public var runAsUser: Int?
    public var runAsGroup: Int?
    public var fsGroup: Int?
    public var seccompProfile: SeccompProfile?

    public init(
        runAsNonRoot: Bool? = nil, runAsUser: Int? = nil, runAsGroup: Int? = nil, fsGroup: Int? = nil,
        seccompProfile: SeccompProfile? = nil
    ) {
        self.runAsNonRoot = runAsNonRoot
        self.runAsUser = runAsUser
        self.runAsGroup = runAsGroup
        self.fsGroup = fsGroup
        self.seccompProfile = seccompProfile
    }
}

public struct Volume: Codable, Sendable, Hashable {
    public var name: String
    public var secret: SecretVolumeSource?
    public var persistentVolumeClaim: PersistentVolumeClaimVolumeSource?
    public var emptyDir: EmptyDirVolumeSource?
    /// A generic ephemeral volume: Kubernetes creates the claim `<pod>-<volume>`, owned by the pod.
    public var ephemeral: EphemeralVolumeSource?

    public init(
        name: String, secret: SecretVolumeSource? = nil,
        persistentVolumeClaim: PersistentVolumeClaimVolumeSource? = nil, emptyDir: EmptyDirVolumeSource? = nil,
        ephemeral: EphemeralVolumeSource? = nil
    ) {
        self.ephemeral = ephemeral
        self.name = name
        self.secret = secret
        self.persistentVolumeClaim = persistentVolumeClaim
        self.emptyDir = emptyDir
    }
}

public struct EphemeralVolumeSource: Codable, Sendable, Hashable {
    public var volumeClaimTemplate: ClaimTemplate

    public init(volumeClaimTemplate: ClaimTemplate) {
        self.volumeClaimTemplate = volumeClaimTemplate
    }

    public struct ClaimTemplate: Codable, Sendable, Hashable {
        public var metadata: ObjectMeta?
        public var spec: PersistentVolumeClaim.Spec

        public init(metadata: ObjectMeta? = nil, spec: PersistentVolumeClaim.Spec) {
            self.metadata = metadata
            self.spec = spec
        }
    }
}

public struct SecretVolumeSource: Codable, Sendable, Hashable {
    public var secretName: String
    public var items: [KeyToPath]?
    public var defaultMode: Int?
    public var optional: Bool?

    public init(secretName: String, items: [KeyToPath]? = nil, defaultMode: Int? = nil, optional: Bool? = nil) {
        self.secretName = secretName
        self.items = items
        self.defaultMode = defaultMode
        self.optional = optional
    }
}

public struct KeyToPath: Codable, Sendable, Hashable {
    public var key: String
    public var path: String
    public var mode: Int?

    public init(key: String, path: String, mode: Int? = nil) {
        self.key = key
        self.path = path
        self.mode = mode
    }
}

public struct PersistentVolumeClaimVolumeSource: Codable, Sendable, Hashable {
    public var claimName: String
    public var readOnly: Bool?

    public init(claimName: String, readOnly: Bool? = nil) {
        self.claimName = claimName
        self.readOnly = readOnly
    }
}

public struct EmptyDirVolumeSource: Codable, Sendable, Hashable {
    /// `""` (node disk) or `Memory`.
    public var medium: String?
    /// A quantity, e.g. `"1Gi"`.
    public var sizeLimit: String?

    public init(medium: String? = nil, sizeLimit: String? = nil) {
        self.medium = medium
        self.sizeLimit = sizeLimit
    }
}

public struct Container: Codable, Sendable, Hashable {
    public var name: String
    public var image: String?
    /// `Always`, `IfNotPresent` or `Never`.
    public var imagePullPolicy: String?
    public var command: [String]?
    public var args: [String]?
    public var env: [EnvVar]?
    public var workingDir: String?
    public var resources: ResourceRequirements?
    public var volumeMounts: [VolumeMount]?
    public var securityContext: SecurityContext?
    /// On an init container, `Always` makes it a native sidecar (Kubernetes ≥ 1.29): started in order with the other
    /// init containers, kept running, stopped after the main containers.
    public var restartPolicy: String?
    /// Hooks the kubelet runs in the container. A `postStart` hook runs right after the container started, and the
    /// kubelet starts no further container of the pod until it returned (it counts as part of starting).
    public var lifecycle: Lifecycle?

    public init(
        name: String, image: String? = nil, imagePullPolicy: String? = nil, command: [String]? = nil,
        args: [String]? = nil, env: [EnvVar]? = nil, workingDir: String? = nil, resources: ResourceRequirements? = nil,
        volumeMounts: [VolumeMount]? = nil, securityContext: SecurityContext? = nil, restartPolicy: String? = nil,
        lifecycle: Lifecycle? = nil
    ) {
        self.restartPolicy = restartPolicy
        self.lifecycle = lifecycle
        self.name = name
        self.image = image
        self.imagePullPolicy = imagePullPolicy
        self.command = command
        self.args = args
        self.env = env
        self.workingDir = workingDir
        self.resources = resources
        self.volumeMounts = volumeMounts
        self.securityContext = securityContext
    }
}

public struct Lifecycle: Codable, Sendable, Hashable {
    public var postStart: LifecycleHandler?
    public var preStop: LifecycleHandler?

    public init(postStart: LifecycleHandler? = nil, preStop: LifecycleHandler? = nil) {
        self.postStart = postStart
        self.preStop = preStop
    }
}

public struct LifecycleHandler: Codable, Sendable, Hashable {
    public var exec: ExecAction?

    public init(exec: ExecAction? = nil) { self.exec = exec }
}

public struct ExecAction: Codable, Sendable, Hashable {
    public var command: [String]?

    public init(command: [String]? = nil) { self.command = command }
}

public struct EnvVar: Codable, Sendable, Hashable {
    public var name: String
    public var value: String?
    public var valueFrom: EnvVarSource?

    public init(name: String, value: String? = nil, valueFrom: EnvVarSource? = nil) {
        self.name = name
        self.value = value
        self.valueFrom = valueFrom
    }
}

public struct EnvVarSource: Codable, Sendable, Hashable {
    public var secretKeyRef: SecretKeySelector?

    public init(secretKeyRef: SecretKeySelector? = nil) {
        self.secretKeyRef = secretKeyRef
    }
}

public struct SecretKeySelector: Codable, Sendable, Hashable {
    public var name: String
    public var key: String
    public var optional: Bool?

    public init(name: String, key: String, optional: Bool? = nil) {
        self.name = name
        self.key = key
        self.optional = optional
    }
}

/// Container resources as quantities, e.g. `["cpu": "500m", "memory": "1Gi"]`.
public struct ResourceRequirements: Codable, Sendable, Hashable {
    public var limits: [String: String]?
    public var requests: [String: String]?

    public init(limits: [String: String]? = nil, requests: [String: String]? = nil) {
        self.limits = limits
        self.requests = requests
    }
}

public struct VolumeMount: Codable, Sendable, Hashable {
    public var name: String
    public var mountPath: String
    public var readOnly: Bool?
    public var subPath: String?

    public init(name: String, mountPath: String, readOnly: Bool? = nil, subPath: String? = nil) {
        self.name = name
        self.mountPath = mountPath
        self.readOnly = readOnly
        self.subPath = subPath
    }
}

public struct Capabilities: Codable, Sendable, Hashable {
    public var add: [String]?
    public var drop: [String]?

    public init(add: [String]? = nil, drop: [String]? = nil) {
        self.add = add
        self.drop = drop
    }
}

public struct SecurityContext: Codable, Sendable, Hashable {
    public var runAsNonRoot: Bool?
    public var runAsUser: Int?
    public var runAsGroup: Int?
    public var allowPrivilegeEscalation: Bool?
    public var readOnlyRootFilesystem: Bool?
    public var privileged: Bool?
    public var capabilities: Capabilities?
    public var seccompProfile: SeccompProfile?

    public init(
        runAsNonRoot: Bool? = nil, runAsUser: Int? = nil, runAsGroup: Int? = nil,
        allowPrivilegeEscalation: Bool? = nil, readOnlyRootFilesystem: Bool? = nil, privileged: Bool? = nil,
        capabilities: Capabilities? = nil, seccompProfile: SeccompProfile? = nil
    ) {
        self.runAsNonRoot = runAsNonRoot
        self.runAsUser = runAsUser
        self.runAsGroup = runAsGroup
        self.allowPrivilegeEscalation = allowPrivilegeEscalation
        self.readOnlyRootFilesystem = readOnlyRootFilesystem
        self.privileged = privileged
        self.capabilities = capabilities
        self.seccompProfile = seccompProfile
    }
}

public struct PodStatus: Codable, Sendable, Hashable {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    public var phase: String?
    /// E.g. `Evicted`, `DeadlineExceeded`.
    public var reason: String?
    public var message: String?
    public var conditions: [PodCondition]?
    public var startTime: Date?
    public var containerStatuses: [ContainerStatus]?
    public var initContainerStatuses: [ContainerStatus]?

    public init(
        phase: String? = nil, reason: String? = nil, message: String? = nil, conditions: [PodCondition]? = nil,
        startTime: Date? = nil, containerStatuses: [ContainerStatus]? = nil,
        initContainerStatuses: [ContainerStatus]? = nil
    ) {
        self.phase = phase
        self.reason = reason
        self.message = message
        self.conditions = conditions
        self.startTime = startTime
        self.containerStatuses = containerStatuses
        self.initContainerStatuses = initContainerStatuses
    }
}

public struct PodCondition: Codable, Sendable, Hashable {
    /// E.g. `PodScheduled`, `Ready`, `DisruptionTarget`.
    public var type: String
    /// `True`, `False` or `Unknown`.
    public var status: String
    public var reason: String?
    public var message: String?
    public var lastTransitionTime: Date?

    public init(
        type: String, status: String, reason: String? = nil, message: String? = nil, lastTransitionTime: Date? = nil
    ) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
    }
}

public struct ContainerStatus: Codable, Sendable, Hashable {
    public var name: String
    public var state: ContainerState?
    public var lastState: ContainerState?
    public var ready: Bool?
    public var restartCount: Int?
    public var image: String?
    public var imageID: String?
    public var containerID: String?
    public var started: Bool?

    public init(
        name: String, state: ContainerState? = nil, lastState: ContainerState? = nil, ready: Bool? = nil,
        restartCount: Int? = nil, image: String? = nil, imageID: String? = nil, containerID: String? = nil,
        started: Bool? = nil
    ) {
        self.name = name
        self.state = state
        self.lastState = lastState
        self.ready = ready
        self.restartCount = restartCount
        self.image = image
        self.imageID = imageID
        self.containerID = containerID
        self.started = started
    }
}

/// At most one of the three is set.
public struct ContainerState: Codable, Sendable, Hashable {
    public var waiting: Waiting?
    public var running: Running?
    public var terminated: Terminated?

    public init(waiting: Waiting? = nil, running: Running? = nil, terminated: Terminated? = nil) {
        self.waiting = waiting
        self.running = running
        self.terminated = terminated
    }

    public struct Waiting: Codable, Sendable, Hashable {
        /// E.g. `ContainerCreating`, `ImagePullBackOff`, `CreateContainerConfigError`.
        public var reason: String?
        public var message: String?

        public init(reason: String? = nil, message: String? = nil) {
            self.reason = reason
            self.message = message
        }
    }

    public struct Running: Codable, Sendable, Hashable {
        public var startedAt: Date?

        public init(startedAt: Date? = nil) {
            self.startedAt = startedAt
        }
    }

    public struct Terminated: Codable, Sendable, Hashable {
        public var exitCode: Int
        public var signal: Int?
        /// E.g. `Completed`, `Error`, `OOMKilled`, `DeadlineExceeded`.
        public var reason: String?
        public var message: String?
        public var startedAt: Date?
        public var finishedAt: Date?

        public init(
            exitCode: Int, signal: Int? = nil, reason: String? = nil, message: String? = nil,
            startedAt: Date? = nil, finishedAt: Date? = nil
        ) {
            self.exitCode = exitCode
            self.signal = signal
            self.reason = reason
            self.message = message
            self.startedAt = startedAt
            self.finishedAt = finishedAt
        }
    }
}
