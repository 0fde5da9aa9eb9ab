import Foundation
import NIOCore
import Testing

@testable import Kubernetes

@Suite struct ModelTests {
    func json(_ value: some Encodable) throws -> [String: Any] {
        let data = try KubernetesJSON.makeEncoder().encode(value)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func jobEncodesApiVersionKindAndOmitsNils() throws {
        let job = Job(
            metadata: ObjectMeta(name: "c2d-1-0-algorithm", labels: ["app.kubernetes.io/managed-by": "c2d"]),
            spec: JobSpec(
                template: PodTemplateSpec(
                    spec: PodSpec(
                        containers: [
                            Container(
                                name: "algorithm", image: "python:3.12", command: ["python", "/data/a.py"],
                                resources: ResourceRequirements(limits: ["cpu": "1"], requests: ["cpu": "1"]),
                                securityContext: SecurityContext(
                                    allowPrivilegeEscalation: false, capabilities: Capabilities(drop: ["ALL"]),
                                    seccompProfile: .runtimeDefault))
                        ],
                        restartPolicy: "Never", automountServiceAccountToken: false)),
                backoffLimit: 0, activeDeadlineSeconds: 3600))
        let object = try json(job)
        #expect(object["apiVersion"] as? String == "batch/v1")
        #expect(object["kind"] as? String == "Job")
        #expect(object["status"] == nil)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(Set(metadata.keys) == ["name", "labels"])
        let spec = try #require(object["spec"] as? [String: Any])
        #expect(Set(spec.keys) == ["template", "backoffLimit", "activeDeadlineSeconds"])
        let template = try #require(spec["template"] as? [String: Any])
        #expect(Set(template.keys) == ["spec"])
        let podSpec = try #require(template["spec"] as? [String: Any])
        #expect(Set(podSpec.keys) == ["containers", "restartPolicy", "automountServiceAccountToken"])
        let container = try #require((podSpec["containers"] as? [[String: Any]])?.first)
        #expect(Set(container.keys) == ["name", "image", "command", "resources", "securityContext"])
        let securityContext = try #require(container["securityContext"] as? [String: Any])
        #expect((securityContext["seccompProfile"] as? [String: Any])?["type"] as? String == "RuntimeDefault")
        #expect((securityContext["capabilities"] as? [String: Any])?["drop"] as? [String] == ["ALL"])
    }

    @Test func secretDataIsBase64() throws {
        let secret = Secret(metadata: ObjectMeta(name: "s"), data: ["workflow.json": Data("{}".utf8)])
        let object = try json(secret)
        #expect((object["data"] as? [String: String])?["workflow.json"] == "e30=")
        #expect(object["kind"] as? String == "Secret")
        #expect(object["apiVersion"] as? String == "v1")
        let decoded = try KubernetesJSON.makeDecoder().decode(
            Secret.self, from: Data(#"{"metadata":{"name":"s"},"data":{"k":"aGk="}}"#.utf8))
        #expect(decoded.data?["k"] == Data("hi".utf8))
    }

    @Test func mergePatchEncodesNullToRemoveAKey() throws {
        let patch: [String: [String: [String: String?]]] = ["metadata": ["labels": ["gone": nil, "kept": "yes"]]]
        let text = String(decoding: try KubernetesJSON.makeEncoder().encode(patch), as: UTF8.self)
        #expect(text.contains(#""gone":null"#))
        #expect(text.contains(#""kept":"yes""#))
    }

    @Test func podWithOOMKilledContainerDecodes() throws {
        let pod = try KubernetesJSON.makeDecoder().decode(Pod.self, from: Data(Fixtures.oomKilledPod.utf8))
        #expect(pod.metadata.name == "c2d-7-0-algorithm-x2k9p")
        #expect(pod.metadata.ownerReferences?.first?.kind == "Job")
        #expect(pod.metadata.ownerReferences?.first?.controller == true)
        #expect(pod.status?.phase == "Failed")
        let status = try #require(pod.status?.containerStatuses?.first)
        #expect(status.restartCount == 0)
        #expect(status.ready == false)
        let terminated = try #require(status.state?.terminated)
        #expect(terminated.exitCode == 137)
        #expect(terminated.reason == "OOMKilled")
        #expect(terminated.finishedAt == Date(timeIntervalSince1970: 1_767_225_610))
        #expect(pod.status?.initContainerStatuses?.first?.state?.terminated?.reason == "Completed")
        #expect(pod.spec?.volumes?.map(\.name) == ["data", "workflow"])
        #expect(pod.status?.conditions?.contains { $0.type == "DisruptionTarget" } == false)
    }

    @Test func jobConditionsDecode() throws {
        let decoder = KubernetesJSON.makeDecoder()
        let complete = try decoder.decode(Job.self, from: Data(Fixtures.job(condition: "Complete").utf8))
        #expect(complete.status?.isFinished == true)
        #expect(
            complete.status?.condition("Complete")?.lastTransitionTime == Date(timeIntervalSince1970: 1_767_225_600))
        #expect(complete.status?.condition("Failed") == nil)
        #expect(complete.spec?.podFailurePolicy?.rules.first?.onExitCodes?.values == [42])

        let failed = try decoder.decode(Job.self, from: Data(Fixtures.job(condition: "Failed").utf8))
        #expect(failed.status?.condition("Failed")?.reason == "BackoffLimitExceeded")
        #expect(failed.status?.failed == 1)
    }

    struct JobSummary: Decodable, Sendable {
        struct Metadata: Decodable, Sendable {
            var uid: String
            var resourceVersion: String
            var labels: [String: String]?
        }
        var metadata: Metadata
    }

    @Test func listDecodesIntoAProjection() throws {
        let list = """
            {"kind":"JobList","apiVersion":"batch/v1",
             "metadata":{"resourceVersion":"900","continue":"abc","remainingItemCount":1},
             "items":[\(Fixtures.job(condition: "Complete"))]}
            """
        let page = try KubernetesJSON.makeDecoder().decode(ObjectList<JobSummary>.self, from: Data(list.utf8))
        #expect(page.metadata.continue == "abc")
        #expect(page.metadata.resourceVersion == "900")
        #expect(page.items.first?.metadata.uid == "0b5c4f3e")
        #expect(page.items.first?.metadata.labels?["c2d.io/step"] == "algorithm")

        let empty = try KubernetesJSON.makeDecoder().decode(
            ObjectList<Job>.self, from: Data(#"{"metadata":{"resourceVersion":"1"},"items":null}"#.utf8))
        #expect(empty.items.isEmpty)
    }

    @Test func resourcePaths() {
        #expect(Job.resource.collectionPath(namespace: "c2d") == "/apis/batch/v1/namespaces/c2d/jobs")
        #expect(Pod.resource.objectPath(name: "p", namespace: "c2d") == "/api/v1/namespaces/c2d/pods/p")
        #expect(NetworkPolicy.resource.collectionPath(namespace: nil) == "/apis/networking.k8s.io/v1/networkpolicies")
        #expect(PersistentVolumeClaim.resource.apiVersion == "v1")
    }

    @Test func ownerReferenceNeedsAStoredOwner() throws {
        var secret = Secret(metadata: ObjectMeta(name: "c2d-7"))
        #expect(throws: KubernetesError.self) { try OwnerReference(to: secret) }
        secret.metadata.uid = "u-1"
        let reference = try OwnerReference(to: secret, controller: true)
        #expect(
            reference == OwnerReference(apiVersion: "v1", kind: "Secret", name: "c2d-7", uid: "u-1", controller: true))
    }

    @Test func networkPolicyDenyingEgress() throws {
        let policy = NetworkPolicy(
            metadata: ObjectMeta(name: "c2d-7-deny-egress"),
            spec: .init(podSelector: LabelSelector(matchLabels: ["c2d.io/job-id": "7"]), policyTypes: ["Egress"]))
        let object = try json(policy)
        let spec = try #require(object["spec"] as? [String: Any])
        #expect(Set(spec.keys) == ["podSelector", "policyTypes"])
        #expect(object["apiVersion"] as? String == "networking.k8s.io/v1")
    }
}

@Suite struct WatchEventTests {
    let decoder = KubernetesJSON.makeDecoder()

    func event<T: Decodable & Sendable>(_ line: String, as type: T.Type) throws(KubernetesError) -> WatchEvent<T> {
        try WatchEventDecoder.decode(ByteBuffer(string: line), as: type, decoder: decoder, context: "watch jobs")
    }

    @Test func addedAndModifiedCarryTheObject() throws {
        let added = try event(#"{"type":"ADDED","object":\#(Fixtures.job(condition: "Complete"))}"#, as: Job.self)
        guard case .added(let job) = added else { Issue.record("expected ADDED, got \(added)"); return }
        #expect(job.metadata.name == "c2d-7-0-algorithm")
        let modified = try event(
            #"{"type":"MODIFIED","object":\#(Fixtures.job(condition: "Failed"))}"#, as: ModelTests.JobSummary.self)
        #expect(modified.object?.metadata.resourceVersion == "812")
    }

    @Test func bookmarkDecodesEvenForAStrictProjection() throws {
        let line =
            #"{"type":"BOOKMARK","object":{"kind":"Job","apiVersion":"batch/v1","metadata":{"resourceVersion":"12345"}}}"#
        let bookmark = try event(line, as: ModelTests.JobSummary.self)
        guard case .bookmark(let version) = bookmark else { Issue.record("expected BOOKMARK"); return }
        #expect(version == "12345")
    }

    @Test func expiredResourceVersionSurfacesAsGone() {
        let line = """
            {"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",\
            "message":"too old resource version: 1 (5000)","reason":"Expired","code":410}}
            """
        let error = #expect(throws: KubernetesError.self) { try event(line, as: Job.self) }
        #expect(error?.code == .gone)
        #expect(error?.httpStatus == 410)
        #expect(error?.message.contains("too old resource version") == true)
    }

    @Test func otherErrorsKeepTheirCode() {
        let line = #"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"boom","code":500}}"#
        let error = #expect(throws: KubernetesError.self) { try event(line, as: Job.self) }
        #expect(error?.code == .serverError)
    }

    @Test func garbageIsADecodingError() {
        let error = #expect(throws: KubernetesError.self) { try event("{not json", as: Job.self) }
        #expect(error?.code == .decoding)
    }
}
