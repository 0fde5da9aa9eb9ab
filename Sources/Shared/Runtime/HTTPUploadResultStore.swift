import AsyncHTTPClient
import Domain
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Storage

/// Settings of the upload result store a publish pod uses (`c2d pod publish`).
package struct HTTPUploadConfiguration: Sendable, Hashable {
    /// The gateway's base URL, e.g. `http://c2d-gateway:8080`. `C2D_RESULTS_URL`.
    package var baseURL: String
    package var jobID: JobID
    package var attempt: Int
    /// The attempt's upload token (`C2D_UPLOAD_TOKEN`). Never logged.
    package var token: String
    /// Time to establish a connection. Default 10 s.
    package var connectTimeout: Duration
    /// Time for one whole upload of one file, body and answer included. Default 30 minutes.
    package var requestTimeout: Duration
    /// Tries per file; transport failures, 429 and 5xx are tried again, other answers are final. Default 5.
    package var attempts: Int
    /// Wait before the second try, doubling per try up to `maximumBackoff`. Default 1 s.
    package var initialBackoff: Duration
    /// Longest wait between tries. Default 16 s.
    package var maximumBackoff: Duration

    package init(
        baseURL: String, jobID: JobID, attempt: Int, token: String, connectTimeout: Duration = .seconds(10),
        requestTimeout: Duration = .seconds(1800), attempts: Int = 5, initialBackoff: Duration = .seconds(1),
        maximumBackoff: Duration = .seconds(16)
    ) {
        self.baseURL = baseURL
        self.jobID = jobID
        self.attempt = attempt
        self.token = token
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.attempts = attempts
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
    }
}

/// An upload failed: the gateway refused it, kept failing, or stored other bytes than were sent.
package struct UploadError: Error, CustomStringConvertible, Sendable, Hashable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case rejected
            case unavailable
            case mismatch
            case invalidName = "invalid_name"
            case unsupported
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The gateway answered a final 4xx (401 wrong token, 409 attempt superseded, 413 too large…).
        package static let rejected = Code(.rejected)
        /// Every try failed to connect, timed out or got a 5xx or 429.
        package static let unavailable = Code(.unavailable)
        /// The gateway's size or sha-256 of the stored file is not the file's.
        package static let mismatch = Code(.mismatch)
        /// The result name is not one `ResultPublisher` makes (`<attempt>/<outputs|logs|adminlogs>/<name>`).
        package static let invalidName = Code(.invalidName)
        /// Reading stored results back is not possible through uploads.
        package static let unsupported = Code(.unsupported)

        package var description: String { base.rawValue }
    }

    package var code: Code
    package var reason: String
    /// The gateway's last HTTP status, when it answered.
    package var status: Int?

    package init(code: Code, reason: String, status: Int? = nil) {
        self.code = code
        self.reason = reason
        self.status = status
    }

    package var description: String { "\(code): \(reason)" }
}

/// A `ResultStore` that uploads each file to the gateway's internal endpoint
/// (`PUT /internal/v1/jobs/{id}/attempts/{attempt}/results/{kind}/{name}`), so a publish pod reuses
/// `ResultPublisher` (listing, order, quota, publish.log) unchanged. The kind and name come from the publisher's
/// store name `<attempt>/<outputs|logs|adminlogs>/<name>`. Files are streamed, never read whole into memory, and
/// checked against the size and sha-256 the gateway reports back.
package struct HTTPUploadResultStore: ResultStore {
    package let configuration: HTTPUploadConfiguration
    private let httpClient: HTTPClient
    private let threadPool: NIOThreadPool

    package init(configuration: HTTPUploadConfiguration, httpClient: HTTPClient, threadPool: NIOThreadPool = .singleton)
    {
        self.configuration = configuration
        self.httpClient = httpClient
        self.threadPool = threadPool
    }

    /// A client with the configuration's connect timeout; shut it down when done.
    package static func makeHTTPClient(configuration: HTTPUploadConfiguration) -> HTTPClient {
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.redirectConfiguration = .disallow
        clientConfiguration.timeout = HTTPClient.Configuration.Timeout(
            connect: TimeAmount(configuration.connectTimeout), read: TimeAmount(configuration.requestTimeout))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
    }

    package func store(jobID: JobID, name: String, from file: URL) async throws -> StoredObject {
        let (kind, resultName) = try Self.kindAndName(storeName: name, attempt: configuration.attempt)
        let url = Self.uploadURL(
            baseURL: configuration.baseURL, jobID: jobID, attempt: configuration.attempt, kind: kind, name: resultName)
        let local = try await threadPool.runIfActive { try FileCopy.digest(of: file, followSymlinks: false) }
        var backoff = configuration.initialBackoff
        var lastFailure = UploadError(code: .unavailable, reason: "no try was made")
        for attempt in 1...max(1, configuration.attempts) {
            if attempt > 1 {
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, configuration.maximumBackoff)
            }
            do {
                let answer = try await put(url: url, file: file, size: local.size)
                guard answer.size == local.size, answer.sha256 == local.sha256 else {
                    throw UploadError(
                        code: .mismatch,
                        reason: "the gateway stored \(answer.size) bytes with sha256 \(answer.sha256); the file has "
                            + "\(local.size) bytes with sha256 \(local.sha256)")
                }
                return StoredObject(location: url, size: local.size, sha256: local.sha256)
            } catch let error as UploadError where error.code == .unavailable {
                lastFailure = error
            }
        }
        throw lastFailure
    }

    package func file(at location: String) throws -> URL {
        throw UploadError(code: .unsupported, reason: "uploaded results cannot be read back from a pod")
    }

    package func deleteAll(jobID: JobID) async throws {
        throw UploadError(code: .unsupported, reason: "uploaded results cannot be deleted from a pod")
    }

    private struct Answer: Decodable {
        var size: Int64
        var sha256: String
    }

    /// One try: transport failures, 429 and 5xx are `unavailable` (worth another try), other non-2xx `rejected`.
    private func put(url: String, file: URL, size: Int64) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = .PUT
        request.headers.add(name: "authorization", value: "Bearer \(configuration.token)")
        request.headers.add(name: "content-type", value: "application/octet-stream")
        request.body = .stream(FileChunks(file: file, threadPool: threadPool), length: .known(size))
        let status: Int
        let body: ByteBuffer
        do {
            let response = try await httpClient.execute(request, timeout: TimeAmount(configuration.requestTimeout))
            status = Int(response.status.code)
            body = try await response.body.collect(upTo: 64 << 10)
        } catch let error as UploadError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw UploadError(code: .unavailable, reason: "upload to \(Self.redacted(url)) failed: \(error)")
        }
        let text = String(buffer: body).prefix(500)
        guard (200..<300).contains(status) else {
            let code: UploadError.Code = status == 429 || status >= 500 ? .unavailable : .rejected
            throw UploadError(
                code: code, reason: "the gateway answered \(status) to \(Self.redacted(url)): \(text)", status: status)
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(String(buffer: body).utf8))
        } catch {
            throw UploadError(code: .rejected, reason: "the gateway's answer is not an upload receipt: \(text)")
        }
    }

    /// The attempt's workflow from `GET /internal/v1/jobs/{id}/attempts/{attempt}/workflow` (the configure step's
    /// input: the Kubernetes executor puts no workflow in any object), with the same tries as an upload. At most
    /// `limit` bytes.
    package func workflow(limit: Int = 8 << 20) async throws -> Data {
        let base =
            configuration.baseURL.hasSuffix("/") ? String(configuration.baseURL.dropLast()) : configuration.baseURL
        let url = "\(base)/internal/v1/jobs/\(configuration.jobID)/attempts/\(configuration.attempt)/workflow"
        var backoff = configuration.initialBackoff
        var lastFailure = UploadError(code: .unavailable, reason: "no try was made")
        for attempt in 1...max(1, configuration.attempts) {
            if attempt > 1 {
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, configuration.maximumBackoff)
            }
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "authorization", value: "Bearer \(configuration.token)")
            let status: Int
            let body: ByteBuffer
            do {
                let response = try await httpClient.execute(request, timeout: .seconds(60))
                status = Int(response.status.code)
                body = try await response.body.collect(upTo: limit)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastFailure = UploadError(
                    code: .unavailable, reason: "fetching the workflow from \(Self.redacted(url)) failed: \(error)")
                continue
            }
            if (200..<300).contains(status) { return Data(body.readableBytesView) }
            let failure = UploadError(
                code: status == 429 || status >= 500 ? .unavailable : .rejected,
                reason: "the gateway answered \(status) to \(Self.redacted(url)): \(String(buffer: body).prefix(500))",
                status: status)
            guard failure.code == .unavailable else { throw failure }
            lastFailure = failure
        }
        throw lastFailure
    }

    // MARK: Names and URLs

    /// `<attempt>/outputs/<name>` → output, `<attempt>/logs/<name>` → algorithmLog, `<attempt>/adminlogs/publish.log`
    /// → publishLog, other admin logs → configrationLog.
    package static func kindAndName(storeName: String, attempt: Int) throws -> (ResultKind, String) {
        let parts = storeName.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "\(attempt)", !parts[2].isEmpty else {
            throw UploadError(
                code: .invalidName, reason: "'\(storeName.prefix(200))' is not a result of attempt \(attempt)")
        }
        let name = String(parts[2])
        switch parts[1] {
        case "outputs": return (.output, name)
        case "logs": return (.algorithmLog, name)
        case "adminlogs": return (name == "publish.log" ? .publishLog : .configurationLog, name)
        default:
            throw UploadError(code: .invalidName, reason: "'\(storeName.prefix(200))' is not an output or a log")
        }
    }

    /// The endpoint for one file; every name segment is percent-encoded, the `/`s between them kept.
    package static func uploadURL(baseURL: String, jobID: JobID, attempt: Int, kind: ResultKind, name: String) -> String
    {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<"\u{80}"))
        allowed.insert(charactersIn: "-._~")
        let encoded = name.split(separator: "/", omittingEmptySubsequences: false).map {
            $0.addingPercentEncoding(withAllowedCharacters: allowed) ?? String($0)
        }.joined(separator: "/")
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        return "\(base)/internal/v1/jobs/\(jobID)/attempts/\(attempt)/results/\(kind.rawValue)/\(encoded)"
    }

    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return "the gateway" }
        components.user = nil
        components.password = nil
        components.query = nil
        return components.string ?? "the gateway"
    }
}

/// A file's bytes as an async sequence of chunks, read on the thread pool. Refuses symbolic links (`O_NOFOLLOW`).
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    let file: URL
    let threadPool: NIOThreadPool

    func makeAsyncIterator() -> Iterator {
        Iterator(file: file, threadPool: threadPool)
    }

    struct Iterator: AsyncIteratorProtocol {
        let file: URL
        let threadPool: NIOThreadPool
        var handle: FileHandle?
        var finished = false

        mutating func next() async throws -> ByteBuffer? {
            guard !finished else { return nil }
            if handle == nil {
                let file = self.file
                handle = try await threadPool.runIfActive {
                    FileHandle(
                        fileDescriptor: try FileCopy.openRegularFile(file, followSymlinks: false), closeOnDealloc: true)
                }
            }
            guard let handle else { return nil }
            let data = try await threadPool.runIfActive { try handle.read(upToCount: FileCopy.chunkSize) }
            guard let data, !data.isEmpty else {
                finished = true
                try? handle.close()
                self.handle = nil
                return nil
            }
            return ByteBuffer(bytes: data)
        }
    }
}
