import Domain
import Foundation
import NIOPosix

/// Settings of the local executor's images.
package struct ImageStoreConfiguration: Sendable, Hashable {
    /// Where an environment image's relative `layout` is found. Default `.data/images`. `C2D_IMAGES_DIR`.
    package var imagesDirectory: URL
    /// Where unpacked root filesystems are kept, one per manifest digest, reused by every job of that image.
    /// Default `.data/image-cache`. `C2D_IMAGE_CACHE_DIR`.
    package var cacheDirectory: URL
    /// umoci, which unpacks an OCI layout into a root filesystem. Default `/usr/bin/umoci` (Debian's `umoci`).
    package var umociPath: String
    /// Longest time one unpack may take. Default 10 minutes.
    package var unpackTimeout: Duration

    package init(
        imagesDirectory: URL = URL(fileURLWithPath: ".data/images"),
        cacheDirectory: URL = URL(fileURLWithPath: ".data/image-cache"), umociPath: String = "/usr/bin/umoci",
        unpackTimeout: Duration = .seconds(600)
    ) {
        self.imagesDirectory = imagesDirectory.standardizedFileURL
        self.cacheDirectory = cacheDirectory.standardizedFileURL
        self.umociPath = umociPath
        self.unpackTimeout = unpackTimeout
    }
}

/// An image ready to be a sandbox's root.
package struct PreparedImage: Sendable, Hashable {
    /// The unpacked root filesystem, with the sandbox's mount points in place.
    package var rootFilesystem: URL
    /// The image's manifest digest, `sha256:<hex>`.
    package var digest: String
    /// `PATH` from the image's configuration, if it sets one.
    package var searchPath: String?
}

/// An image that could not be provided; the job ends with status 11 and this reason.
package struct ImageError: Error, CustomStringConvertible, Sendable, Hashable {
    package var reason: String
    package var description: String { reason }

    package init(_ reason: String) {
        self.reason = reason
    }
}

/// The local executor's images: OCI image layouts the operator provides (no registry is contacted, ever), unpacked
/// once per manifest digest with `umoci unpack` into a cache, and handed to the sandbox as its root.
///
/// The layout's `index.json` names the manifest for the reference; its digest is checked against the environment's
/// pin (`digest`) and the workflow's `container.checksum` before anything runs. Unpacking goes to a temporary
/// directory that is renamed into the cache when complete, so a crash or a concurrent unpack of the same image never
/// leaves a half-made root behind.
package struct ImageStore: Sendable {
    package let configuration: ImageStoreConfiguration
    private let threadPool: NIOThreadPool

    /// Directories the sandbox mounts over; an image may lack them and its root is read-only, so they are made
    /// when the image is unpacked.
    static let mountPoints = [
        "proc", "dev", "tmp", "etc", "data/inputs", "data/transformations", "data/ddos", "data/outputs", "data/logs",
    ]
    /// Files bound over for jobs with network (name resolution).
    static let networkFiles = ["etc/resolv.conf", "etc/hosts"]

    package init(configuration: ImageStoreConfiguration, threadPool: NIOThreadPool = .singleton) {
        self.configuration = configuration
        self.threadPool = threadPool
    }

    /// The root filesystem of `entry` at `reference`, unpacking it first if this digest is not cached yet.
    package func prepare(
        _ entry: EnvironmentImage, reference: String, checksum: String?
    ) async throws(ImageError) -> PreparedImage {
        guard let layoutPath = entry.layout, !layoutPath.isEmpty else {
            throw ImageError("image '\(entry.image)' has no OCI layout on this worker")
        }
        let layout =
            layoutPath.hasPrefix("/")
            ? URL(fileURLWithPath: layoutPath) : configuration.imagesDirectory.appendingPathComponent(layoutPath)
        let digest: String
        do {
            digest = try await threadPool.runIfActive { try Self.manifestDigest(layout: layout, reference: reference) }
        } catch let error as ImageError {
            throw error
        } catch {
            throw ImageError("cannot read the OCI layout of '\(entry.image)': \(error)")
        }
        let pinned: String?
        do {
            pinned = try ImagePolicy.normalizedDigest(entry.digest)
        } catch {
            throw ImageError("the environment pins '\(entry.image)' to an invalid digest")
        }
        if let pinned, pinned != digest {
            throw ImageError(
                "the OCI layout of '\(entry.image)' holds \(digest) at '\(reference)', not the pinned \(pinned)")
        }
        if let checksum, checksum != digest {
            throw ImageError(
                "the workflow asks for '\(entry.image)' with digest \(checksum); this worker has \(digest)")
        }
        let cached = configuration.cacheDirectory.appendingPathComponent(String(digest.dropFirst("sha256:".count)))
        let rootFilesystem = cached.appendingPathComponent("rootfs")
        let complete = cached.appendingPathComponent(".complete")
        if !FileManager.default.fileExists(atPath: complete.path) {
            try await unpack(layout: layout, reference: reference, into: cached)
        }
        let searchPath = try? await threadPool.runIfActive {
            Self.searchPath(bundleConfiguration: cached.appendingPathComponent("config.json"))
        }
        return PreparedImage(rootFilesystem: rootFilesystem, digest: digest, searchPath: searchPath ?? nil)
    }

    private func unpack(layout: URL, reference: String, into cached: URL) async throws(ImageError) {
        let cache = configuration.cacheDirectory
        let temporary = cache.appendingPathComponent(".unpack-\(UUID().uuidString.lowercased())")
        let log = cache.appendingPathComponent(".unpack-\(UUID().uuidString.lowercased()).log")
        do {
            try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        } catch {
            throw ImageError("cannot create the image cache \(cache.path): \(error)")
        }
        let output = open(log.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw ImageError("cannot write \(log.path)") }
        defer {
            close(output)
            try? FileManager.default.removeItem(at: log)
        }
        var arguments = ["unpack"]
        // Unprivileged workers unpack as themselves (files owned by the worker's user); root keeps the image's owners.
        if getuid() != 0 { arguments.append("--rootless") }
        arguments += ["--image", "\(layout.path):\(reference)", temporary.path]
        let ending = await SupervisedProcess.run(
            executable: configuration.umociPath, arguments: arguments, output: output,
            timeLimit: configuration.unpackTimeout)
        guard case .exited(0) = ending else {
            let message = (try? String(contentsOf: log, encoding: .utf8))?.suffix(500) ?? ""
            try? FileManager.default.removeItem(at: temporary)
            if case .failedToStart = ending {
                throw ImageError("cannot run \(configuration.umociPath) (install Debian's 'umoci'): \(ending)")
            }
            throw ImageError("unpacking \(layout.lastPathComponent):\(reference) failed (\(ending)): \(message)")
        }
        do {
            try await threadPool.runIfActive {
                let root = temporary.appendingPathComponent("rootfs")
                for path in Self.mountPoints {
                    try Self.makeDirectory(root, path)
                }
                for path in Self.networkFiles {
                    let file = root.appendingPathComponent(path)
                    if (try? FileManager.default.attributesOfItem(atPath: file.path)) == nil {
                        _ = FileManager.default.createFile(atPath: file.path, contents: nil)
                    }
                }
                _ = FileManager.default.createFile(
                    atPath: temporary.appendingPathComponent(".complete").path, contents: nil)
                // Another job may have unpacked the same digest meanwhile: the first rename wins.
                if rename(temporary.path, cached.path) != 0 {
                    try? FileManager.default.removeItem(at: temporary)
                    guard FileManager.default.fileExists(atPath: cached.appendingPathComponent(".complete").path)
                    else {
                        throw ImageError("cannot move the unpacked image into \(cached.path)")
                    }
                }
            }
        } catch let error as ImageError {
            throw error
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw ImageError("cannot prepare the unpacked image: \(error)")
        }
    }

    /// Creates a mount point inside the root; refuses to follow a link out of it (an image could make `data` a
    /// symbolic link to a host path).
    static func makeDirectory(_ root: URL, _ path: String) throws {
        var current = root
        for component in path.split(separator: "/") {
            current.appendPathComponent(String(component))
            if let type = (try? FileManager.default.attributesOfItem(atPath: current.path))?[.type]
                as? FileAttributeType
            {
                guard type == .typeDirectory else {
                    throw ImageError("the image's /\(path) is not a directory; it cannot be used as a sandbox root")
                }
            } else {
                try FileManager.default.createDirectory(at: current, withIntermediateDirectories: false)
            }
        }
    }

    /// The manifest digest `index.json` gives for `reference` (annotation `org.opencontainers.image.ref.name`).
    static func manifestDigest(layout: URL, reference: String) throws -> String {
        guard FileManager.default.fileExists(atPath: layout.appendingPathComponent("oci-layout").path) else {
            throw ImageError("\(layout.path) is not an OCI image layout (no oci-layout file)")
        }
        let data = try Data(contentsOf: layout.appendingPathComponent("index.json"))
        guard let index = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let manifests = index["manifests"] as? [[String: Any]]
        else {
            throw ImageError("\(layout.path)/index.json is not an OCI image index")
        }
        let named = manifests.filter {
            ($0["annotations"] as? [String: Any])?["org.opencontainers.image.ref.name"] as? String == reference
        }
        guard let manifest = named.first, let digest = manifest["digest"] as? String, digest.hasPrefix("sha256:")
        else {
            let known = manifests.compactMap {
                ($0["annotations"] as? [String: Any])?["org.opencontainers.image.ref.name"] as? String
            }
            throw ImageError(
                "the OCI layout \(layout.lastPathComponent) has no image '\(reference)' (it has: "
                    + "\(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        if manifest["mediaType"] as? String == "application/vnd.oci.image.index.v1+json" {
            throw ImageError(
                "'\(reference)' in \(layout.lastPathComponent) is a multi-platform index; copy one platform "
                    + "(skopeo copy --override-arch …)")
        }
        return digest.lowercased()
    }

    /// `PATH` from the runtime configuration umoci wrote next to the root (`process.env`).
    static func searchPath(bundleConfiguration: URL) -> String? {
        guard let data = try? Data(contentsOf: bundleConfiguration),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let process = object["process"] as? [String: Any], let environment = process["env"] as? [String]
        else { return nil }
        return environment.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
    }
}
