import ChildProcesses
import Domain
import Foundation
import Kubernetes
import TestSupport
import Testing
import Worker

/// Every object the Kubernetes executor creates is valid against the official Kubernetes schemas (PyPI
/// `kubernetes-validate`, strict mode: unknown fields are errors), and the algorithm pod is hardened.
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
        var configuration = KubernetesExecutorConfiguration(namespace: "c2d-jobs")
        configuration.operatorPrivateKeyHex = String(repeating: "11", count: 32)
        return JobManifests(job: job, environment: environment, configuration: configuration)
    }

    @Test("Secret, volume, network policy and the three step Jobs pass kubernetes-validate --strict for 1.30")
    func schemas() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-manifests-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let owner = OwnerReference(
            apiVersion: "v1", kind: "Secret", name: "owner", uid: UUID().uuidString.lowercased(), controller: true,
            blockOwnerDeletion: true)
        let encoder = KubernetesJSON.makeEncoder()
        var files: [String] = []
        func write(_ object: some Encodable, _ name: String) throws {
            let file = directory.appendingPathComponent("\(name).json")
            try encoder.encode(object).write(to: file)
            files.append(file.path)
        }
        for (index, (network, raw)) in [(false, true), (true, false)].enumerated() {
            let manifests = Self.manifests(allowNetwork: network, raw: raw)
            try write(try manifests.secret(uploadToken: "token"), "secret-\(index)")
            try write(manifests.volume(owner: owner), "volume-\(index)")
            if let policy = manifests.networkPolicy(owner: owner) { try write(policy, "policy-\(index)") }
            for step in ClusterNaming.Step.allCases {
                try write(manifests.stepJob(step, owner: owner), "job-\(step.rawValue)-\(index)")
            }
        }
        #expect(files.count == 11)
        let validator = try C2DProcess(
            name: "kubernetes-validate", program: "kubernetes-validate",
            arguments: ["--strict", "--kubernetes-version", "1.30.0"] + files, logDirectory: directory)
        #expect(await validator.waitForExit(timeout: .seconds(120)))
        #expect(
            validator.exitCode == 0,
            "kubernetes-validate (pip install kubernetes-validate) rejected a manifest:\n\(validator.log)")
    }

    @Test("the algorithm pod is hardened and isolated; network only where allowed and asked for")
    func hardening() throws {
        let owner = OwnerReference(apiVersion: "v1", kind: "Secret", name: "o", uid: "u")
        let manifests = Self.manifests(allowNetwork: false, raw: false)
        let job = manifests.stepJob(.algorithm, owner: owner)
        let spec = try #require(job.spec)
        #expect(spec.backoffLimit == 0)
        #expect(spec.activeDeadlineSeconds == 120)
        #expect(spec.ttlSecondsAfterFinished == nil, "the TTL is set only after the step's log is archived")
        let pod = try #require(spec.template.spec)
        #expect(pod.automountServiceAccountToken == false)
        #expect(pod.restartPolicy == "Never")
        #expect(pod.securityContext?.runAsNonRoot == true)
        #expect(pod.securityContext?.seccompProfile?.type == "RuntimeDefault")
        let container = try #require(pod.containers.first)
        #expect(container.securityContext?.allowPrivilegeEscalation == false)
        #expect(container.securityContext?.capabilities?.drop == ["ALL"])
        #expect(container.resources?.limits == container.resources?.requests)
        #expect(container.resources?.limits?["cpu"] == "1500m")
        #expect(container.resources?.limits?["memory"] == "2048Mi")
        #expect(container.image == "node@sha256:" + String(repeating: "cd", count: 32))
        let mounts = Dictionary(uniqueKeysWithValues: (container.volumeMounts ?? []).map { ($0.mountPath, $0) })
        #expect(mounts["/data/inputs"]?.readOnly == true)
        #expect(mounts["/data/transformations"]?.readOnly == true)
        #expect(mounts["/data/outputs"]?.readOnly == nil)
        #expect(job.metadata.name == ClusterNaming.stepName(jobID: manifests.job.id, attempt: 1, step: .algorithm))
        #expect(job.metadata.labels?[ClusterNaming.managedByLabel] == "c2d")
        #expect(spec.template.metadata?.labels?[ClusterNaming.stepLabel] == "algorithm")

        let policy = try #require(manifests.networkPolicy(owner: owner))
        #expect(policy.spec?.policyTypes == ["Ingress", "Egress"])
        #expect(policy.spec?.egress == [])
        #expect(Self.manifests(allowNetwork: true, raw: false).networkPolicy(owner: owner) == nil)
    }
}
