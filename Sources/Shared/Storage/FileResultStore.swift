import Domain
import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Settings of the filesystem result store.
package struct FileResultStoreConfiguration: Sendable, Hashable {
    /// Directory that holds every job's results as `<root>/<jobID>/<name>`. Default `/var/lib/c2d/results`.
    package var root: URL
    /// Largest single object accepted, in bytes; nil for no limit (the publisher enforces the job's disk limit).
    /// Default nil.
    package var maxObjectBytes: Int64?

    package init(root: URL = URL(fileURLWithPath: "/var/lib/c2d/results"), maxObjectBytes: Int64? = nil) {
        self.root = root
        self.maxObjectBytes = maxObjectBytes
    }
}

/// Keeps results as files under a root directory: `<root>/<jobID>/<name>`, where `name` is a relative path that
/// may contain subdirectories (the publisher uses `<attempt>/outputs/<file>`, `<attempt>/logs/<file>`, …).
///
/// Objects are written under a temporary name and renamed into place, so a reader (or a crash) never sees half a
/// file under its final name. Size and sha-256 are computed while copying, in one pass. All file I/O runs on the
/// injected `NIOThreadPool`, never on the cooperative pool.
package struct FileResultStore: ResultStore {
    package let configuration: FileResultStoreConfiguration
    let threadPool: NIOThreadPool

    package var root: URL { configuration.root }

    package init(configuration: FileResultStoreConfiguration, threadPool: NIOThreadPool = .singleton) {
        self.configuration = FileResultStoreConfiguration(
            root: configuration.root.standardizedFileURL, maxObjectBytes: configuration.maxObjectBytes)
        self.threadPool = threadPool
    }

    package init(root: URL, threadPool: NIOThreadPool = .singleton) {
        self.init(configuration: FileResultStoreConfiguration(root: root), threadPool: threadPool)
    }

    /// Copies `file` (which must be a regular file, not a symbolic link) to `<root>/<jobID>/<name>`, replacing an
    /// object of the same name. The returned `location` is `<jobID>/<name>`, relative to the root.
    package func store(jobID: JobID, name: String, from file: URL) async throws -> StoredObject {
        guard WorkflowValidator.isContainedRelativePath(name), !name.hasSuffix("/") else {
            throw StorageError(code: .invalidName, message: "result name '\(name.prefix(200))' is not a relative path")
        }
        let location = "\(jobID)/\(name)"
        let destination = root.appendingPathComponent(location)
        let root = self.root
        let limit = configuration.maxObjectBytes
        return try await threadPool.runIfActive {
            // The job directory may already exist as a link planted by someone with access to the root; refuse to
            // write through it.
            try Self.checkNoSymbolicLinks(from: root, to: destination.deletingLastPathComponent())
            let digest = try FileCopy.copy(from: file, to: destination, limit: limit, followSymlinks: false)
            return StoredObject(location: location, size: digest.size, sha256: digest.sha256)
        }
    }

    /// The stored file for a location returned by `store`. Refuses locations that leave the root, lexically or
    /// through symbolic links. This is a few `stat`s, cheap enough to run inline despite being blocking.
    package func file(at location: String) throws -> URL {
        guard WorkflowValidator.isContainedRelativePath(location) else {
            throw StorageError(
                code: .outsideRoot, message: "location '\(location.prefix(200))' is not inside the store")
        }
        let candidate = root.appendingPathComponent(location)
        guard let resolved = Self.realPath(candidate.path) else {
            throw StorageError(code: .notFound, message: "nothing is stored at '\(location.prefix(200))'")
        }
        guard let resolvedRoot = Self.realPath(root.path), Self.isInside(resolved, directory: resolvedRoot) else {
            throw StorageError(code: .outsideRoot, message: "location '\(location.prefix(200))' leaves the store")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), !isDirectory.boolValue
        else {
            throw StorageError(code: .notARegularFile, message: "'\(location.prefix(200))' is not a file")
        }
        return URL(fileURLWithPath: resolved)
    }

    /// Removes `<root>/<jobID>` and everything under it; nothing stored is not an error.
    package func deleteAll(jobID: JobID) async throws {
        let directory = root.appendingPathComponent(jobID.description)
        try await threadPool.runIfActive {
            do {
                try FileManager.default.removeItem(at: directory)
            } catch let error as CocoaError where error.code == .fileNoSuchFile {
                return
            } catch {
                if !FileManager.default.fileExists(atPath: directory.path) { return }
                throw StorageError(code: .io, message: "cannot delete results of job \(jobID): \(error)")
            }
        }
    }

    // MARK: Path checks

    /// `realpath(3)`: the absolute path with every symbolic link resolved, or nil if it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isInside(_ path: String, directory: String) -> Bool {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return path.hasPrefix(prefix)
    }

    /// Walks from `root` down to `directory` and refuses any existing component that is a symbolic link.
    static func checkNoSymbolicLinks(from root: URL, to directory: URL) throws {
        let rootComponents = root.standardizedFileURL.pathComponents
        let components = directory.standardizedFileURL.pathComponents
        guard components.starts(with: rootComponents) else {
            throw StorageError(code: .outsideRoot, message: "\(directory.path) is outside the store")
        }
        var current = root.standardizedFileURL
        for component in components.dropFirst(rootComponents.count) {
            current.appendPathComponent(component)
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: current.path) else { return }
            if attributes[.type] as? FileAttributeType == .typeSymbolicLink {
                throw StorageError(code: .outsideRoot, message: "\(current.path) is a symbolic link")
            }
        }
    }
}
