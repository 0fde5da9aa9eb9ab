import AsyncHTTPClient
import Domain
import Foundation
import NIOCore
import NIOHTTP1
import Storage
import TestSupport
import Testing

/// The S3 result store against a real S3-compatible server: moto_server on loopback, started by
/// `scripts/s3-server` (`C2D_S3_PORT`, default 59000). Each test works in a bucket of its own.
@Suite("S3 result store", .serialized)
struct S3ResultStoreTests {
    static var endpoint: String { TestEnvironment.s3Endpoint }

    /// A store on a new bucket (moto creates one on `PUT /<bucket>`).
    static func withStore(
        partSize: Int = 5 << 20, attempts: Int = 4, endpoint: String = Self.endpoint,
        _ body: (S3ResultStore, S3Configuration) async throws -> Void
    ) async throws {
        try await TestEnvironment.startS3Server()
        let bucket = "c2d-test-\(UUID().uuidString.lowercased().prefix(18))"
        var request = HTTPClientRequest(url: "\(Self.endpoint)/\(bucket)")
        request.method = .PUT
        let created = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        #expect(created.status == .ok)
        let configuration = S3Configuration(
            endpoint: endpoint, bucket: bucket, region: "us-east-1",
            credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test"), prefix: "results/",
            partSize: partSize, attempts: attempts, initialBackoff: .milliseconds(50))
        let client = S3ResultStore.makeHTTPClient(configuration: configuration)
        do {
            try await body(try S3ResultStore(configuration: configuration, httpClient: client), configuration)
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    static func file(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-s3-\(UUID())")
        try Data(bytes).write(to: url)
        return url
    }

    static func read(_ store: S3ResultStore, _ location: String, _ range: ClosedRange<Int64>? = nil) async throws
        -> [UInt8]
    {
        var buffer = try await store.open(location: location, range: range).collect(upTo: 64 << 20)
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }

    @Test("an object goes up with its digest, is described, read whole and by range, and a missing one is not found")
    func roundTrip() async throws {
        try await Self.withStore { store, _ in
            let job = JobID()
            let bytes = Array("hello, results\n".utf8)
            let source = try Self.file(bytes)
            defer { try? FileManager.default.removeItem(at: source) }
            let stored = try await store.store(jobID: job, name: "1/outputs/dir/a b ü.txt", from: source)
            #expect(stored.location == "\(job)/1/outputs/dir/a b ü.txt")
            #expect(stored.size == Int64(bytes.count))
            #expect(stored.sha256 == SigV4Signer.sha256Hex(bytes))
            let described = try #require(try await store.describe(location: stored.location))
            #expect(described.size == stored.size)
            #expect(described.sha256 == stored.sha256)
            #expect(try await Self.read(store, stored.location) == bytes)
            #expect(try await Self.read(store, stored.location, 7...13) == Array(bytes[7...13]))

            #expect(try await store.describe(location: "\(job)/nothing") == nil)
            await #expect(throws: StorageError.self) {
                _ = try await store.open(location: "\(job)/nothing", range: nil)
            }
            await #expect(throws: StorageError.self) {
                _ = try await store.store(jobID: job, name: "../escape", from: source)
            }
        }
    }

    @Test("a file larger than the part size goes up as a multipart upload and reads back byte for byte")
    func multipart() async throws {
        try await Self.withStore(partSize: 5 << 20) { store, _ in
            let job = JobID()
            var generator = SystemRandomNumberGenerator()
            let bytes = (0..<(12 << 20) + 12_345).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let source = try Self.file(bytes)
            defer { try? FileManager.default.removeItem(at: source) }
            let stored = try await store.store(jobID: job, name: "1/outputs/big.bin", from: source)
            #expect(stored.size == Int64(bytes.count))
            let read = try await Self.read(store, stored.location)
            #expect(read.count == bytes.count)
            #expect(SigV4Signer.sha256Hex(read) == stored.sha256)
            // A range across the first part boundary.
            let boundary = Int64(5 << 20)
            #expect(
                try await Self.read(store, stored.location, (boundary - 10)...(boundary + 9))
                    == Array(bytes[Int(boundary - 10)...Int(boundary + 9)]))
            #expect(try await store.describe(location: stored.location)?.sha256 == stored.sha256)
        }
    }

    @Test("a presigned URL downloads the object without credentials, under its file name")
    func presigned() async throws {
        try await Self.withStore { store, _ in
            let job = JobID()
            let bytes = Array("presigned\n".utf8)
            let source = try Self.file(bytes)
            defer { try? FileManager.default.removeItem(at: source) }
            let stored = try await store.store(jobID: job, name: "1/outputs/report.txt", from: source)
            let url = try #require(
                try store.presignedDownloadURL(
                    location: stored.location, filename: "report.txt", contentType: "text/plain",
                    expiresIn: .seconds(60)))
            #expect(url.contains("X-Amz-Signature="))
            #expect(url.contains("X-Amz-Expires=60"))
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            #expect(response.status == .ok)
            var body = try await response.body.collect(upTo: 1 << 20)
            #expect(body.readBytes(length: body.readableBytes) == bytes)
        }
    }

    @Test("expiry deletes every object of a job, over more than one listing page, and only that job's")
    func deleteAll() async throws {
        try await Self.withStore { store, configuration in
            let expired = JobID()
            let kept = JobID()
            let source = try Self.file(Array("x".utf8))
            defer { try? FileManager.default.removeItem(at: source) }
            // 1,010 objects: more than one page of ListObjectsV2 and one DeleteObjects batch.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for batch in 0..<10 {
                    group.addTask {
                        for index in stride(from: batch, to: 1_010, by: 10) {
                            _ = try await store.store(jobID: expired, name: "1/outputs/\(index).txt", from: source)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let keptObject = try await store.store(jobID: kept, name: "1/outputs/keep.txt", from: source)
            try await store.deleteAll(jobID: expired)
            #expect(try await store.describe(location: "\(expired)/1/outputs/0.txt") == nil)
            #expect(try await store.describe(location: "\(expired)/1/outputs/1009.txt") == nil)
            #expect(try await store.describe(location: keptObject.location) != nil)
            // Nothing stored is not an error.
            try await store.deleteAll(jobID: JobID())
            _ = configuration
        }
    }

    @Test("a missing bucket is refused with S3's reason; an unreachable server is unavailable after retries")
    func failures() async throws {
        try await Self.withStore { _, configuration in
            var other = configuration
            other.bucket = "c2d-no-such-bucket-\(UUID().uuidString.lowercased().prefix(8))"
            let client = S3ResultStore.makeHTTPClient(configuration: other)
            let store = try S3ResultStore(configuration: other, httpClient: client)
            let source = try Self.file(Array("x".utf8))
            defer { try? FileManager.default.removeItem(at: source) }
            do {
                _ = try await store.store(jobID: JobID(), name: "1/outputs/a", from: source)
                Issue.record("a store into a missing bucket succeeded")
            } catch let error as StorageError {
                #expect(error.code == .rejected)
                #expect(error.message.contains("NoSuchBucket"), "\(error)")
            }
            try await client.shutdown()
        }
        let closed = "http://127.0.0.1:9"
        try await Self.withStore(attempts: 2, endpoint: closed) { store, _ in
            let source = try Self.file(Array("x".utf8))
            defer { try? FileManager.default.removeItem(at: source) }
            do {
                _ = try await store.store(jobID: JobID(), name: "1/outputs/a", from: source)
                Issue.record("a store to a closed port succeeded")
            } catch let error as StorageError {
                #expect(error.code == .unavailable, "\(error)")
            }
        }
    }
}
