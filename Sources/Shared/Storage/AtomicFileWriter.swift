import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Size and sha-256 of a file's bytes.
package struct FileDigest: Sendable, Hashable {
    package var size: Int64
    /// 64 lowercase hex digits.
    package var sha256: String

    package init(size: Int64, sha256: String) {
        self.size = size
        self.sha256 = sha256
    }
}

/// Writes a file under a temporary name next to its destination, counting and hashing the bytes as they pass.
/// `commit()` flushes the file to disk and renames it into place, so the final name only ever holds a complete
/// file, even if the process dies half way (a stray `.partial` file is all a crash can leave).
///
/// Every method blocks: call them on a thread pool (`NIOThreadPool`), never on Swift's cooperative pool.
/// One caller at a time: each call is awaited before the next is made, which is why `@unchecked Sendable`
/// is sound here.
package final class AtomicFileWriter: @unchecked Sendable {
    package let destination: URL
    /// Most bytes the file may hold; a write beyond it throws `sizeLimitExceeded` and nothing is kept.
    package let limit: Int64?
    package private(set) var size: Int64 = 0
    private let temporaryPath: String
    private var descriptor: Int32
    private var hasher = SHA256()

    /// Creates the destination's parent directories and opens a fresh temporary file beside the destination.
    package init(destination: URL, limit: Int64? = nil, permissions: mode_t = 0o644) throws {
        self.destination = destination
        self.limit = limit
        let directory = destination.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw StorageError(code: .io, message: "cannot create directory \(directory.path): \(error)")
        }
        temporaryPath =
            directory.appendingPathComponent(
                ".\(destination.lastPathComponent).\(UUID().uuidString.prefix(8)).partial"
            ).path
        descriptor = try POSIXFile.openFile(
            temporaryPath, flags: O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode: permissions)
    }

    deinit {
        discard()
    }

    /// Appends bytes, hashing them.
    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard descriptor >= 0 else {
            throw StorageError(code: .io, message: "write to \(destination.lastPathComponent) after it was closed")
        }
        if let limit, size + Int64(bytes.count) > limit {
            discard()
            throw StorageError(
                code: .sizeLimitExceeded, message: "\(destination.lastPathComponent) is larger than \(limit) bytes")
        }
        hasher.update(bufferPointer: bytes)
        try POSIXFile.writeAll(descriptor, bytes, path: temporaryPath)
        size += Int64(bytes.count)
    }

    package func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Flushes the file to disk and renames it to `destination`, replacing what was there.
    @discardableResult
    package func commit() throws -> FileDigest {
        guard descriptor >= 0 else {
            throw StorageError(code: .io, message: "commit of \(destination.lastPathComponent) after it was closed")
        }
        // fsync before rename: otherwise a power loss may leave an empty file under the final name.
        guard fsync(descriptor) == 0 else {
            let code = errno
            discard()
            throw StorageError(code: .io, message: "fsync \(temporaryPath): \(POSIXFile.describe(code))", errno: code)
        }
        close(descriptor)
        descriptor = -1
        guard rename(temporaryPath, destination.path) == 0 else {
            let code = errno
            unlink(temporaryPath)
            throw StorageError(
                code: .io, message: "rename to \(destination.path): \(POSIXFile.describe(code))", errno: code)
        }
        return FileDigest(size: size, sha256: hasher.finalize().hexString)
    }

    /// Closes and deletes the temporary file; the destination is untouched. Safe to call more than once.
    package func discard() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
        unlink(temporaryPath)
    }
}

/// Blocking whole-file operations built on `AtomicFileWriter`; run them on a thread pool.
package enum FileCopy {
    /// Bytes read per system call: large enough to keep the syscall count low, small enough to stay cheap.
    package static let chunkSize = 1 << 20

    /// Copies `source` to `destination` through a temporary file, streaming and hashing, and returns the digest.
    /// With `followSymlinks == false` a symbolic link as the last component is refused (`O_NOFOLLOW`), so a link
    /// planted by an algorithm cannot make the host read a file of its choice. Only regular files are copied.
    package static func copy(
        from source: URL, to destination: URL, limit: Int64? = nil, followSymlinks: Bool = false
    ) throws -> FileDigest {
        let input = try openRegularFile(source, followSymlinks: followSymlinks)
        defer { close(input) }
        let writer = try AtomicFileWriter(destination: destination, limit: limit)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try POSIXFile.readChunk(input, into: buffer, path: source.path)
            if count == 0 { break }
            try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return try writer.commit()
    }

    /// Size and sha-256 of a file, streamed.
    package static func digest(of file: URL, followSymlinks: Bool = false) throws -> FileDigest {
        let input = try openRegularFile(file, followSymlinks: followSymlinks)
        defer { close(input) }
        var hasher = SHA256()
        var size: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try POSIXFile.readChunk(input, into: buffer, path: file.path)
            if count == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            size += Int64(count)
        }
        return FileDigest(size: size, sha256: hasher.finalize().hexString)
    }

    /// Opens a file for reading and checks, on the open descriptor (no race with a swap), that it is regular.
    package static func openRegularFile(_ file: URL, followSymlinks: Bool) throws -> Int32 {
        // O_NONBLOCK so that opening a FIFO does not hang; it is refused just below anyway.
        var flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK
        if !followSymlinks { flags |= O_NOFOLLOW }
        let descriptor = try POSIXFile.openFile(file.path, flags: flags, mode: 0)
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let code = errno
            close(descriptor)
            throw StorageError(code: .io, message: "stat \(file.path): \(POSIXFile.describe(code))", errno: code)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw StorageError(code: .notARegularFile, message: "\(file.lastPathComponent) is not a regular file")
        }
        // Back to blocking reads for the copy loop.
        _ = fcntl(descriptor, F_SETFL, O_RDONLY)
        return descriptor
    }
}

/// Thin wrappers that retry on EINTR and turn errno into `StorageError`.
enum POSIXFile {
    static func openFile(_ path: String, flags: Int32, mode: mode_t) throws -> Int32 {
        while true {
            let descriptor = open(path, flags, mode)
            if descriptor >= 0 { return descriptor }
            let code = errno
            if code == EINTR { continue }
            switch code {
            case ENOENT:
                throw StorageError(code: .notFound, message: "\(path) does not exist", errno: code)
            case ELOOP:
                throw StorageError(code: .notARegularFile, message: "\(path) is a symbolic link", errno: code)
            default:
                throw StorageError(code: .io, message: "open \(path): \(describe(code))", errno: code)
            }
        }
    }

    static func readChunk(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
        while true {
            let count = read(descriptor, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            let code = errno
            if code == EINTR { continue }
            throw StorageError(code: .io, message: "read \(path): \(describe(code))", errno: code)
        }
    }

    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let count = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if count >= 0 {
                offset += count
                continue
            }
            let code = errno
            if code == EINTR { continue }
            throw StorageError(code: .io, message: "write \(path): \(describe(code))", errno: code)
        }
    }

    static func describe(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

extension Sequence where Element == UInt8 {
    /// Lowercase hex, two digits per byte.
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension SHA256.Digest {
    var hexString: String { Array(self).hexString }
}
