import Domain
import Foundation
import NIOCore
import NIOPosix

/// A result store that also serves what it keeps: the one interface the gateway (downloads), the scheduler (log
/// archives, expiry) and the upload endpoint use, whether results live on a filesystem (`FileResultStore`) or in
/// an S3-compatible bucket (`S3ResultStore`). `C2D_RESULT_STORE` picks one per deployment.
package protocol ReadableResultStore: ResultStore {
    /// The object's bytes, or those of `range` (inclusive offsets, already checked against the object's size),
    /// streamed. Throws `StorageError` `.notFound` before any byte when nothing is stored at `location`.
    func open(location: String, range: ClosedRange<Int64>?) async throws -> ResultByteStream

    /// Size and sha-256 of a stored object as the store recorded them; nil when nothing is stored there.
    func describe(location: String) async throws -> StoredObject?

    /// A URL anyone holding it may GET the object from until `expiresIn` passes, with `filename` as its download
    /// name; nil when the store cannot make one (a filesystem).
    func presignedDownloadURL(
        location: String, filename: String, contentType: String, expiresIn: Duration
    ) throws -> String?
}

/// Bytes of a stored object as an async sequence of buffers. Each iteration starts a new read.
package struct ResultByteStream: AsyncSequence, Sendable {
    package typealias Element = ByteBuffer

    private let makeIterator: @Sendable () -> Iterator

    /// `makeNext` is called once per iteration and returns the function that yields the next buffer (nil at the
    /// end); that function is only ever called from the iterating task.
    package init(_ makeNext: @escaping @Sendable () -> (() async throws -> ByteBuffer?)) {
        makeIterator = { Iterator(next: makeNext()) }
    }

    package func makeAsyncIterator() -> Iterator { makeIterator() }

    package struct Iterator: AsyncIteratorProtocol {
        let nextBuffer: () async throws -> ByteBuffer?

        init(next: @escaping () async throws -> ByteBuffer?) {
            nextBuffer = next
        }

        package mutating func next() async throws -> ByteBuffer? { try await nextBuffer() }
    }

    /// All of it in one buffer; for small objects and tests.
    package func collect(upTo limit: Int) async throws -> ByteBuffer {
        var all = ByteBuffer()
        for try await var buffer in self {
            guard all.readableBytes + buffer.readableBytes <= limit else {
                throw StorageError(code: .sizeLimitExceeded, message: "the object is larger than \(limit) bytes")
            }
            all.writeBuffer(&buffer)
        }
        return all
    }
}

extension FileResultStore: ReadableResultStore {
    /// Reads the file in chunks of `FileCopy.chunkSize` on the thread pool, from the range's start to its end.
    package func open(location: String, range: ClosedRange<Int64>?) async throws -> ResultByteStream {
        let file = try self.file(at: location)
        let threadPool = self.threadPool
        return ResultByteStream {
            var handle: FileHandle?
            var position = range?.lowerBound ?? 0
            let end = range.map { $0.upperBound + 1 }
            var finished = false
            return {
                guard !finished else { return nil }
                let want = end.map { min(Int64(FileCopy.chunkSize), $0 - position) } ?? Int64(FileCopy.chunkSize)
                if want <= 0 {
                    finished = true
                    try? handle?.close()
                    return nil
                }
                let current = handle
                let start = position
                let (opened, data) = try await threadPool.runIfActive {
                    let opened =
                        try current
                        ?? FileHandle(
                            fileDescriptor: try FileCopy.openRegularFile(file, followSymlinks: false),
                            closeOnDealloc: true)
                    if current == nil { try opened.seek(toOffset: UInt64(start)) }
                    return (opened, try opened.read(upToCount: Int(want)))
                }
                handle = opened
                guard let data, !data.isEmpty else {
                    finished = true
                    try? opened.close()
                    return nil
                }
                position += Int64(data.count)
                return ByteBuffer(bytes: data)
            }
        }
    }

    package func describe(location: String) async throws -> StoredObject? {
        let file: URL
        do {
            file = try self.file(at: location)
        } catch let error as StorageError where error.code == .notFound {
            return nil
        }
        let digest = try await threadPool.runIfActive { try FileCopy.digest(of: file, followSymlinks: false) }
        return StoredObject(location: location, size: digest.size, sha256: digest.sha256)
    }

    /// A filesystem has no URLs of its own: downloads go through the gateway.
    package func presignedDownloadURL(
        location: String, filename: String, contentType: String, expiresIn: Duration
    ) throws -> String? {
        nil
    }
}
