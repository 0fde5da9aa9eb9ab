/// Where workers run jobs: which images a workflow may name depends on it.
package enum ExecutorKind: String, Sendable, Hashable, Codable {
    /// bubblewrap on the worker's host; images come from OCI layouts the operator provides.
    case local
    /// Kubernetes pods; the cluster pulls images.
    case kubernetes
}

/// One container image an environment provides (its `images` list), for workflows that name it in
/// `algorithm.container.image` and `tag`.
///
/// With the local executor an image is run from an OCI image layout on the worker (`layout`, e.g. made with
/// `skopeo copy docker://python:3.11-slim oci:/srv/c2d/images/python:3.11` on a machine that reaches a registry):
/// the worker unpacks it once (`umoci`) and uses its root filesystem as the sandbox's root. Or the operator may
/// declare, with `host`, that workflows naming the image run on the worker's own system; that is shown in
/// `GET /v1/environments` and in the job's configure log, never silent. With Kubernetes a non-empty `images` list is
/// an allow-list (the cluster pulls the image; `layout` and `host` do not apply).
package struct EnvironmentImage: Sendable, Hashable, Codable {
    /// The name as workflows write it, e.g. `python` or `registry.example.org/team/tool`; compared exactly.
    package var image: String
    /// The tag; absent matches any tag. A workflow without a tag asks for `latest`.
    package var tag: String?
    /// Local executor: directory of an OCI image layout, absolute or relative to `C2D_IMAGES_DIR`.
    package var layout: String?
    /// Local executor: the image's reference (tag) inside the layout. Default: the tag the workflow asked for.
    package var reference: String?
    /// The manifest digest (`sha256:<hex>`) the image must have. A workflow's `container.checksum` must then equal
    /// it; with a layout the worker also checks the layout holds exactly this manifest.
    package var digest: String?
    /// Local executor: run workflows naming this image on the worker's own system (no image root). Default false.
    package var host: Bool?

    package init(
        image: String, tag: String? = nil, layout: String? = nil, reference: String? = nil, digest: String? = nil,
        host: Bool? = nil
    ) {
        self.image = image
        self.tag = tag
        self.layout = layout
        self.reference = reference
        self.digest = digest
        self.host = host
    }

    /// Whether this entry stands for `image:tag`.
    package func matches(image name: String, tag requested: String) -> Bool {
        image == name && (tag == nil || tag == requested)
    }
}

/// How a job's image will be honoured.
package enum ImageDecision: Sendable, Hashable {
    /// The workflow names no image: the local executor runs it on the worker's own system (Kubernetes runs
    /// ``ImagePolicy/kubernetesDefaultImage``).
    case workerSystem
    /// Run in the root filesystem of this image, from its OCI layout at `reference`; `checksum` is the digest the
    /// workflow pinned, if any, to be checked against the layout.
    case layout(EnvironmentImage, reference: String, checksum: String?)
    /// Run on the worker's own system, as the environment declares for this image.
    case hostMapped(EnvironmentImage)
    /// The cluster pulls the image (Kubernetes): the workflow's, or ``ImagePolicy/kubernetesDefaultImage``.
    case cluster
}

/// Decides whether an environment can honour a workflow's image, and how: the same pure decision at submit (a
/// refusal is a 400 before anything is written) and on the worker (which never runs a job in another image than
/// it asked for: an image it cannot provide ends the job with status 11).
package enum ImagePolicy {
    /// The image a Kubernetes algorithm pod runs when the workflow names none (with the workflow's `tag`, default
    /// `latest`). It is held to the environment's allow-list like a named image: an environment whose `images` do
    /// not allow it refuses such workflows at submit (`image_not_allowed`), as the local executor refuses an image
    /// it does not provide.
    package static let kubernetesDefaultImage = "python"

    package static func decide(
        _ container: Workflow.Container?, environment: ComputeEnvironment, executor: ExecutorKind
    ) throws(SubmissionError) -> ImageDecision {
        let named = container?.image.flatMap { $0.isEmpty ? nil : $0 }
        guard let name = named ?? (executor == .kubernetes ? kubernetesDefaultImage : nil) else { return .workerSystem }
        let tag = container?.tag.flatMap { $0.isEmpty ? nil : $0 } ?? "latest"
        let checksum = try normalizedDigest(container?.checksum)
        let candidates = environment.images.filter { $0.matches(image: name, tag: tag) }
        // An entry for exactly this tag wins over one for any tag.
        let entry = candidates.first { $0.tag != nil } ?? candidates.first
        if executor == .kubernetes {
            guard !environment.images.isEmpty else { return .cluster }
            guard let entry else {
                var refusal = notAllowed(name, tag, environment)
                if named == nil {
                    refusal.message += "; a workflow without container.image runs '\(name)' on Kubernetes"
                }
                throw refusal
            }
            try checkPinned(checksum, entry, name: name, tag: tag)
            return .cluster
        }
        guard let entry else {
            throw SubmissionError(
                code: "image_not_available",
                message: "environment '\(environment.id)' cannot run image '\(name):\(tag)': "
                    + (environment.images.isEmpty
                        ? "it provides no container images; omit container.image to run on the worker's own system"
                        : "it provides \(listed(environment))")
                    + ", or ask the operator to add the image to the environment's 'images'")
        }
        try checkPinned(checksum, entry, name: name, tag: tag)
        if let layout = entry.layout, !layout.isEmpty {
            return .layout(entry, reference: entry.reference ?? tag, checksum: checksum)
        }
        if entry.host == true {
            if let checksum, entry.digest == nil {
                throw SubmissionError(
                    code: "image_checksum_unverifiable",
                    message: "environment '\(environment.id)' runs '\(name):\(tag)' on the worker's own system, "
                        + "which cannot be checked against container.checksum \(checksum); omit the checksum")
            }
            return .hostMapped(entry)
        }
        throw SubmissionError(
            code: "image_not_available",
            message: "environment '\(environment.id)' lists image '\(name)' without a 'layout' or 'host'; "
                + "ask the operator to fix the environment's definition")
    }

    /// `sha256:<64 hex>`, lowercase; bare hex gets the prefix. Nil for no checksum.
    package static func normalizedDigest(_ text: String?) throws(SubmissionError) -> String? {
        guard let text, !text.isEmpty else { return nil }
        let lowered = text.lowercased()
        let hex = lowered.hasPrefix("sha256:") ? String(lowered.dropFirst(7)) : lowered
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else {
            throw SubmissionError(
                code: "invalid_image_checksum", message: "container.checksum must be 'sha256:' and 64 hex digits")
        }
        return "sha256:" + hex
    }

    private static func checkPinned(
        _ checksum: String?, _ entry: EnvironmentImage, name: String, tag: String
    ) throws(SubmissionError) {
        guard let checksum, let digest = try normalizedDigest(entry.digest) else { return }
        guard checksum == digest else {
            throw SubmissionError(
                code: "image_digest_mismatch",
                message: "container.checksum \(checksum) is not the digest of '\(name):\(tag)' here (\(digest))")
        }
    }

    private static func notAllowed(_ name: String, _ tag: String, _ environment: ComputeEnvironment) -> SubmissionError
    {
        SubmissionError(
            code: "image_not_allowed",
            message: "environment '\(environment.id)' does not run image '\(name):\(tag)'; it allows "
                + listed(environment))
    }

    private static func listed(_ environment: ComputeEnvironment) -> String {
        environment.images.prefix(10).map { "\($0.image):\($0.tag ?? "*")" }.joined(separator: ", ")
            + (environment.images.count > 10 ? ", …" : "")
    }
}
