import Domain
import Foundation
import Kubernetes

/// The Kubernetes objects of one attempt of a job (DESIGN §3), built as values so they can be checked against the
/// official schemas without a cluster. Ocean's volume layout: `/data/inputs/<did>/<n>`,
/// `/data/transformations/algorithm`, `/data/ddos`, `/data/outputs`, `/data/logs`.
package struct JobManifests: Sendable {
    package let job: Domain.Job
    package let environment: ComputeEnvironment
    package let configuration: KubernetesExecutorConfiguration

    package init(job: Domain.Job, environment: ComputeEnvironment, configuration: KubernetesExecutorConfiguration) {
        self.job = job
        self.environment = environment
        self.configuration = configuration
    }

    var attemptName: String { ClusterNaming.attemptName(jobID: job.id, attempt: job.attempt) }

    func stepName(_ step: ClusterNaming.Step) -> String {
        ClusterNaming.stepName(jobID: job.id, attempt: job.attempt, step: step)
    }

    func labels(_ step: ClusterNaming.Step?) -> [String: String] {
        ClusterNaming.labels(jobID: job.id, attempt: job.attempt, environment: job.environment, step: step)
    }

    /// Secret keys.
    static let workflowKey = "workflow.json"
    static let uploadTokenKey = "upload-token"
    static let operatorKeyKey = "operator-key"

    /// The attempt's Secret: the workflow and the per-attempt upload token. It owns every other object of the
    /// attempt, so deleting it deletes them all.
    package func secret(uploadToken: String) throws -> Secret {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data: [String: Data] = [
            Self.workflowKey: try encoder.encode(job.workflow), Self.uploadTokenKey: Data(uploadToken.utf8),
        ]
        if let key = configuration.operatorPrivateKeyHex { data[Self.operatorKeyKey] = Data(key.utf8) }
        return Secret(
            metadata: ObjectMeta(name: attemptName, namespace: configuration.namespace, labels: labels(nil)),
            type: "Opaque", data: data)
    }

    /// The `/data` volume, sized to the environment's disk limit.
    package func volume(owner: OwnerReference) -> PersistentVolumeClaim {
        PersistentVolumeClaim(
            metadata: ObjectMeta(
                name: attemptName, namespace: configuration.namespace, labels: labels(nil), ownerReferences: [owner]),
            spec: .init(
                accessModes: ["ReadWriteOnce"],
                resources: VolumeResourceRequirements(requests: ["storage": "\(max(1, environment.diskMiB))Mi"]),
                storageClassName: configuration.storageClassName))
    }

    /// Whether the algorithm gets network: only where the environment allows it and the job asked for it.
    var algorithmHasNetwork: Bool {
        environment.allowNetwork && job.workflow.stage?.compute?.allowNetwork == true
    }

    /// Denies the algorithm pod all egress (and ingress); nil when the algorithm may use the network.
    package func networkPolicy(owner: OwnerReference) -> NetworkPolicy? {
        guard !algorithmHasNetwork else { return nil }
        var selector = labels(.algorithm)
        selector[ClusterNaming.environmentLabel] = nil
        return NetworkPolicy(
            metadata: ObjectMeta(
                name: attemptName, namespace: configuration.namespace, labels: labels(nil), ownerReferences: [owner]),
            spec: .init(
                podSelector: LabelSelector(matchLabels: selector), policyTypes: ["Ingress", "Egress"], ingress: [],
                egress: []))
    }

    /// The run-time limit of the algorithm step: the workflow's `maxtime`, capped by the environment.
    var algorithmDeadlineSeconds: Int {
        let requested = job.workflow.stage?.compute?.maxtime ?? environment.maxJobDuration
        return max(1, min(requested, environment.maxJobDuration))
    }

    /// One step's Job: `backoffLimit` 0 (c2d decides about retries), a deadline, the hardened pod.
    package func stepJob(_ step: ClusterNaming.Step, owner: OwnerReference) -> Kubernetes.Job {
        let deadline: Int
        let container: Container
        switch step {
        case .configure:
            deadline = configuration.configureDeadlineSeconds
            container = configureContainer()
        case .algorithm:
            deadline = algorithmDeadlineSeconds
            container = algorithmContainer()
        case .publish:
            deadline = configuration.publishDeadlineSeconds
            container = publishContainer()
        }
        var podSpec = PodSpec(
            containers: [container],
            volumes: [
                Volume(name: "data", persistentVolumeClaim: .init(claimName: attemptName)),
                Volume(name: "secret", secret: .init(secretName: attemptName, defaultMode: 0o400)),
            ],
            restartPolicy: "Never", automountServiceAccountToken: false,
            securityContext: PodSecurityContext(
                runAsNonRoot: true, runAsUser: configuration.runAsUser, runAsGroup: configuration.runAsUser,
                fsGroup: configuration.runAsUser, seccompProfile: SeccompProfile(type: "RuntimeDefault")),
            enableServiceLinks: false)
        if step == .algorithm {
            podSpec.nodeSelector = AlgorithmPlacement.of(job, environment: environment).nodeSelector
        }
        return Kubernetes.Job(
            metadata: ObjectMeta(
                name: stepName(step), namespace: configuration.namespace, labels: labels(step),
                ownerReferences: [owner]),
            spec: JobSpec(
                template: PodTemplateSpec(metadata: ObjectMeta(labels: labels(step)), spec: podSpec),
                backoffLimit: 0, activeDeadlineSeconds: deadline))
    }

    static let hardened = SecurityContext(
        runAsNonRoot: true, allowPrivilegeEscalation: false, privileged: false,
        capabilities: Capabilities(drop: ["ALL"]), seccompProfile: SeccompProfile(type: "RuntimeDefault"))

    private func stepEnvironment() -> [EnvVar] {
        [
            EnvVar(name: "C2D_JOB_ID", value: job.id.description),
            EnvVar(name: "C2D_ATTEMPT", value: String(job.attempt)),
            EnvVar(name: "VOLUME", value: "/data"),
        ]
    }

    private func configureContainer() -> Container {
        var env =
            stepEnvironment() + [
                EnvVar(name: "C2D_WORKFLOW_FILE", value: "/c2d/secret/\(Self.workflowKey)"),
                EnvVar(name: "C2D_ALLOW_PRIVATE_URLS", value: configuration.allowPrivateURLs ? "1" : "0"),
            ]
        if configuration.operatorPrivateKeyHex != nil {
            env.append(
                EnvVar(
                    name: "C2D_OPERATOR_PRIVATE_KEY",
                    valueFrom: EnvVarSource(secretKeyRef: .init(name: attemptName, key: Self.operatorKeyKey))))
        }
        return Container(
            name: "configure", image: configuration.podImage, command: ["c2d", "pod", "configure"], env: env,
            resources: stepResources,
            volumeMounts: [
                VolumeMount(name: "data", mountPath: "/data"),
                VolumeMount(name: "secret", mountPath: "/c2d/secret", readOnly: true),
            ],
            securityContext: Self.hardened)
    }

    private func publishContainer() -> Container {
        Container(
            name: "publish", image: configuration.podImage, command: ["c2d", "pod", "publish"],
            env: stepEnvironment() + [
                EnvVar(name: "C2D_RESULTS_URL", value: configuration.resultsURL),
                // Outputs above the environment's disk limit end the job with status 42, as on the local executor.
                EnvVar(name: "C2D_DISK_LIMIT_BYTES", value: String(Int64(environment.diskMiB) << 20)),
                EnvVar(
                    name: "C2D_UPLOAD_TOKEN",
                    valueFrom: EnvVarSource(secretKeyRef: .init(name: attemptName, key: Self.uploadTokenKey))),
            ],
            resources: stepResources,
            volumeMounts: [VolumeMount(name: "data", mountPath: "/data", readOnly: true)],
            securityContext: Self.hardened)
    }

    /// The configure and publish steps are c2d's own code: small, fixed requests.
    private var stepResources: ResourceRequirements {
        let amounts = ["cpu": "500m", "memory": "256Mi"]
        return ResourceRequirements(limits: amounts, requests: amounts)
    }

    /// The consumer's algorithm: its image, its entrypoint with `$ALGO` set, inputs read-only, requests = limits.
    private func algorithmContainer() -> Container {
        let algorithm = job.workflow.stage?.algorithm
        let image = algorithm?.container?.image ?? "python"
        let tag = algorithm?.container?.tag.flatMap { $0.isEmpty ? nil : $0 }
        let reference =
            if let checksum = algorithm?.container?.checksum, checksum.hasPrefix("sha256:") {
                "\(image)@\(checksum)"
            } else {
                tag.map { "\(image):\($0)" } ?? image
            }
        let inputDIDs = (job.workflow.stage?.input ?? []).enumerated().map {
            WorkflowValidator.inputDirectoryName($0.element, position: $0.offset)
        }
        let dids = String(decoding: (try? JSONEncoder().encode(inputDIDs)) ?? Data("[]".utf8), as: UTF8.self)
        // What the job asked for (validated against the environment at submit), else the environment's amounts.
        var requested: [String: Double] = [:]
        for resource in job.workflow.stage?.compute?.resources ?? [] { requested[resource.id] = resource.amount }
        let cpus = min(environment.cpus, requested["cpu"] ?? environment.cpus)
        let memoryMiB = min(environment.memoryMiB, requested["ram"].map { Int($0 * 1024) } ?? environment.memoryMiB)
        let amounts = ["cpu": Self.quantity(cpus), "memory": "\(max(1, memoryMiB))Mi"].merging(
            AlgorithmPlacement.of(job, environment: environment).extendedResources
        ) { $1 }
        return Container(
            name: "algorithm", image: reference, command: ["/bin/sh", "-c", algorithm?.container?.entrypoint ?? ""],
            env: stepEnvironment() + [
                EnvVar(name: "ALGO", value: "/data/transformations/algorithm"),
                EnvVar(name: "DIDS", value: dids),
                EnvVar(name: "TRANSFORMATION_DID", value: algorithm?.id ?? ""),
                EnvVar(name: "LOGS", value: "/data/logs"),
                EnvVar(name: "INPUTS", value: "/data/inputs"),
                EnvVar(name: "OUTPUTS", value: "/data/outputs"),
            ],
            workingDir: "/data",
            resources: ResourceRequirements(limits: amounts, requests: amounts),
            volumeMounts: [
                VolumeMount(name: "data", mountPath: "/data/inputs", readOnly: true, subPath: "inputs"),
                VolumeMount(
                    name: "data", mountPath: "/data/transformations", readOnly: true, subPath: "transformations"),
                VolumeMount(name: "data", mountPath: "/data/ddos", readOnly: true, subPath: "ddos"),
                VolumeMount(name: "data", mountPath: "/data/outputs", subPath: "outputs"),
                VolumeMount(name: "data", mountPath: "/data/logs", subPath: "logs"),
            ],
            securityContext: Self.hardened)
    }

    /// CPU as a Kubernetes quantity: whole cores as integers, fractions in millicores.
    static func quantity(_ cores: Double) -> String {
        let millicores = Int((cores * 1000).rounded())
        return millicores % 1000 == 0 ? String(millicores / 1000) : "\(millicores)m"
    }
}
