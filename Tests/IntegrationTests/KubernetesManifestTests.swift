import ChildProcesses
import Domain
import Foundation
import Kubernetes
import TestSupport
import Testing
import Worker
import Yams

/// Every object the Kubernetes executor creates is valid against the official Kubernetes schemas (PyPI
/// `kubernetes-validate`, strict mode: unknown fields are errors), the algorithm pod is hardened and isolated, and
/// the upload token lives only in the io pod's c2d steps.
@Suite("Kubernetes manifests")
struct KubernetesManifestTests {
    static func manifests(allowNetwork: Bool, raw: Bool) -> JobManifests {
        let algorithm =
            raw
            ? Workflow.Algorithm(
                rawcode: "print(1)", container: .init(entrypoint: "python3 $ALGO", image: "python", tag: "3.12"))
            : Workflow.Algorithm(
                id: "did:op:algo", url: "https://example.org/a.py", checksum: String(repeating: "ab", count: 32),
                container: .init(
                    entrypoint: "node $ALGO", image: "node",
                    checksum: "sha256:" + String(repeating: "cd", count: 32)))
        let workflow = Workflow(stages: [
            .init(
                input: [Workflow.Input(id: "did:op:data", url: ["https://example.org/d.csv"])], algorithm: algorithm,
                compute: .init(maxtime: 120, allowNetwork: allowNetwork))
        ])
        let job = Domain.Job(id: JobID(), environment: "ocean-compute", owner: "o", attempt: 1, workflow: workflow)
        let environment = ComputeEnvironment(
            id: "ocean-compute", maxJobDuration: 600, cpus: 1.5, memoryMiB: 2048, diskMiB: 4096,
            allowNetwork: allowNetwork)
        var environmentWithData = environment
        environmentWithData.dataVolumeClaim = raw ? nil : "publisher-datasets"
        return JobManifests(
            job: job, environment: environmentWithData,
            configuration: KubernetesExecutorConfiguration(namespace: "c2d-jobs"))
    }

    @Test("the attempt's Job, its algorithm pod and the namespace policy pass kubernetes-validate --strict for 1.30")
    func schemas() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-manifests-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let owner = OwnerReference(
            apiVersion: "batch/v1", kind: "Job", name: "owner", uid: UUID().uuidString.lowercased())
        let encoder = KubernetesJSON.makeEncoder()
        var files: [String] = []
        func write(_ object: some Encodable, _ name: String) throws {
            let file = directory.appendingPathComponent("\(name).json")
            try encoder.encode(object).write(to: file)
            files.append(file.path)
        }
        for (index, (network, raw)) in [(false, true), (true, false)].enumerated() {
            let manifests = Self.manifests(allowNetwork: network, raw: raw)
            try write(manifests.rootJob(uploadToken: "c2d_token"), "job-\(index)")
            try write(manifests.algorithmPod(owner: owner), "algorithm-\(index)")
        }
        try write(Self.directUploadManifests().rootJob(uploadToken: "c2d_token"), "job-direct-upload")
        try write(JobManifests.algorithmIsolation(namespace: "c2d-jobs"), "isolation")
        try write(JobManifests.algorithmEgress(namespace: "c2d-jobs"), "egress")
        #expect(files.count == 7)
        let validator = try C2DProcess(
            name: "kubernetes-validate", program: "kubernetes-validate",
            arguments: ["--strict", "--kubernetes-version", "1.30.0"] + files, logDirectory: directory)
        #expect(await validator.waitForExit(timeout: .seconds(120)))
        #expect(
            validator.exitCode == 0,
            "kubernetes-validate (pip install kubernetes-validate) rejected a manifest:\n\(validator.log)")
    }

    @Test("deploy/ passes kubernetes-validate --strict for 1.30")
    func deployment() async throws {
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy")
        let files = try FileManager.default.contentsOfDirectory(atPath: deploy.path).filter { $0.hasSuffix(".yaml") }
            .sorted().map { deploy.appendingPathComponent($0).path }
        #expect(!files.isEmpty)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-deploy-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let validator = try C2DProcess(
            name: "kubernetes-validate", program: "kubernetes-validate",
            arguments: ["--strict", "--kubernetes-version", "1.30.0"] + files, logDirectory: directory)
        #expect(await validator.waitForExit(timeout: .seconds(120)))
        #expect(validator.exitCode == 0, "kubernetes-validate rejected deploy/:\n\(validator.log)")
    }

    /// Every document of every YAML file in deploy/, as plain values.
    static func deployDocuments() throws -> [[String: Any]] {
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy")
        var documents: [[String: Any]] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: deploy.path) where file.hasSuffix(".yaml") {
            let text = try String(contentsOf: deploy.appendingPathComponent(file), encoding: .utf8)
            for document in try Yams.load_all(yaml: text) {
                if let object = document as? [String: Any] { documents.append(object) }
            }
        }
        return documents
    }

    /// The `except` lists of a policy's egress ipBlocks whose cidr is `cidr`.
    static func excepts(_ policy: [String: Any], cidr: String) -> [[String]] {
        let rules = (policy["spec"] as? [String: Any])?["egress"] as? [[String: Any]] ?? []
        return rules.flatMap { $0["to"] as? [[String: Any]] ?? [] }.compactMap { $0["ipBlock"] as? [String: Any] }
            .filter { $0["cidr"] as? String == cidr }.map { $0["except"] as? [String] ?? [] }
    }

    static let privateRanges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]

    @Test("no Role in deploy/ grants anything on Secrets")
    func rolesGrantNoSecrets() throws {
        let roles = try Self.deployDocuments().filter { ["Role", "ClusterRole"].contains($0["kind"] as? String) }
        #expect(roles.count >= 2)
        for role in roles {
            let name = (role["metadata"] as? [String: Any])?["name"] as? String ?? "?"
            let resources = (role["rules"] as? [[String: Any]] ?? []).flatMap { $0["resources"] as? [String] ?? [] }
            #expect(!resources.isEmpty, "\(name) has no rules")
            #expect(!resources.contains { $0 == "secrets" || $0.hasPrefix("secrets/") || $0 == "*" }, "\(name)")
        }
    }

    @Test("pods that may reach the network (io pods, algorithm pods with network allowed) cannot reach private ranges")
    func egressExcludesPrivateRanges() throws {
        let policies = Dictionary(
            try Self.deployDocuments().filter { $0["kind"] as? String == "NetworkPolicy" }.map {
                (($0["metadata"] as? [String: Any])?["name"] as? String ?? "", $0)
            }
        ) { first, _ in first }
        for name in ["c2d-io", JobManifests.algorithmEgressName] {
            let policy = try #require(policies[name], "deploy/ has no NetworkPolicy \(name)")
            let open = Self.excepts(policy, cidr: "0.0.0.0/0")
            #expect(open.count == 1, "\(name): one IPv4 rule to the outside world")
            for except in open {
                for range in Self.privateRanges { #expect(except.contains(range), "\(name) lets pods reach \(range)") }
            }
            for except in Self.excepts(policy, cidr: "::/0") {
                #expect(except.contains("fc00::/7") && except.contains("fe80::/10"), "\(name)")
                // The same private ranges through a NAT64 gateway (64:ff9b::/96): 10/8, 172.16/12, 192.168/16,
                // 169.254/16.
                for range in [
                    "64:ff9b::a00:0/104", "64:ff9b::ac10:0/108", "64:ff9b::c0a8:0/112", "64:ff9b::a9fe:0/112",
                ] {
                    #expect(except.contains(range), "\(name) lets pods reach \(range)")
                }
            }
            let spec = try #require(policy["spec"] as? [String: Any])
            #expect(spec["policyTypes"] as? [String] == ["Ingress", "Egress"])
            #expect((spec["ingress"] as? [Any])?.isEmpty == true, "\(name) allows no ingress")
        }
        let allowed = try #require(policies[JobManifests.algorithmEgressName]?["spec"] as? [String: Any])
        let labels = (allowed["podSelector"] as? [String: Any])?["matchLabels"] as? [String: String]
        #expect(labels?[ClusterNaming.roleLabel] == "algorithm" && labels?[ClusterNaming.networkLabel] == "allowed")

        // The policy every worker makes sure of says the same as deploy/.
        let ensured = try JSONSerialization.jsonObject(
            with: KubernetesJSON.makeEncoder().encode(JobManifests.algorithmEgress(namespace: "c2d-jobs")))
        let mine = try #require(ensured as? [String: Any])
        let deployed = try #require(policies[JobManifests.algorithmEgressName])
        for cidr in ["0.0.0.0/0", "::/0"] {
            #expect(Self.excepts(mine, cidr: cidr) == Self.excepts(deployed, cidr: cidr))
        }
        #expect(
            JobManifests.namespacePolicies(namespace: "c2d-jobs").compactMap(\.metadata.name)
                == [JobManifests.algorithmIsolationName, JobManifests.algorithmEgressName])
    }

    @Test("the algorithm pod is hardened and isolated; network only where allowed and asked for")
    func hardening() throws {
        let owner = OwnerReference(apiVersion: "batch/v1", kind: "Job", name: "o", uid: "u")
        let manifests = Self.manifests(allowNetwork: false, raw: false)
        let pod = manifests.algorithmPod(owner: owner)
        let spec = try #require(pod.spec)
        #expect(pod.metadata.name == ClusterNaming.algorithmPodName(jobID: manifests.job.id, attempt: 1))
        #expect(pod.metadata.ownerReferences == [owner])
        #expect(pod.metadata.labels?[ClusterNaming.managedByLabel] == "c2d")
        #expect(pod.metadata.labels?[ClusterNaming.roleLabel] == "algorithm")
        #expect(pod.metadata.labels?[ClusterNaming.networkLabel] == "none")
        #expect(spec.automountServiceAccountToken == false)
        #expect(spec.enableServiceLinks == false)
        #expect(spec.restartPolicy == "Never")
        #expect(spec.securityContext?.runAsNonRoot == true)
        #expect(spec.securityContext?.seccompProfile?.type == "RuntimeDefault")
        // Init containers in order: wait for the inputs, then the sidecars that relay the algorithm's log and mark
        // its end (stopped in reverse order: the end mark does not wait for the relay's last copy).
        #expect(spec.initContainers?.map(\.name) == ["await-inputs", "algorithm-log", "signal-end"])
        #expect(spec.initContainers?.map(\.restartPolicy) == [nil, "Always", "Always"])
        // The relay sees the logs directory only, read-only, and is as hardened as the algorithm.
        let relay = try #require(spec.initContainers?.first { $0.name == "algorithm-log" })
        #expect(relay.command == ["c2d", "pod", "relay-log"])
        #expect(relay.volumeMounts?.map(\.mountPath) == ["/data/logs"])
        #expect(relay.volumeMounts?.first?.subPath == "logs" && relay.volumeMounts?.first?.readOnly == true)
        #expect(relay.securityContext?.capabilities?.drop == ["ALL"])
        #expect(relay.resources?.limits == relay.resources?.requests)
        let container = try #require(spec.containers.first)
        #expect(spec.containers.count == 1)
        #expect(container.securityContext?.allowPrivilegeEscalation == false)
        #expect(container.securityContext?.capabilities?.drop == ["ALL"])
        #expect(container.resources?.limits == container.resources?.requests)
        #expect(container.resources?.limits?["cpu"] == "1500m")
        #expect(container.resources?.limits?["memory"] == "2048Mi")
        #expect(container.image == "node@sha256:" + String(repeating: "cd", count: 32))
        #expect(container.command?.last?.hasSuffix("node $ALGO") == true)
        let mounts = Dictionary(uniqueKeysWithValues: (container.volumeMounts ?? []).map { ($0.mountPath, $0) })
        #expect(mounts["/data/inputs"]?.readOnly == true)
        #expect(mounts["/data/transformations"]?.readOnly == true)
        #expect(mounts["/data/outputs"]?.readOnly == nil)
        #expect(mounts["/data"] == nil, "the algorithm must never see /data/.c2d or /data/adminlogs")
        // No credentials of any kind: no token, no Secret reference, no service account token.
        let everything = (spec.initContainers ?? []) + spec.containers
        #expect(
            everything.allSatisfy { ($0.env ?? []).allSatisfy { $0.name != "C2D_UPLOAD_TOKEN" && $0.valueFrom == nil } }
        )
        #expect(spec.volumes?.first?.ephemeral?.volumeClaimTemplate.spec.resources?.requests?["storage"] == "4096Mi")

        // The attempt's Job: configure then publish in c2d's image, the token only there.
        let job = manifests.rootJob(uploadToken: "c2d_secret")
        let jobSpec = try #require(job.spec)
        #expect(job.metadata.name == ClusterNaming.attemptName(jobID: manifests.job.id, attempt: 1))
        #expect(jobSpec.backoffLimit == 0)
        #expect(jobSpec.ttlSecondsAfterFinished == 3600)
        let io = try #require(jobSpec.template.spec)
        #expect(io.initContainers?.map(\.name) == ["configure"])
        #expect(io.containers.map(\.name) == ["publish"])
        #expect(jobSpec.template.metadata?.labels?[ClusterNaming.roleLabel] == "io")
        #expect(
            io.volumes?.first?.persistentVolumeClaim?.claimName
                == ClusterNaming.dataClaimName(jobID: manifests.job.id, attempt: 1))
        #expect(
            io.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.first?.topologyKey
                == "kubernetes.io/hostname")
        for container in (io.initContainers ?? []) + io.containers {
            #expect(container.image == "c2d:latest")
            #expect(container.env?.first { $0.name == "C2D_UPLOAD_TOKEN" }?.value == "c2d_secret")
        }
        // The environment's datasets reach configure read-only; publish never sees them.
        #expect(
            io.volumes?.contains {
                $0.persistentVolumeClaim?.claimName == "publisher-datasets"
                    && $0.persistentVolumeClaim?.readOnly == true
            } == true)
        #expect(io.initContainers?.first?.env?.first { $0.name == "C2D_DATA_DIR" }?.value == "/c2d/datasets")
        #expect(io.containers.first?.volumeMounts?.contains { $0.mountPath == "/c2d/datasets" } == false)

        let policy = JobManifests.algorithmIsolation(namespace: "c2d-jobs")
        #expect(policy.spec?.policyTypes == ["Ingress", "Egress"])
        #expect(policy.spec?.egress == [])
        #expect(policy.spec?.ingress == [])
        #expect(policy.spec?.podSelector.matchLabels?[ClusterNaming.networkLabel] == "none")
        let open = Self.manifests(allowNetwork: true, raw: false).algorithmPod(owner: owner)
        #expect(open.metadata.labels?[ClusterNaming.networkLabel] == "allowed")
    }

    @Test("the environment's imagePullSecrets are the algorithm pod's; without them it has none")
    func imagePullSecrets() throws {
        let owner = OwnerReference(apiVersion: "batch/v1", kind: "Job", name: "o", uid: "u")
        let plain = Self.manifests(allowNetwork: false, raw: true)
        #expect(try #require(plain.algorithmPod(owner: owner).spec).imagePullSecrets == nil)
        var environment = plain.environment
        environment.imagePullSecrets = ["registry-a", "registry-b"]
        let manifests = JobManifests(job: plain.job, environment: environment, configuration: plain.configuration)
        let spec = try #require(manifests.algorithmPod(owner: owner).spec)
        #expect(spec.imagePullSecrets?.map(\.name) == ["registry-a", "registry-b"])
    }

    static func directUploadManifests() -> JobManifests {
        let plain = manifests(allowNetwork: false, raw: true)
        var configuration = plain.configuration
        configuration.directUpload = .init(
            variables: ["C2D_RESULT_STORE": "s3", "C2D_S3_BUCKET": "results"], credentialsSecret: "c2d-s3")
        return JobManifests(job: plain.job, environment: plain.environment, configuration: configuration)
    }

    @Test("with direct upload only the publish step gets the bucket's settings, its credentials from the Secret")
    func directUpload() throws {
        let manifests = Self.directUploadManifests()
        let io = try #require(manifests.rootJob(uploadToken: "c2d_token").spec?.template.spec)
        let publish = try #require(io.containers.first { $0.name == ClusterNaming.Container.publish })
        let env = Dictionary(uniqueKeysWithValues: (publish.env ?? []).map { ($0.name, $0) })
        #expect(env["C2D_RESULT_STORE"]?.value == "s3" && env["C2D_S3_BUCKET"]?.value == "results")
        for (key, optional) in [("AWS_ACCESS_KEY_ID", false), ("AWS_SECRET_ACCESS_KEY", false)] {
            let reference = try #require(env[key]?.valueFrom?.secretKeyRef)
            #expect(reference.name == "c2d-s3" && reference.key == key && (reference.optional ?? false) == optional)
            #expect(env[key]?.value == nil)
        }
        #expect(env["AWS_SESSION_TOKEN"]?.valueFrom?.secretKeyRef?.optional == true)
        let configure = try #require(io.initContainers?.first)
        #expect(!(configure.env ?? []).contains { $0.name.hasPrefix("AWS_") || $0.name.hasPrefix("C2D_S3") })
        let owner = OwnerReference(apiVersion: "batch/v1", kind: "Job", name: "o", uid: "u")
        let algorithm = try #require(manifests.algorithmPod(owner: owner).spec)
        for container in algorithm.containers + (algorithm.initContainers ?? []) {
            #expect(!(container.env ?? []).contains { $0.name.hasPrefix("AWS_") || $0.name.hasPrefix("C2D_S3") })
        }
        // Without it, publish uploads through the gateway and sees no bucket.
        let plain = try #require(Self.manifests(allowNetwork: false, raw: true).rootJob(uploadToken: "t").spec)
        #expect(
            !(plain.template.spec?.containers.flatMap { $0.env ?? [] } ?? []).contains { $0.name.hasPrefix("AWS_") })
    }
}
