import Domain
import Foundation
import Testing

/// The image decision, as a table: what an environment can honour, per executor.
@Suite("Image policy")
struct ImagePolicyTests {
    static let digest = "sha256:" + String(repeating: "ab", count: 32)
    static let other = "sha256:" + String(repeating: "cd", count: 32)

    static func environment(_ images: [EnvironmentImage]) -> ComputeEnvironment {
        var environment = ComputeEnvironment(id: "env")
        environment.images = images
        return environment
    }

    static func container(_ image: String?, _ tag: String? = nil, checksum: String? = nil) -> Workflow.Container {
        Workflow.Container(entrypoint: "run", image: image, tag: tag, checksum: checksum)
    }

    static let python311 = EnvironmentImage(image: "python", tag: "3.11", layout: "python-3.11")
    static let pythonAny = EnvironmentImage(image: "python", layout: "python", reference: "stable")
    static let hostPython = EnvironmentImage(image: "python", host: true)

    @Test(
        "decisions",
        arguments: [
            // No image: the worker's own system locally, the cluster's business on Kubernetes.
            (container(nil), [EnvironmentImage](), ExecutorKind.local, ImageDecision.workerSystem),
            (container(""), [], .local, .workerSystem),
            (container(nil), [], .kubernetes, .cluster),
            // No image on Kubernetes runs the default image, which an allow-list must allow like a named one.
            (container(nil), [EnvironmentImage(image: "python")], .kubernetes, .cluster),
            (container(""), [python311, EnvironmentImage(image: "python", tag: "latest")], .kubernetes, .cluster),
            // A listed layout; an exact tag wins over any tag; a missing tag is "latest".
            (
                container("python", "3.11"), [pythonAny, python311], .local,
                .layout(python311, reference: "3.11", checksum: nil)
            ),
            (
                container("python", "3.12"), [python311, pythonAny], .local,
                .layout(pythonAny, reference: "stable", checksum: nil)
            ),
            (
                container("python"), [EnvironmentImage(image: "python", layout: "p")], .local,
                .layout(EnvironmentImage(image: "python", layout: "p"), reference: "latest", checksum: nil)
            ),
            (
                container("python", "3.11", checksum: String(repeating: "AB", count: 32)), [python311], .local,
                .layout(python311, reference: "3.11", checksum: digest)
            ),
            // Mapped to the host by the operator.
            (container("python", "3.9"), [hostPython], .local, .hostMapped(hostPython)),
            // Kubernetes: an empty list allows any image; a listed one is allowed.
            (container("registry.example/tool", "1"), [], .kubernetes, .cluster),
            (container("python", "3.11"), [python311], .kubernetes, .cluster),
        ])
    func decisions(
        container: Workflow.Container, images: [EnvironmentImage], executor: ExecutorKind, expected: ImageDecision
    ) throws {
        #expect(
            try ImagePolicy.decide(container, environment: Self.environment(images), executor: executor) == expected)
    }

    @Test(
        "refusals",
        arguments: [
            (container("python", "3.11"), [EnvironmentImage](), ExecutorKind.local, "image_not_available"),
            (container("node", "20"), [python311], .local, "image_not_available"),
            (container("python", "3.12"), [python311], .local, "image_not_available"),
            (container("python"), [EnvironmentImage(image: "python")], .local, "image_not_available"),
            (container("node", "20"), [python311], .kubernetes, "image_not_allowed"),
            (container(nil), [python311], .kubernetes, "image_not_allowed"),
            (container(""), [EnvironmentImage(image: "node")], .kubernetes, "image_not_allowed"),
            (container("python", "3.11", checksum: "sha256:123"), [python311], .local, "invalid_image_checksum"),
            (
                container("python", "3.11", checksum: other),
                [EnvironmentImage(image: "python", tag: "3.11", layout: "l", digest: digest)], .local,
                "image_digest_mismatch"
            ),
            (
                container("python", "3.11", checksum: other),
                [EnvironmentImage(image: "python", tag: "3.11", digest: digest)], .kubernetes, "image_digest_mismatch"
            ),
            (container("python", "3.11", checksum: digest), [hostPython], .local, "image_checksum_unverifiable"),
        ])
    func refusals(
        container: Workflow.Container, images: [EnvironmentImage], executor: ExecutorKind, code: String
    ) {
        #expect {
            try ImagePolicy.decide(container, environment: Self.environment(images), executor: executor)
        } throws: { error in
            (error as? SubmissionError)?.code == code
        }
    }

    @Test("a workflow without an image is refused on Kubernetes when the allow-list lacks the default, saying why")
    func defaultImageRefusal() {
        #expect {
            try ImagePolicy.decide(
                Self.container(nil), environment: Self.environment([Self.python311]), executor: .kubernetes)
        } throws: { error in
            let refusal = error as? SubmissionError
            return refusal?.code == "image_not_allowed"
                && refusal?.message
                    == "environment 'env' does not run image 'python:latest'; it allows python:3.11; a workflow "
                    + "without container.image runs 'python' on Kubernetes"
        }
    }

    @Test("environments decode images and imagePullSecrets, and keep them through encoding")
    func decoding() throws {
        let json = """
            {"id": "e", "images": [{"image": "python", "tag": "3.11", "layout": "py", "digest": "\(Self.digest)"},
                                   {"image": "node", "host": true}],
             "imagePullSecrets": ["registry-credentials"]}
            """
        let environment = try JSONDecoder().decode(ComputeEnvironment.self, from: Data(json.utf8))
        #expect(environment.images.count == 2)
        #expect(environment.images[0].digest == Self.digest)
        #expect(environment.images[1].host == true)
        #expect(environment.imagePullSecrets == ["registry-credentials"])
        let again = try JSONDecoder().decode(ComputeEnvironment.self, from: JSONEncoder().encode(environment))
        #expect(again == environment)
        #expect(try JSONDecoder().decode(ComputeEnvironment.self, from: Data(#"{"id":"x"}"#.utf8)).images.isEmpty)
    }
}
