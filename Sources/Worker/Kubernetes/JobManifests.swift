import Domain
import Foundation
import Kubernetes

/// The Kubernetes objects of one attempt of a job (docs/architecture.md, "A job's life on Kubernetes"), built as
/// values so they can be checked against the official schemas without a cluster. Two writes launch an attempt:
///
/// 1. the batch/v1 Job `c2d-<id>-<n>` (the attempt's root): its *io* pod runs `c2d pod configure` as an init
///    container (fetches the workflow from the gateway with the attempt's upload token, then inputs and algorithm),
///    then `c2d pod publish` (waits for the algorithm's end, uploads outputs and logs). It has network to fetch and
///    to reach the gateway (the `c2d-io` NetworkPolicy of deploy/ narrows that), and the upload token in its env;
/// 2. the Pod `c2d-<id>-<n>-algorithm`, owned by the Job: `await-inputs` (init) waits for configure, the
///    `signal-end` native sidecar marks the algorithm's end on the volume when Kubernetes stops it after the
///    algorithm, the `algorithm-log` native sidecar relays `algorithm.log` to its container log, and the algorithm
///    runs in the consumer's image with no network (the namespace's `c2d-algorithm-isolation` policy selects it by
///    label) and no credentials of any kind.
///
/// The data volume is the algorithm pod's generic ephemeral volume (sized to the environment's disk); the io pod
/// mounts its claim by name and follows the algorithm pod onto its node. Ocean's layout: `/data/inputs/<did>/<n>`,
/// `/data/transformations/algorithm`, `/data/ddos`, `/data/outputs`, `/data/logs`, plus `/data/adminlogs` and the
/// coordination marks in `/data/.c2d`, which the algorithm container never sees.
package struct JobManifests: Sendable {
    package let job: Domain.Job
    package let environment: ComputeEnvironment
    package let configuration: KubernetesExecutorConfiguration

    package init(job: Domain.Job, environment: ComputeEnvironment, configuration: KubernetesExecutorConfiguration) {
        self.job = job
        self.environment = environment
        self.configuration = configuration
    }

    package var rootName: String { ClusterNaming.attemptName(jobID: job.id, attempt: job.attempt) }
    package var algorithmPodName: String { ClusterNaming.algorithmPodName(jobID: job.id, attempt: job.attempt) }
    package var dataClaimName: String { ClusterNaming.dataClaimName(jobID: job.id, attempt: job.attempt) }

    func labels(_ role: ClusterNaming.Role?) -> [String: String] {
        ClusterNaming.labels(jobID: job.id, attempt: job.attempt, environment: job.environment, role: role)
    }

    /// Whether the algorithm gets network: only where the environment allows it and the job asked for it.
    var algorithmHasNetwork: Bool {
        environment.allowNetwork && job.workflow.stage?.compute?.allowNetwork == true
    }

    /// The run-time limit of the algorithm step: the workflow's `maxtime`, capped by the environment.
    package var algorithmDeadlineSeconds: Int {
        let requested = job.workflow.stage?.compute?.maxtime ?? environment.maxJobDuration
        return max(1, min(requested, environment.maxJobDuration))
    }

    /// The algorithm's memory limit in MiB: what the job asked for in `compute.resources`, else the environment's.
    package var algorithmMemoryMiB: Int {
        let requested = job.workflow.stage?.compute?.resources?.first { $0.id == "ram" }?.amount
        return max(1, min(environment.memoryMiB, requested.map { Int($0 * 1024) } ?? environment.memoryMiB))
    }

    package var algorithmImage: String {
        let algorithm = job.workflow.stage?.algorithm
        let image = algorithm?.container?.image.flatMap { $0.isEmpty ? nil : $0 } ?? ImagePolicy.kubernetesDefaultImage
        let tag = algorithm?.container?.tag.flatMap { $0.isEmpty ? nil : $0 }
        if let checksum = algorithm?.container?.checksum, checksum.hasPrefix("sha256:") {
            return "\(image)@\(checksum)"
        }
        return tag.map { "\(image):\($0)" } ?? image
    }

    // MARK: The root Job (io pod)

    /// The attempt's Job. `uploadToken` authenticates its io pod to the gateway (workflow download, uploads); it is
    /// in the configure and publish containers' environment only.
    package func rootJob(uploadToken: String) -> Kubernetes.Job {
        var volumes = [
            Volume(name: "data", persistentVolumeClaim: .init(claimName: dataClaimName))
        ]
        var configureMounts = [VolumeMount(name: "data", mountPath: "/data")]
        var configureEnv =
            stepEnvironment(token: uploadToken) + [
                EnvVar(.allowPrivateURLs, value: configuration.allowPrivateURLs ? "1" : "0"),
                EnvVar(
                    name: ClusterNaming.PodVariable.operatorPrivateKey.rawValue,
                    valueFrom: EnvVarSource(
                        secretKeyRef: .init(
                            name: configuration.operatorKeySecret, key: KubernetesExecutorConfiguration.operatorKeyKey,
                            optional: true))),
            ]
        if let claim = environment.dataVolumeClaim {
            volumes.append(Volume(name: "datasets", persistentVolumeClaim: .init(claimName: claim, readOnly: true)))
            configureMounts.append(VolumeMount(name: "datasets", mountPath: Self.datasetsPath, readOnly: true))
            configureEnv.append(EnvVar(.datasetsDirectory, value: Self.datasetsPath))
        }
        let configure = Container(
            name: ClusterNaming.Container.configure, image: configuration.podImage,
            command: ["c2d", "pod", "configure"],
            env: configureEnv, resources: stepResources, volumeMounts: configureMounts,
            securityContext: Self.hardened)
        let publish = Container(
            name: ClusterNaming.Container.publish, image: configuration.podImage,
            command: ["c2d", "pod", "publish", "--after-algorithm"],
            env: stepEnvironment(token: uploadToken) + [
                // Outputs above the environment's disk limit end the job with status 42, as on the local executor.
                EnvVar(.diskLimitBytes, value: String(Int64(environment.diskMiB) << 20))
            ] + directUploadEnvironment,
            resources: stepResources, volumeMounts: [VolumeMount(name: "data", mountPath: "/data")],
            securityContext: Self.hardened)
        let affinity = Affinity(
            podAffinity: .init(requiredDuringSchedulingIgnoredDuringExecution: [
                .init(
                    labelSelector: LabelSelector(matchLabels: [
                        ClusterNaming.jobIDLabel: job.id.description, ClusterNaming.attemptLabel: String(job.attempt),
                        ClusterNaming.roleLabel: ClusterNaming.Role.algorithm.rawValue,
                    ]), topologyKey: "kubernetes.io/hostname")
            ]))
        var pod = hardenedPod(containers: [publish], initContainers: [configure], volumes: volumes)
        pod.affinity = affinity
        // Long enough for publish to upload the logs when the attempt is stopped.
        pod.terminationGracePeriodSeconds = configuration.publishGraceSeconds
        return Kubernetes.Job(
            metadata: ObjectMeta(name: rootName, namespace: configuration.namespace, labels: labels(nil)),
            spec: JobSpec(
                template: PodTemplateSpec(metadata: ObjectMeta(labels: labels(.io)), spec: pod),
                backoffLimit: 0,
                // A backstop: every step has its own limit; this ends an attempt nobody looks after.
                activeDeadlineSeconds: configuration.configureDeadlineSeconds + algorithmDeadlineSeconds
                    + configuration.publishDeadlineSeconds,
                ttlSecondsAfterFinished: configuration.finishedTTLSeconds))
    }

    /// Where the environment's datasets claim is mounted in the configure container.
    static let datasetsPath = "/c2d/datasets"

    // MARK: The algorithm pod

    /// The algorithm's pod, owned by the attempt's Job (`owner`, read back from the server for its uid).
    package func algorithmPod(owner: OwnerReference) -> Pod {
        let dataMount = VolumeMount(name: ClusterNaming.dataVolume, mountPath: "/data")
        let awaitInputs = Container(
            name: ClusterNaming.Container.awaitInputs, image: configuration.podImage,
            command: ["c2d", "pod", "await-inputs"],
            env: [
                EnvVar(.volume, value: "/data"),
                EnvVar(.awaitSeconds, value: String(configuration.configureDeadlineSeconds)),
            ], resources: markerResources, volumeMounts: [dataMount], securityContext: Self.hardened)
        let signalEnd = Container(
            name: ClusterNaming.Container.signalEnd, image: configuration.podImage,
            command: ["c2d", "pod", "signal-end"], env: [EnvVar(.volume, value: "/data")],
            resources: markerResources, volumeMounts: [dataMount], securityContext: Self.hardened,
            restartPolicy: "Always",
            // The kubelet starts the algorithm once this returned: signal-end then handles SIGTERM, so even an
            // algorithm that ends at once has its end marked (else publish would wait for a mark that never comes).
            lifecycle: Lifecycle(
                postStart: LifecycleHandler(
                    exec: ExecAction(command: ["c2d", "pod", "signal-end", "--wait-until-ready"]))))
        // Relays algorithm.log to its own container log (live logs; the archive when publish failed): it only
        // reads the logs directory, and runs outside the algorithm's container, so nothing is added to the
        // algorithm's process tree, image or memory.
        let algorithmLog = Container(
            name: ClusterNaming.Container.algorithmLog, image: configuration.podImage,
            command: ["c2d", "pod", "relay-log"],
            env: [EnvVar(.relayedLog, value: "/data/logs/algorithm.log")],
            resources: markerResources,
            volumeMounts: [
                VolumeMount(name: ClusterNaming.dataVolume, mountPath: "/data/logs", readOnly: true, subPath: "logs")
            ],
            securityContext: Self.hardened, restartPolicy: "Always")
        let claim = EphemeralVolumeSource(
            volumeClaimTemplate: .init(
                metadata: ObjectMeta(labels: labels(nil)),
                spec: .init(
                    accessModes: ["ReadWriteOnce"],
                    resources: VolumeResourceRequirements(requests: ["storage": "\(max(1, environment.diskMiB))Mi"]),
                    storageClassName: configuration.storageClassName)))
        // The log relay before signal-end: the kubelet stops sidecars in reverse order, so signal-end marks the end
        // (publish waits for it) without waiting for the relay's last copy.
        var pod = hardenedPod(
            containers: [algorithmContainer()], initContainers: [awaitInputs, algorithmLog, signalEnd],
            volumes: [Volume(name: ClusterNaming.dataVolume, ephemeral: claim)])
        // A backstop (the pod's clock includes waiting for the inputs); the monitor ends the algorithm at its limit.
        pod.activeDeadlineSeconds = configuration.configureDeadlineSeconds + algorithmDeadlineSeconds
        pod.nodeSelector = AlgorithmPlacement.of(job, environment: environment).nodeSelector
        if !environment.imagePullSecrets.isEmpty {
            pod.imagePullSecrets = environment.imagePullSecrets.map { LocalObjectReference(name: $0) }
        }
        var labels = labels(.algorithm)
        labels[ClusterNaming.networkLabel] = algorithmHasNetwork ? "allowed" : "none"
        return Pod(
            metadata: ObjectMeta(
                name: algorithmPodName, namespace: configuration.namespace, labels: labels, ownerReferences: [owner]),
            spec: pod)
    }

    /// The consumer's algorithm: its image, its entrypoint with `$ALGO` set and its output going to
    /// `/data/logs/algorithm.log` (the publish step uploads it, as on the local executor), inputs read-only,
    /// requests = limits.
    private func algorithmContainer() -> Container {
        let algorithm = job.workflow.stage?.algorithm
        let inputDIDs = (job.workflow.stage?.input ?? []).enumerated().map {
            WorkflowValidator.inputDirectoryName($0.element, position: $0.offset)
        }
        let dids = String(decoding: (try? JSONEncoder().encode(inputDIDs)) ?? Data("[]".utf8), as: UTF8.self)
        var requested: [String: Double] = [:]
        for resource in job.workflow.stage?.compute?.resources ?? [] { requested[resource.id] = resource.amount }
        let cpus = min(environment.cpus, requested["cpu"] ?? environment.cpus)
        let amounts = ["cpu": Self.quantity(cpus), "memory": "\(algorithmMemoryMiB)Mi"].merging(
            AlgorithmPlacement.of(job, environment: environment).extendedResources
        ) { $1 }
        let entrypoint = algorithm?.container?.entrypoint ?? ""
        let volume = ClusterNaming.dataVolume
        return Container(
            name: ClusterNaming.Container.algorithm, image: algorithmImage,
            command: ["/bin/sh", "-c", "exec >>/data/logs/algorithm.log 2>&1\n" + entrypoint],
            env: [
                EnvVar(name: "C2D_JOB_ID", value: job.id.description),
                EnvVar(name: "VOLUME", value: "/data"),
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
                VolumeMount(name: volume, mountPath: "/data/inputs", readOnly: true, subPath: "inputs"),
                VolumeMount(
                    name: volume, mountPath: "/data/transformations", readOnly: true, subPath: "transformations"),
                VolumeMount(name: volume, mountPath: "/data/ddos", readOnly: true, subPath: "ddos"),
                VolumeMount(name: volume, mountPath: "/data/outputs", subPath: "outputs"),
                VolumeMount(name: volume, mountPath: "/data/logs", subPath: "logs"),
            ],
            securityContext: Self.hardened)
    }

    // MARK: The namespace's policy (created once by each worker at start, not per job)

    /// Denies every algorithm pod labelled `c2d.io/network=none` all ingress and egress.
    package static func algorithmIsolation(namespace: String) -> NetworkPolicy {
        algorithmPolicy(algorithmIsolationName, namespace: namespace, network: "none", egress: [])
    }

    /// A namespace policy over c2d's algorithm pods with one `c2d.io/network` label: no ingress, `egress` only.
    private static func algorithmPolicy(
        _ name: String, namespace: String, network: String, egress: [NetworkPolicy.EgressRule]
    ) -> NetworkPolicy {
        NetworkPolicy(
            metadata: ObjectMeta(
                name: name, namespace: namespace, labels: [ClusterNaming.managedByLabel: ClusterNaming.managedByValue]),
            spec: .init(
                podSelector: LabelSelector(matchLabels: [
                    ClusterNaming.managedByLabel: ClusterNaming.managedByValue,
                    ClusterNaming.roleLabel: ClusterNaming.Role.algorithm.rawValue,
                    ClusterNaming.networkLabel: network,
                ]), policyTypes: ["Ingress", "Egress"], ingress: [], egress: egress))
    }

    package static let algorithmIsolationName = "c2d-algorithm-isolation"

    /// Lets algorithm pods labelled `c2d.io/network=allowed` reach DNS and public addresses only: no ingress, and
    /// nothing cluster-internal, private or link-local (where cloud metadata answers), as the io pods' `c2d-io`
    /// policy in deploy/ and the local executor's sandbox network.
    package static func algorithmEgress(namespace: String) -> NetworkPolicy {
        let dns = NetworkPolicy.Peer(
            podSelector: LabelSelector(matchLabels: ["k8s-app": "kube-dns"]),
            namespaceSelector: LabelSelector(matchLabels: ["kubernetes.io/metadata.name": "kube-system"]))
        return algorithmPolicy(
            algorithmEgressName, namespace: namespace, network: "allowed",
            egress: [
                .init(
                    to: [dns], ports: [.init(protocol: "UDP", port: .int(53)), .init(protocol: "TCP", port: .int(53))]),
                .init(to: [
                    .init(ipBlock: .init(cidr: "0.0.0.0/0", except: nonPublicIPv4)),
                    .init(ipBlock: .init(cidr: "::/0", except: nonPublicIPv6)),
                ]),
            ])
    }

    package static let algorithmEgressName = "c2d-algorithm-egress"

    /// Private, shared (CGNAT), link-local and loopback ranges: pod and service networks live in the first ones,
    /// cloud metadata services at 169.254.169.254.
    package static let nonPublicIPv4 = [
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8",
    ]
    /// Unique local, link-local and loopback, the local-use NAT64 prefix, and the non-public IPv4 ranges in the
    /// well-known NAT64 prefix 64:ff9b::/96 (RFC 6052): on an IPv6-only cluster a NAT64 gateway would carry
    /// 64:ff9b::a00:1 to 10.0.0.1. IPv4-mapped forms (::ffff:0:0/96) are not listed: Kubernetes reads them as IPv4
    /// addresses, which the IPv4 rule covers.
    package static let nonPublicIPv6 =
        ["fc00::/7", "fe80::/10", "::1/128", "64:ff9b:1::/48"] + nonPublicIPv4.map(nat64)

    /// `a.b.c.d/n` inside 64:ff9b::/96, as `64:ff9b::abcd:abcd/(96 + n)`.
    static func nat64(_ ipv4: String) -> String {
        let parts = ipv4.split(separator: "/")
        let octets = parts[0].split(separator: ".").compactMap { Int($0) }
        precondition(parts.count == 2 && octets.count == 4, "not an IPv4 network: \(ipv4)")
        let high = String(octets[0] << 8 | octets[1], radix: 16)
        let low = String(octets[2] << 8 | octets[3], radix: 16)
        return "64:ff9b::\(high):\(low)/\(96 + (Int(parts[1]) ?? 32))"
    }

    /// The namespace's policies every worker makes sure of at start.
    package static func namespacePolicies(namespace: String) -> [NetworkPolicy] {
        [algorithmIsolation(namespace: namespace), algorithmEgress(namespace: namespace)]
    }

    // MARK: Pieces

    private func hardenedPod(containers: [Container], initContainers: [Container], volumes: [Volume]) -> PodSpec {
        PodSpec(
            containers: containers, initContainers: initContainers, volumes: volumes, restartPolicy: "Never",
            automountServiceAccountToken: false,
            securityContext: PodSecurityContext(
                runAsNonRoot: true, runAsUser: configuration.runAsUser, runAsGroup: configuration.runAsUser,
                fsGroup: configuration.runAsUser, seccompProfile: SeccompProfile(type: "RuntimeDefault")),
            enableServiceLinks: false)
    }

    static let hardened = SecurityContext(
        runAsNonRoot: true, allowPrivilegeEscalation: false, privileged: false,
        capabilities: Capabilities(drop: ["ALL"]), seccompProfile: SeccompProfile(type: "RuntimeDefault"))

    private func stepEnvironment(token: String) -> [EnvVar] {
        [
            EnvVar(.jobID, value: job.id.description),
            EnvVar(.attempt, value: String(job.attempt)),
            EnvVar(.volume, value: "/data"),
            EnvVar(.resultsURL, value: configuration.resultsURL),
            EnvVar(.uploadToken, value: token),
        ]
    }

    /// The bucket's settings and credentials, for a publish step that uploads straight to S3; none otherwise.
    private var directUploadEnvironment: [EnvVar] {
        guard let upload = configuration.directUpload else { return [] }
        return upload.variables.sorted { $0.key < $1.key }.map { EnvVar(name: $0.key, value: $0.value) }
            + KubernetesExecutorConfiguration.DirectUpload.credentialKeys.map {
                EnvVar(
                    name: $0.key,
                    valueFrom: EnvVarSource(
                        secretKeyRef: .init(name: upload.credentialsSecret, key: $0.key, optional: $0.optional)))
            }
    }

    /// The configure and publish steps are c2d's own code: small, fixed requests.
    private var stepResources: ResourceRequirements {
        let amounts = ["cpu": "500m", "memory": "256Mi"]
        return ResourceRequirements(limits: amounts, requests: amounts)
    }

    /// `await-inputs`, `signal-end` and `algorithm-log` only watch and copy files.
    private var markerResources: ResourceRequirements {
        let amounts = ["cpu": "10m", "memory": "64Mi"]
        return ResourceRequirements(limits: amounts, requests: amounts)
    }

    /// CPU as a Kubernetes quantity: whole cores as integers, fractions in millicores.
    static func quantity(_ cores: Double) -> String {
        let millicores = Int((cores * 1000).rounded())
        return millicores % 1000 == 0 ? String(millicores / 1000) : "\(millicores)m"
    }
}

extension EnvVar {
    /// A variable of c2d's own pod steps.
    fileprivate init(_ variable: ClusterNaming.PodVariable, value: String) {
        self.init(name: variable.rawValue, value: value)
    }
}
