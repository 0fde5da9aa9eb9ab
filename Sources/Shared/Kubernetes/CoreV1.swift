import Foundation

/// core/v1 Secret. `data` values are raw bytes; they travel base64-encoded, which `JSONEncoder` does for `Data`.
package struct Secret: KubernetesResource, Hashable {
    package static let resource = ResourceInfo(group: "", version: "v1", kind: "Secret", plural: "secrets")

    package var apiVersion: String?
    package var kind: String?
    package var metadata: ObjectMeta
    /// `Opaque` when nil.
    package var type: String?
    package var data: [String: Data]?
    /// Write-only convenience: merged into `data` by the server, never returned.
    package var stringData: [String: String]?
    package var immutable: Bool?

    package init(
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
package struct PersistentVolumeClaim: KubernetesResource, Hashable {
    package static let resource = ResourceInfo(
        group: "", version: "v1", kind: "PersistentVolumeClaim", plural: "persistentvolumeclaims")

    package var apiVersion: String?
    package var kind: String?
    package var metadata: ObjectMeta
    package var spec: Spec?
    package var status: Status?

    package init(metadata: ObjectMeta, spec: Spec) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
    }

    package struct Spec: Codable, Sendable, Hashable {
        /// E.g. `ReadWriteOnce`, `ReadWriteMany`.
        package var accessModes: [String]?
        package var resources: VolumeResourceRequirements?
        package var storageClassName: String?
        /// `Filesystem` (default) or `Block`.
        package var volumeMode: String?

        package init(
            accessModes: [String]? = nil, resources: VolumeResourceRequirements? = nil,
            storageClassName: String? = nil, volumeMode: String? = nil
        ) {
            self.accessModes = accessModes
            self.resources = resources
            self.storageClassName = storageClassName
            self.volumeMode = volumeMode
        }
    }

    package struct Status: Codable, Sendable, Hashable {
        /// `Pending`, `Bound` or `Lost`.
        package var phase: String?
        package var accessModes: [String]?
        package var capacity: [String: String]?

        package init(phase: String? = nil, accessModes: [String]? = nil, capacity: [String: String]? = nil) {
            self.phase = phase
            self.accessModes = accessModes
            self.capacity = capacity
        }
    }
}

/// Storage requests of a claim, as quantities (`"1Gi"`).
package struct VolumeResourceRequirements: Codable, Sendable, Hashable {
    package var requests: [String: String]?
    package var limits: [String: String]?

    package init(requests: [String: String]? = nil, limits: [String: String]? = nil) {
        self.requests = requests
        self.limits = limits
    }
}

/// core/v1 Pod. c2d never creates bare pods; it reads those its Jobs create.
package struct Pod: KubernetesResource, Hashable {
    package static let resource = ResourceInfo(group: "", version: "v1", kind: "Pod", plural: "pods")

    package var apiVersion: String?
    package var kind: String?
    package var metadata: ObjectMeta
    package var spec: PodSpec?
    package var status: PodStatus?

    package init(metadata: ObjectMeta, spec: PodSpec? = nil, status: PodStatus? = nil) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

package struct PodTemplateSpec: Codable, Sendable, Hashable {
    package var metadata: ObjectMeta?
    package var spec: PodSpec?

    package init(metadata: ObjectMeta? = nil, spec: PodSpec? = nil) {
        self.metadata = metadata
        self.spec = spec
    }
}

package struct PodSpec: Codable, Sendable, Hashable {
    package var containers: [Container]
    package var initContainers: [Container]?
    package var volumes: [Volume]?
    /// `Never` or `OnFailure` for Jobs.
    package var restartPolicy: String?
    package var activeDeadlineSeconds: Int?
    package var terminationGracePeriodSeconds: Int?
    package var automountServiceAccountToken: Bool?
    package var serviceAccountName: String?
    package var securityContext: PodSecurityContext?
    package var enableServiceLinks: Bool?
    package var nodeSelector: [String: String]?
    package var nodeName: String?
    package var affinity: Affinity?
    /// Secrets of type `kubernetes.io/dockerconfigjson` the kubelet pulls the pod's images with.
    package var imagePullSecrets: [LocalObjectReference]?

    package init(
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
package struct LocalObjectReference: Codable, Sendable, Hashable {
    package var name: String

    package init(name: String) {
        self.name = name
    }
}

/// core/v1 Affinity, the pod-affinity part c2d uses (the io pod goes where its algorithm pod is).
package struct Affinity: Codable, Sendable, Hashable {
    package var podAffinity: PodAffinity?

    package init(podAffinity: PodAffinity? = nil) {
        self.podAffinity = podAffinity
    }

    package struct PodAffinity: Codable, Sendable, Hashable {
        package var requiredDuringSchedulingIgnoredDuringExecution: [PodAffinityTerm]?

        package init(requiredDuringSchedulingIgnoredDuringExecution: [PodAffinityTerm]? = nil) {
            self.requiredDuringSchedulingIgnoredDuringExecution = requiredDuringSchedulingIgnoredDuringExecution
        }
    }

    package struct PodAffinityTerm: Codable, Sendable, Hashable {
        package var labelSelector: LabelSelector?
        package var topologyKey: String

        package init(labelSelector: LabelSelector? = nil, topologyKey: String) {
            self.labelSelector = labelSelector
            self.topologyKey = topologyKey
        }
    }
}

package struct SeccompProfile: Codable, Sendable, Hashable {
    /// `RuntimeDefault`, `Unconfined` or `Localhost`.
    package var type: String
    package var localhostProfile: String?

    package init(type: String, localhostProfile: String? = nil) {
        self.type = type
        self.localhostProfile = localhostProfile
    }

    package static let runtimeDefault = SeccompProfile(type: "RuntimeDefault")
}

package struct PodSecurityContext: Codable, Sendable, Hashable {
    package var runAsNonRoot: Bool?
    package var runAsUser: Int?
    package var runAsGroup: Int?
    package var fsGroup: Int?
    package var seccompProfile: SeccompProfile?

    package init(
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

package struct Volume: Codable, Sendable, Hashable {
    package var name: String
    package var secret: SecretVolumeSource?
    package var persistentVolumeClaim: PersistentVolumeClaimVolumeSource?
    package var emptyDir: EmptyDirVolumeSource?
    /// A generic ephemeral volume: Kubernetes creates the claim `<pod>-<volume>`, owned by the pod.
    package var ephemeral: EphemeralVolumeSource?

    package init(
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

package struct EphemeralVolumeSource: Codable, Sendable, Hashable {
    package var volumeClaimTemplate: ClaimTemplate

    package init(volumeClaimTemplate: ClaimTemplate) {
        self.volumeClaimTemplate = volumeClaimTemplate
    }

    package struct ClaimTemplate: Codable, Sendable, Hashable {
        package var metadata: ObjectMeta?
        package var spec: PersistentVolumeClaim.Spec

        package init(metadata: ObjectMeta? = nil, spec: PersistentVolumeClaim.Spec) {
            self.metadata = metadata
            self.spec = spec
        }
    }
}

package struct SecretVolumeSource: Codable, Sendable, Hashable {
    package var secretName: String
    package var items: [KeyToPath]?
    package var defaultMode: Int?
    package var optional: Bool?

    package init(secretName: String, items: [KeyToPath]? = nil, defaultMode: Int? = nil, optional: Bool? = nil) {
        self.secretName = secretName
        self.items = items
        self.defaultMode = defaultMode
        self.optional = optional
    }
}

package struct KeyToPath: Codable, Sendable, Hashable {
    package var key: String
    package var path: String
    package var mode: Int?

    package init(key: String, path: String, mode: Int? = nil) {
        self.key = key
        self.path = path
        self.mode = mode
    }
}

package struct PersistentVolumeClaimVolumeSource: Codable, Sendable, Hashable {
    package var claimName: String
    package var readOnly: Bool?

    package init(claimName: String, readOnly: Bool? = nil) {
        self.claimName = claimName
        self.readOnly = readOnly
    }
}

package struct EmptyDirVolumeSource: Codable, Sendable, Hashable {
    /// `""` (node disk) or `Memory`.
    package var medium: String?
    /// A quantity, e.g. `"1Gi"`.
    package var sizeLimit: String?

    package init(medium: String? = nil, sizeLimit: String? = nil) {
        self.medium = medium
        self.sizeLimit = sizeLimit
    }
}

package struct Container: Codable, Sendable, Hashable {
    package var name: String
    package var image: String?
    /// `Always`, `IfNotPresent` or `Never`.
    package var imagePullPolicy: String?
    package var command: [String]?
    package var args: [String]?
    package var env: [EnvVar]?
    package var workingDir: String?
    package var resources: ResourceRequirements?
    package var volumeMounts: [VolumeMount]?
    package var securityContext: SecurityContext?
    /// On an init container, `Always` makes it a native sidecar (Kubernetes ≥ 1.29): started in order with the other
    /// init containers, kept running, stopped after the main containers.
    package var restartPolicy: String?
    /// Hooks the kubelet runs in the container. A `postStart` hook runs right after the container started, and the
    /// kubelet starts no further container of the pod until it returned (it counts as part of starting).
    package var lifecycle: Lifecycle?

    package init(
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

package struct Lifecycle: Codable, Sendable, Hashable {
    package var postStart: LifecycleHandler?
    package var preStop: LifecycleHandler?

    package init(postStart: LifecycleHandler? = nil, preStop: LifecycleHandler? = nil) {
        self.postStart = postStart
        self.preStop = preStop
    }
}

package struct LifecycleHandler: Codable, Sendable, Hashable {
    package var exec: ExecAction?

    package init(exec: ExecAction? = nil) { self.exec = exec }
}

package struct ExecAction: Codable, Sendable, Hashable {
    package var command: [String]?

    package init(command: [String]? = nil) { self.command = command }
}

package struct EnvVar: Codable, Sendable, Hashable {
    package var name: String
    package var value: String?
    package var valueFrom: EnvVarSource?

    package init(name: String, value: String? = nil, valueFrom: EnvVarSource? = nil) {
        self.name = name
        self.value = value
        self.valueFrom = valueFrom
    }
}

package struct EnvVarSource: Codable, Sendable, Hashable {
    package var secretKeyRef: SecretKeySelector?

    package init(secretKeyRef: SecretKeySelector? = nil) {
        self.secretKeyRef = secretKeyRef
    }
}

package struct SecretKeySelector: Codable, Sendable, Hashable {
    package var name: String
    package var key: String
    package var optional: Bool?

    package init(name: String, key: String, optional: Bool? = nil) {
        self.name = name
        self.key = key
        self.optional = optional
    }
}

/// Container resources as quantities, e.g. `["cpu": "500m", "memory": "1Gi"]`.
package struct ResourceRequirements: Codable, Sendable, Hashable {
    package var limits: [String: String]?
    package var requests: [String: String]?

    package init(limits: [String: String]? = nil, requests: [String: String]? = nil) {
        self.limits = limits
        self.requests = requests
    }
}

package struct VolumeMount: Codable, Sendable, Hashable {
    package var name: String
    package var mountPath: String
    package var readOnly: Bool?
    package var subPath: String?

    package init(name: String, mountPath: String, readOnly: Bool? = nil, subPath: String? = nil) {
        self.name = name
        self.mountPath = mountPath
        self.readOnly = readOnly
        self.subPath = subPath
    }
}

package struct Capabilities: Codable, Sendable, Hashable {
    package var add: [String]?
    package var drop: [String]?

    package init(add: [String]? = nil, drop: [String]? = nil) {
        self.add = add
        self.drop = drop
    }
}

package struct SecurityContext: Codable, Sendable, Hashable {
    package var runAsNonRoot: Bool?
    package var runAsUser: Int?
    package var runAsGroup: Int?
    package var allowPrivilegeEscalation: Bool?
    package var readOnlyRootFilesystem: Bool?
    package var privileged: Bool?
    package var capabilities: Capabilities?
    package var seccompProfile: SeccompProfile?

    package init(
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

package struct PodStatus: Codable, Sendable, Hashable {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    package var phase: String?
    /// E.g. `Evicted`, `DeadlineExceeded`.
    package var reason: String?
    package var message: String?
    package var conditions: [PodCondition]?
    package var startTime: Date?
    package var containerStatuses: [ContainerStatus]?
    package var initContainerStatuses: [ContainerStatus]?

    package init(
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

package struct PodCondition: Codable, Sendable, Hashable {
    /// E.g. `PodScheduled`, `Ready`, `DisruptionTarget`.
    package var type: String
    /// `True`, `False` or `Unknown`.
    package var status: String
    package var reason: String?
    package var message: String?
    package var lastTransitionTime: Date?

    package init(
        type: String, status: String, reason: String? = nil, message: String? = nil, lastTransitionTime: Date? = nil
    ) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
    }
}

package struct ContainerStatus: Codable, Sendable, Hashable {
    package var name: String
    package var state: ContainerState?
    package var lastState: ContainerState?
    package var ready: Bool?
    package var restartCount: Int?
    package var image: String?
    package var imageID: String?
    package var containerID: String?
    package var started: Bool?

    package init(
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
package struct ContainerState: Codable, Sendable, Hashable {
    package var waiting: Waiting?
    package var running: Running?
    package var terminated: Terminated?

    package init(waiting: Waiting? = nil, running: Running? = nil, terminated: Terminated? = nil) {
        self.waiting = waiting
        self.running = running
        self.terminated = terminated
    }

    package struct Waiting: Codable, Sendable, Hashable {
        /// E.g. `ContainerCreating`, `ImagePullBackOff`, `CreateContainerConfigError`.
        package var reason: String?
        package var message: String?

        package init(reason: String? = nil, message: String? = nil) {
            self.reason = reason
            self.message = message
        }
    }

    package struct Running: Codable, Sendable, Hashable {
        package var startedAt: Date?

        package init(startedAt: Date? = nil) {
            self.startedAt = startedAt
        }
    }

    package struct Terminated: Codable, Sendable, Hashable {
        package var exitCode: Int
        package var signal: Int?
        /// E.g. `Completed`, `Error`, `OOMKilled`, `DeadlineExceeded`.
        package var reason: String?
        package var message: String?
        package var startedAt: Date?
        package var finishedAt: Date?

        package init(
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
