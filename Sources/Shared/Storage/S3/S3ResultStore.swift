import AsyncHTTPClient
import Crypto
import Domain
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Keeps results in an S3-compatible bucket, under `<prefix><job id>/<name>` (the same locations as
/// `FileResultStore`, so the rest of c2d does not care which store it has).
///
/// Every request is signed with SigV4 (`SigV4Signer`), has a deadline, and is tried again on connection failures,
/// 5xx and 429/503 (SlowDown) with doubling backoff. Uploads send the payload's sha-256, so the server refuses a
/// corrupted body; the whole file's sha-256 is kept as object metadata (`x-amz-meta-sha256`). Files larger than
/// `partSize` go up as a multipart upload, one part in memory at a time; a failed upload is aborted so no parts
/// linger. Downloads stream the server's answer (with `Range` passed on); presigned GET URLs let the owner fetch
/// an object directly. Expiry lists the job's prefix and deletes in batches of 1,000.
package struct S3ResultStore: ReadableResultStore {
    package let configuration: S3Configuration
    private let httpClient: HTTPClient
    private let threadPool: NIOThreadPool
    private let signer: SigV4Signer
    private let endpoint: Endpoint

    package init(
        configuration: S3Configuration, httpClient: HTTPClient, threadPool: NIOThreadPool = .singleton
    ) throws {
        self.configuration = configuration
        self.httpClient = httpClient
        self.threadPool = threadPool
        self.signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region)
        self.endpoint = try Endpoint(configuration)
    }

    /// A client with the configuration's connect and idle timeouts and no redirects; shut it down when done.
    package static func makeHTTPClient(configuration: S3Configuration) -> HTTPClient {
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.redirectConfiguration = .disallow
        clientConfiguration.timeout = HTTPClient.Configuration.Timeout(
            connect: TimeAmount(configuration.connectTimeout), read: TimeAmount(configuration.idleTimeout))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
    }

    /// The object key of a location.
    func key(_ location: String) -> String { configuration.prefix + location }

    // MARK: ResultStore

    /// Uploads `file` to `<job id>/<name>`, replacing an object of that name.
    package func store(jobID: JobID, name: String, from file: URL) async throws -> StoredObject {
        guard WorkflowValidator.isContainedRelativePath(name), !name.hasSuffix("/") else {
            throw StorageError(code: .invalidName, message: "result name '\(name.prefix(200))' is not a relative path")
        }
        let location = "\(jobID)/\(name)"
        let digest = try await threadPool.runIfActive { try FileCopy.digest(of: file, followSymlinks: false) }
        if digest.size <= Int64(configuration.partSize) {
            try await putObject(key: key(location), file: file, digest: digest)
        } else {
            try await multipartUpload(key: key(location), file: file, digest: digest)
        }
        return StoredObject(location: location, size: digest.size, sha256: digest.sha256)
    }

    /// Deletes every object under `<job id>/`; nothing stored is not an error.
    package func deleteAll(jobID: JobID) async throws {
        var token: String?
        repeat {
            let page = try await list(prefix: key("\(jobID)/"), continuationToken: token)
            for start in stride(from: 0, to: page.keys.count, by: 1000) {
                try await deleteObjects(Array(page.keys[start..<min(start + 1000, page.keys.count)]))
            }
            token = page.next
        } while token != nil
    }

    // MARK: ReadableResultStore

    package func open(location: String, range: ClosedRange<Int64>?) async throws -> ResultByteStream {
        var headers: [String: String] = [:]
        if let range { headers["range"] = "bytes=\(range.lowerBound)-\(range.upperBound)" }
        let objectKey = key(location)
        let response = try await withRetries("download \(location)") {
            try await send(
                .GET, key: objectKey, headers: headers, body: .none, timeout: configuration.downloadTimeout,
                accept: [200, 206, 404])
        }
        if response.status == .notFound {
            await Self.drain(response)
            throw StorageError(code: .notFound, message: "nothing is stored at '\(location.prefix(200))'")
        }
        let body = response.body
        return ResultByteStream {
            var iterator = body.makeAsyncIterator()
            return { try await iterator.next() }
        }
    }

    package func describe(location: String) async throws -> StoredObject? {
        let objectKey = key(location)
        let response = try await withRetries("head \(location)") {
            try await send(
                .HEAD, key: objectKey, headers: [:], body: .none, timeout: configuration.requestTimeout,
                accept: [200, 404])
        }
        await Self.drain(response)
        guard response.status == .ok else { return nil }
        let size = response.headers.first(name: "content-length").flatMap { Int64($0) } ?? 0
        let sha256 = response.headers.first(name: "x-amz-meta-sha256") ?? ""
        return StoredObject(location: location, size: size, sha256: sha256)
    }

    package func presignedDownloadURL(
        location: String, filename: String, contentType: String, expiresIn: Duration
    ) throws -> String? {
        let seconds = Int(min(max(expiresIn.components.seconds, 1), 604_800))
        let uri = endpoint.canonicalURI(key: key(location))
        let disposition = "attachment; filename=\"\(filename.filter { $0 != "\"" && $0 != "\\" && !$0.isNewline })\""
        let query = signer.presignedQuery(
            method: "GET", canonicalURI: uri, host: endpoint.hostHeader,
            query: [("response-content-disposition", disposition), ("response-content-type", contentType)],
            expires: seconds, date: Date())
        return endpoint.origin + uri + "?" + query
    }

    // MARK: Uploads

    private func putObject(key: String, file: URL, digest: FileDigest) async throws {
        let response = try await withRetries("upload \(key)") {
            try await send(
                .PUT, key: key,
                headers: ["content-type": "application/octet-stream", "x-amz-meta-sha256": digest.sha256],
                body: .file(file, offset: 0, length: digest.size), payloadHash: digest.sha256,
                timeout: configuration.transferTimeout, accept: [200])
        }
        await Self.drain(response)
    }

    private func multipartUpload(key: String, file: URL, digest: FileDigest) async throws {
        // S3 allows 10,000 parts: a file too large for that many parts of the configured size gets larger parts.
        let partSize = max(Int64(configuration.partSize), (digest.size + 9_999) / 10_000)
        let created = try await withRetries("start upload \(key)") {
            try await send(
                .POST, key: key, query: [("uploads", "")],
                headers: ["content-type": "application/octet-stream", "x-amz-meta-sha256": digest.sha256],
                body: .none, timeout: configuration.requestTimeout, accept: [200])
        }
        let answer = try await Self.text(created.body)
        guard let uploadID = S3XML.value(of: "UploadId", in: answer), !uploadID.isEmpty else {
            throw StorageError(
                code: .rejected, message: "the server did not start a multipart upload: \(answer.prefix(300))")
        }
        do {
            var etags: [String] = []
            var offset: Int64 = 0
            var number = 1
            while offset < digest.size {
                let length = min(partSize, digest.size - offset)
                let start = offset
                let bytes = try await threadPool.runIfActive { try Self.read(file, offset: start, length: length) }
                let partHash = SigV4Signer.sha256Hex(bytes)
                let partNumber = number
                let uploaded = try await withRetries("upload part \(partNumber) of \(key)") {
                    try await send(
                        .PUT, key: key, query: [("partNumber", String(partNumber)), ("uploadId", uploadID)],
                        headers: [:], body: .bytes(ByteBuffer(bytes: bytes)), payloadHash: partHash,
                        timeout: configuration.transferTimeout, accept: [200])
                }
                await Self.drain(uploaded)
                guard let etag = uploaded.headers.first(name: "etag") else {
                    throw StorageError(code: .rejected, message: "the server gave part \(partNumber) of \(key) no ETag")
                }
                etags.append(etag)
                offset += length
                number += 1
            }
            let parts = etags.enumerated().map {
                "<Part><PartNumber>\($0.offset + 1)</PartNumber><ETag>\(S3XML.escape($0.element))</ETag></Part>"
            }
            let document = "<CompleteMultipartUpload>\(parts.joined())</CompleteMultipartUpload>"
            let completed = try await withRetries("complete upload \(key)") {
                try await send(
                    .POST, key: key, query: [("uploadId", uploadID)], headers: ["content-type": "application/xml"],
                    body: .bytes(ByteBuffer(string: document)),
                    payloadHash: SigV4Signer.sha256Hex(Array(document.utf8)), timeout: configuration.transferTimeout,
                    accept: [200])
            }
            // S3 may answer 200 and still report a failure in the body.
            let result = try await Self.text(completed.body)
            if result.contains("<Error>") {
                throw StorageError(
                    code: S3XML.value(of: "Code", in: result) == "InternalError" ? .unavailable : .rejected,
                    message: "completing the upload of \(key) failed: \(Self.describeError(result))")
            }
        } catch {
            // Parts of an upload that is never completed are kept (and billed) until aborted.
            let abortKey = key
            if let aborted = try? await send(
                .DELETE, key: abortKey, query: [("uploadId", uploadID)], headers: [:], body: .none,
                timeout: configuration.requestTimeout, accept: [200, 204, 404])
            {
                await Self.drain(aborted)
            }
            throw error
        }
    }

    // MARK: Listing and deleting

    private func list(prefix: String, continuationToken: String?) async throws -> (keys: [String], next: String?) {
        var query = [("list-type", "2"), ("prefix", prefix)]
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let response = try await withRetries("list \(prefix)") {
            try await send(
                .GET, key: nil, query: query, headers: [:], body: .none, timeout: configuration.requestTimeout,
                accept: [200])
        }
        let text = try await Self.text(response.body)
        let truncated = S3XML.value(of: "IsTruncated", in: text) == "true"
        return (S3XML.values(of: "Key", in: text), truncated ? S3XML.value(of: "NextContinuationToken", in: text) : nil)
    }

    private func deleteObjects(_ keys: [String]) async throws {
        guard !keys.isEmpty else { return }
        let objects = keys.map { "<Object><Key>\(S3XML.escape($0))</Key></Object>" }.joined()
        let document = "<Delete><Quiet>true</Quiet>\(objects)</Delete>"
        let bytes = Array(document.utf8)
        // DeleteObjects requires a body checksum; Content-MD5 is the one every S3-compatible server knows.
        let md5 = Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()
        let response = try await withRetries("delete \(keys.count) objects") {
            try await send(
                .POST, key: nil, query: [("delete", "")],
                headers: ["content-type": "application/xml", "content-md5": md5],
                body: .bytes(ByteBuffer(bytes: bytes)),
                payloadHash: SigV4Signer.sha256Hex(bytes), timeout: configuration.requestTimeout, accept: [200])
        }
        let text = try await Self.text(response.body)
        if text.contains("<Error>") {
            throw StorageError(
                code: .unavailable, message: "some objects were not deleted: \(Self.describeError(text))")
        }
    }

    // MARK: Requests

    enum Body {
        case none
        case bytes(ByteBuffer)
        case file(URL, offset: Int64, length: Int64)
    }

    /// One signed request. Statuses in `accept` are returned; anything else throws (`unavailable` for transport
    /// failures, 5xx and 429, else `rejected` with S3's error code and message), the body drained.
    private func send(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [String: String], body: Body,
        payloadHash: String = SigV4Signer.emptyPayloadHash, timeout: Duration, accept: Set<Int>
    ) async throws -> HTTPClientResponse {
        let uri = endpoint.canonicalURI(key: key)
        let queryText = SigV4Signer.canonicalQuery(query)
        var request = HTTPClientRequest(url: endpoint.origin + uri + (query.isEmpty ? "" : "?" + queryText))
        request.method = method
        var signedHeaders = headers
        signedHeaders["host"] = endpoint.hostHeader
        let added = signer.sign(
            method: method.rawValue, canonicalURI: uri, query: query, headers: signedHeaders, payloadHash: payloadHash,
            date: Date())
        for (name, value) in signedHeaders.merging(added, uniquingKeysWith: { $1 }) {
            request.headers.add(name: name, value: value)
        }
        switch body {
        case .none:
            break
        case .bytes(let buffer):
            request.body = .bytes(buffer)
        case .file(let file, let offset, let length):
            request.body = .stream(
                FileRegionChunks(file: file, offset: offset, length: length, threadPool: threadPool),
                length: .known(length))
        }
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: TimeAmount(timeout))
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(code: .unavailable, message: "\(method.rawValue) \(uri) failed: \(error)")
        }
        let status = Int(response.status.code)
        if accept.contains(status) { return response }
        let text = (try? await Self.text(response.body)) ?? ""
        let retriable = status >= 500 || status == 429
        throw StorageError(
            code: retriable ? .unavailable : .rejected,
            message: "\(method.rawValue) \(uri) answered \(status): \(Self.describeError(text))", httpStatus: status)
    }

    /// Runs `operation` up to `attempts` times while it fails with `unavailable`, waiting longer each time.
    private func withRetries<T>(_ what: String, _ operation: () async throws -> T) async throws -> T {
        var backoff = configuration.initialBackoff
        var attempt = 1
        while true {
            do {
                return try await operation()
            } catch let error as StorageError where error.isTransient && attempt < max(1, configuration.attempts) {
                try await Task.sleep(for: backoff)
                backoff = backoff * 2
                attempt += 1
            }
        }
    }

    /// Reads and drops a body nobody needs, so the connection can serve the next request.
    static func drain(_ response: HTTPClientResponse) async {
        _ = try? await response.body.collect(upTo: 4 << 20)
    }

    static func text(_ body: HTTPClientResponse.Body) async throws -> String {
        String(buffer: try await body.collect(upTo: 4 << 20))
    }

    /// `Code: Message` of an S3 error document, or the start of the text.
    static func describeError(_ text: String) -> String {
        if let code = S3XML.value(of: "Code", in: text) {
            return code + (S3XML.value(of: "Message", in: text).map { ": \($0.prefix(300))" } ?? "")
        }
        return text.isEmpty ? "no details" : String(text.prefix(300))
    }

    static func read(_ file: URL, offset: Int64, length: Int64) throws -> [UInt8] {
        let descriptor = try FileCopy.openRegularFile(file, followSymlinks: false)
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(length))
        while bytes.count < Int(length) {
            guard let data = try handle.read(upToCount: Int(length) - bytes.count), !data.isEmpty else {
                throw StorageError(code: .io, message: "\(file.lastPathComponent) changed while it was uploaded")
            }
            bytes += data
        }
        return bytes
    }

    /// Where requests go: origin, `Host` header and the path of a key, path-style or virtual-hosted.
    struct Endpoint: Sendable {
        let origin: String
        let hostHeader: String
        let bucketPath: String

        init(_ configuration: S3Configuration) throws {
            guard let components = URLComponents(string: configuration.endpoint),
                let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
                let host = components.host, !host.isEmpty
            else {
                throw StorageError(
                    code: .invalidName, message: "the S3 endpoint '\(configuration.endpoint)' is not an http(s) URL")
            }
            let defaultPort = scheme == "https" ? 443 : 80
            let port = components.port.flatMap { $0 == defaultPort ? nil : $0 }
            let bucketHost = configuration.pathStyle ? host : "\(configuration.bucket).\(host)"
            hostHeader = bucketHost + (port.map { ":\($0)" } ?? "")
            origin = "\(scheme)://\(hostHeader)"
            bucketPath =
                configuration.pathStyle ? "/" + SigV4Signer.uriEncode(configuration.bucket, encodeSlash: true) : ""
        }

        /// `/bucket/key` or `/key`, percent-encoded; the bucket itself for a nil key.
        func canonicalURI(key: String?) -> String {
            guard let key else { return bucketPath.isEmpty ? "/" : bucketPath }
            return bucketPath + "/" + SigV4Signer.uriEncode(key, encodeSlash: false)
        }
    }
}

/// A region of a file as an async sequence of chunks, read on the thread pool; refuses symbolic links.
struct FileRegionChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    let file: URL
    let offset: Int64
    let length: Int64
    let threadPool: NIOThreadPool

    func makeAsyncIterator() -> Iterator {
        Iterator(file: file, position: offset, remaining: length, threadPool: threadPool)
    }

    struct Iterator: AsyncIteratorProtocol {
        let file: URL
        var position: Int64
        var remaining: Int64
        let threadPool: NIOThreadPool
        var handle: FileHandle?

        mutating func next() async throws -> ByteBuffer? {
            guard remaining > 0 else {
                try? handle?.close()
                handle = nil
                return nil
            }
            let current = handle
            let file = self.file
            let start = position
            let want = Int(Swift.min(remaining, Int64(FileCopy.chunkSize)))
            let (opened, data) = try await threadPool.runIfActive {
                let opened =
                    try current
                    ?? FileHandle(
                        fileDescriptor: try FileCopy.openRegularFile(file, followSymlinks: false), closeOnDealloc: true)
                if current == nil { try opened.seek(toOffset: UInt64(start)) }
                return (opened, try opened.read(upToCount: want))
            }
            handle = opened
            guard let data, !data.isEmpty else {
                throw StorageError(code: .io, message: "\(file.lastPathComponent) became shorter while it was uploaded")
            }
            position += Int64(data.count)
            remaining -= Int64(data.count)
            return ByteBuffer(bytes: data)
        }
    }
}
