import Foundation
import NIOCore
import NIOPosix

/// A request body on its way into the result store: written to a temporary file chunk by chunk as it arrives (never
/// held whole in memory), counted against a limit and hashed, because `ResultStore.store` takes a file. Writes run on
/// the thread pool. Use it from one task: each call is awaited before the next.
package final class UploadSpool: @unchecked Sendable {
    // @unchecked: the writer is only touched by the awaited calls of one task, one at a time.
    private let writer: AtomicFileWriter
    /// The spooled file, complete once `finish()` returned.
    package let file: URL
    private let threadPool: NIOThreadPool

    /// Opens a fresh file in `directory` (created if missing) that refuses more than `limit` bytes.
    package init(directory: URL, limit: Int64, threadPool: NIOThreadPool = .singleton) async throws {
        let file = directory.appendingPathComponent("upload-\(UUID().uuidString.lowercased())")
        self.file = file
        self.threadPool = threadPool
        writer = try await threadPool.runIfActive { try AtomicFileWriter(destination: file, limit: limit) }
    }

    /// Appends a chunk; throws `StorageError.sizeLimitExceeded` (and drops the file) beyond the limit.
    package func write(_ buffer: ByteBuffer) async throws {
        let writer = self.writer
        try await threadPool.runIfActive {
            try buffer.withUnsafeReadableBytes { try writer.write($0) }
        }
    }

    /// Completes the file and returns its size and digest.
    package func finish() async throws -> FileDigest {
        let writer = self.writer
        return try await threadPool.runIfActive { try writer.commit() }
    }

    /// Deletes the file (or the partial one). Safe to call at any point, more than once.
    package func remove() async {
        let writer = self.writer
        let file = self.file
        _ = try? await threadPool.runIfActive {
            writer.discard()
            try? FileManager.default.removeItem(at: file)
        }
    }
}
