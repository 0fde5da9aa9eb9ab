import AsyncHTTPClient
import Domain
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Storage

#if canImport(Glibc)
    import Glibc
#endif

/// Settings of the configure step.
package struct ProvisionerConfiguration: Sendable, Hashable {
    /// The operator's data directory: `path` inputs name files under it. nil refuses `path` inputs. Default nil.
    package var dataDirectory: URL?
    /// Time to establish a TCP (and TLS) connection. Applied by `makeHTTPClient(configuration:)`, because
    /// AsyncHTTPClient sets it per client. Default 10 s.
    package var connectTimeout: Duration
    /// Time for one whole download, redirects and body included. Default 5 minutes.
    package var downloadTimeout: Duration
    /// Largest file accepted from a URL or the data directory. Default 10 GiB.
    package var maxFileBytes: Int64
    /// Redirects followed per download; only to http and https. Default 5.
    package var maxRedirects: Int
    /// Whether URLs may point at loopback, private, link-local (cloud metadata) and similar addresses. Off by
    /// default, so a consumer's URL cannot make the worker fetch from the operator's own network. Default false.
    /// `C2D_ALLOW_PRIVATE_URLS=1`.
    package var allowPrivateNetworks: Bool
    /// Non-public networks URLs may reach even so, e.g. a data server inside the perimeter. Default none.
    /// `C2D_ALLOWED_PRIVATE_NETWORKS`.
    package var allowedNetworks: [IPNetwork] = []

    /// Where outbound requests may connect.
    package var addressPolicy: OutboundAddressPolicy {
        OutboundAddressPolicy(allowsEverything: allowPrivateNetworks, allowedNetworks: allowedNetworks)
    }
    /// The operator's secp256k1 private key (32 bytes), which signs downloads of `remote` sources from Ocean
    /// Providers, as pod-configuration's PRIVATE_KEY does. nil refuses `remote` sources. `C2D_OPERATOR_PRIVATE_KEY`.
    package var operatorPrivateKey: [UInt8]?

    package init(
        dataDirectory: URL? = nil, connectTimeout: Duration = .seconds(10), downloadTimeout: Duration = .seconds(300),
        maxFileBytes: Int64 = 10 << 30, maxRedirects: Int = 5, allowPrivateNetworks: Bool = false
    ) {
        self.allowPrivateNetworks = allowPrivateNetworks
        self.dataDirectory = dataDirectory
        self.connectTimeout = connectTimeout
        self.downloadTimeout = downloadTimeout
        self.maxFileBytes = maxFileBytes
        self.maxRedirects = maxRedirects
    }
}

/// The configure step: fetches a job's inputs and algorithm into its workspace, verifying checksums, and logs
/// every action to `adminlogs/configure.log`. Shared by the local executor and the in-pod `c2d pod configure`.
package struct Provisioner: Sendable {
    package let configuration: ProvisionerConfiguration
    let threadPool: NIOThreadPool
    /// Every request goes to the address its host was checked at (``PinnedHTTP``).
    let http: PinnedHTTP

    /// `httpClient` is the process's shared client (make it with `makeHTTPClient`); its event loops serve the
    /// provisioner's requests, each of which connects to the address that was checked for it. `resolver` finds
    /// hosts' addresses (default the system's). `clientConfiguration` replaces the one made from `configuration`
    /// (e.g. to trust another certificate authority); keep its redirects disallowed.
    package init(
        configuration: ProvisionerConfiguration, httpClient: HTTPClient, threadPool: NIOThreadPool = .singleton,
        resolver: HostResolver = .system, clientConfiguration: HTTPClient.Configuration? = nil
    ) {
        self.configuration = configuration
        self.threadPool = threadPool
        self.http = PinnedHTTP(
            addressGuard: AddressGuard(
                policy: configuration.addressPolicy, resolver: resolver, threadPool: threadPool),
            eventLoopGroup: httpClient.eventLoopGroup,
            configuration: clientConfiguration ?? Self.clientConfiguration(configuration))
    }

    /// A client suited to the provisioner (see ``clientConfiguration(_:)``). Shut it down when the process stops.
    package static func makeHTTPClient(
        configuration: ProvisionerConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) -> HTTPClient {
        HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: clientConfiguration(configuration))
    }

    /// Connect timeout from the configuration, redirects not followed by the client (the provisioner follows them
    /// itself, checking every hop), no decompression, no proxy.
    package static func clientConfiguration(_ configuration: ProvisionerConfiguration) -> HTTPClient.Configuration {
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.redirectConfiguration = .disallow
        clientConfiguration.timeout = HTTPClient.Configuration.Timeout(
            connect: TimeAmount(configuration.connectTimeout), read: TimeAmount(configuration.downloadTimeout))
        clientConfiguration.decompression = .disabled
        return clientConfiguration
    }

    /// Runs the configure step for `workflow` into `workspace` and writes `adminlogs/configure.log`. Throws the
    /// first failure, classified as data (31) or algorithm (32) provisioning; the log says why in more detail.
    package func provision(_ workflow: Workflow, into workspace: JobWorkspace) async throws(ProvisioningError) {
        let log: AdminLog
        do {
            log = try await AdminLog(file: workspace.configureLog, threadPool: threadPool)
        } catch {
            throw ProvisioningError(code: .dataProvisioningFailed, reason: "cannot write the configure log: \(error)")
        }
        do {
            try await provision(workflow, into: workspace, log: log)
            await log.line("configuration finished")
            await log.close()
        } catch {
            await log.line("configuration failed: \(error.reason)")
            await log.close()
            throw error
        }
    }

    private func provision(
        _ workflow: Workflow, into workspace: JobWorkspace, log: AdminLog
    ) async throws(ProvisioningError) {
        guard let stage = workflow.stage else {
            throw ProvisioningError(code: .dataProvisioningFailed, reason: "the workflow has no stage")
        }
        await log.line("configuring \(stage.input.count) input(s) and the algorithm")
        let metadataURI: String? =
            if case .object(let output) = stage.output { output["metadataUri"]?.stringValue } else { nil }
        for (position, input) in stage.input.enumerated() {
            try await provisionInput(
                input, position: position, metadataURI: metadataURI, workspace: workspace, log: log)
        }
        try await provisionAlgorithm(stage.algorithm, metadataURI: metadataURI, workspace: workspace, log: log)
    }

    // MARK: Inputs

    private func provisionInput(
        _ input: Workflow.Input, position: Int, metadataURI: String?, workspace: JobWorkspace, log: AdminLog
    ) async throws(ProvisioningError) {
        func fail(_ reason: String) -> ProvisioningError {
            ProvisioningError(code: .dataProvisioningFailed, reason: "input \(position) (\(input.id)): \(reason)")
        }
        var remoteURLs: [String] = []
        if input.url.isEmpty && input.path.isEmpty, let remote = RemoteSource(input.remote, did: input.id) {
            do {
                remoteURLs = try await downloadURLs(
                    for: remote, metadataURI: metadataURI, workspace: workspace, log: log, what: "input \(position)")
            } catch {
                throw fail(Self.describe(error))
            }
        }
        let sources = (input.url + remoteURLs).map { Source.url($0) } + input.path.map { Source.path($0) }
        guard !sources.isEmpty else { throw fail("no 'url' or 'path' given") }
        guard input.checksum.isEmpty || input.checksum.count == sources.count else {
            throw fail("\(input.checksum.count) checksums for \(sources.count) files")
        }
        for (number, source) in sources.enumerated() {
            let destination = workspace.inputFile(input, position: position, file: number)
            let relative = "inputs/\(WorkflowValidator.inputDirectoryName(input, position: position))/\(number)"
            let expected = input.checksum.isEmpty ? nil : input.checksum[number]
            do {
                let digest = try await fetch(
                    source, to: destination, log: log, what: "input \(position) file \(number)")
                try verify(digest, expected: expected)
                await log.line(
                    "input \(position) file \(number): \(digest.size) bytes, sha256 \(digest.sha256)"
                        + (expected == nil ? "" : " (checksum verified)") + " -> \(relative)")
            } catch {
                try? FileManager.default.removeItem(at: destination)
                throw fail("file \(number): \(Self.describe(error))")
            }
        }
    }

    // MARK: Algorithm

    private func provisionAlgorithm(
        _ algorithm: Workflow.Algorithm, metadataURI: String?, workspace: JobWorkspace, log: AdminLog
    ) async throws(ProvisioningError) {
        func fail(_ reason: String) -> ProvisioningError {
            ProvisioningError(code: .algorithmProvisioningFailed, reason: "algorithm: \(reason)")
        }
        let destination = workspace.algorithm
        do {
            let digest: FileDigest
            if let rawcode = algorithm.rawcode, !rawcode.isEmpty {
                digest = try await threadPool.runIfActive {
                    let writer = try AtomicFileWriter(destination: destination, permissions: 0o755)
                    try writer.write(Data(rawcode.utf8))
                    return try writer.commit()
                }
                await log.line("algorithm: raw code, \(digest.size) bytes, sha256 \(digest.sha256)")
            } else if let url = algorithm.url, !url.isEmpty {
                digest = try await fetch(.url(url), to: destination, log: log, what: "algorithm")
                await log.line("algorithm: \(digest.size) bytes, sha256 \(digest.sha256)")
            } else if let remote = RemoteSource(algorithm.remote, did: algorithm.id ?? "") {
                // pod-configuration's rule: the first file of the algorithm's service is the algorithm.
                let urls = try await downloadURLs(
                    for: remote, metadataURI: metadataURI, workspace: workspace, log: log, what: "algorithm")
                digest = try await fetch(.url(urls[0]), to: destination, log: log, what: "algorithm")
                await log.line("algorithm: \(digest.size) bytes, sha256 \(digest.sha256)")
            } else {
                throw RuntimeIssue("the algorithm has none of 'rawcode', 'url' or 'remote'")
            }
            try verify(digest, expected: algorithm.checksum)
            if algorithm.checksum != nil { await log.line("algorithm: checksum verified") }
            // Executable, so that an entrypoint of plain `$ALGO` works for scripts with a shebang.
            try await threadPool.runIfActive {
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: destination.path)
            }
            if let custom = algorithm.algocustomdata {
                let target = workspace.algoCustomData
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                let json = try encoder.encode(custom)
                try await threadPool.runIfActive {
                    let writer = try AtomicFileWriter(destination: target)
                    try writer.write(json)
                    try writer.commit()
                }
                await log.line("algorithm custom data: \(json.count) bytes -> inputs/algoCustomData.json")
            }
        } catch {
            try? FileManager.default.removeItem(at: destination)
            throw fail(Self.describe(error))
        }
    }

    // MARK: Fetching

    private enum Source {
        case url(String)
        case path(String)
    }

    private func fetch(_ source: Source, to destination: URL, log: AdminLog, what: String) async throws -> FileDigest {
        switch source {
        case .url(let url):
            await log.line("\(what): downloading \(AdminLog.redact(url))")
            return try await download(url, to: destination, log: log, what: what)
        case .path(let path):
            await log.line("\(what): copying '\(path)' from the data directory")
            return try await copyFromDataDirectory(path, to: destination)
        }
    }

    /// Copies a file named relative to the data directory. Symbolic links are resolved first and the result must
    /// still be inside the data directory, so neither `..` nor a link can reach other files of the host.
    private func copyFromDataDirectory(_ path: String, to destination: URL) async throws -> FileDigest {
        guard let dataDirectory = configuration.dataDirectory else {
            throw RuntimeIssue("'path' inputs are disabled: no data directory is configured")
        }
        guard WorkflowValidator.isContainedRelativePath(path) else {
            throw RuntimeIssue("path '\(path.prefix(200))' is not a relative path inside the data directory")
        }
        let limit = configuration.maxFileBytes
        return try await threadPool.runIfActive {
            guard let root = Self.realPath(dataDirectory.path) else {
                throw RuntimeIssue("the data directory does not exist")
            }
            guard let resolved = Self.realPath(dataDirectory.appendingPathComponent(path).path) else {
                throw RuntimeIssue("path '\(path.prefix(200))' does not exist in the data directory")
            }
            guard resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
                throw RuntimeIssue("path '\(path.prefix(200))' resolves outside the data directory")
            }
            return try FileCopy.copy(
                from: URL(fileURLWithPath: resolved), to: destination, limit: limit, followSymlinks: false)
        }
    }

    /// Streams a URL to `destination` (never holding the body in memory), following at most `maxRedirects`
    /// redirects to http(s) URLs, all within `downloadTimeout`.
    private func download(_ url: String, to destination: URL, log: AdminLog, what: String) async throws -> FileDigest {
        let configuration = self.configuration
        let http = self.http
        let threadPool = self.threadPool
        /// What one hop ended in.
        enum Hop: Sendable {
            case redirect(status: UInt, location: String?)
            case file(FileDigest)
        }
        do {
            return try await withDeadline(configuration.downloadTimeout, operation: "download") {
                var current = url
                var redirects = 0
                while true {
                    var request = HTTPClientRequest(url: current)
                    request.method = .GET
                    // Every hop is checked and pinned, so a public URL cannot redirect into the operator's network.
                    let hop = try await http.withResponse(
                        to: request, deadline: .now() + TimeAmount(configuration.downloadTimeout)
                    ) { response -> Hop in
                        let status = response.status.code
                        if [301, 302, 303, 307, 308].contains(status) {
                            return .redirect(status: status, location: response.headers.first(name: "location"))
                        }
                        guard (200..<300).contains(status) else {
                            throw RuntimeIssue("HTTP \(status) from \(AdminLog.redact(current))")
                        }
                        if let length = response.headers.first(name: "content-length").flatMap(Int64.init),
                            length > configuration.maxFileBytes
                        {
                            throw RuntimeIssue(
                                "the file is \(length) bytes, above the limit of \(configuration.maxFileBytes) bytes")
                        }
                        return .file(
                            try await Self.stream(
                                response.body, to: destination, limit: configuration.maxFileBytes,
                                threadPool: threadPool))
                    }
                    switch hop {
                    case .file(let digest):
                        return digest
                    case .redirect(let status, let location):
                        guard let location, let base = URL(string: current),
                            let next = URL(string: location, relativeTo: base)?.absoluteURL
                        else {
                            throw RuntimeIssue("HTTP \(status) redirect without a usable Location")
                        }
                        redirects += 1
                        guard redirects <= configuration.maxRedirects else {
                            throw RuntimeIssue("more than \(configuration.maxRedirects) redirects")
                        }
                        current = next.absoluteString
                        await log.line("\(what): HTTP \(status), redirected to \(AdminLog.redact(current))")
                    }
                }
            }
        } catch let error as DeadlineExceeded {
            throw RuntimeIssue("download did not finish within \(error.limit)")
        }
    }

    /// Bytes gathered before one write: fewer thread-pool hops than writing each network chunk.
    private static let writeBatchBytes = 1 << 20

    private static func stream(
        _ body: HTTPClientResponse.Body, to destination: URL, limit: Int64, threadPool: NIOThreadPool
    ) async throws -> FileDigest {
        let writer = try await threadPool.runIfActive { try AtomicFileWriter(destination: destination, limit: limit) }
        do {
            var pending = ByteBuffer()
            for try await chunk in body {
                var chunk = chunk
                pending.writeBuffer(&chunk)
                if pending.readableBytes >= writeBatchBytes {
                    let batch = pending
                    pending = ByteBuffer()
                    try await threadPool.runIfActive { try batch.withUnsafeReadableBytes { try writer.write($0) } }
                }
            }
            let rest = pending
            return try await threadPool.runIfActive {
                try rest.withUnsafeReadableBytes { try writer.write($0) }
                return try writer.commit()
            }
        } catch {
            writer.discard()
            throw error
        }
    }

    // MARK: Helpers

    private func verify(_ digest: FileDigest, expected: String?) throws {
        guard let expected else { return }
        guard let hex = WorkflowValidator.sha256Hex(expected) else {
            throw RuntimeIssue("checksum '\(expected.prefix(80))' is not a sha-256 digest")
        }
        guard hex == digest.sha256 else {
            throw RuntimeIssue("checksum mismatch: expected sha256 \(hex), got \(digest.sha256)")
        }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// A failure as one line for the job's owner: our own messages as they are, others without internals.
    static func describe(_ error: any Error) -> String {
        switch error {
        case let issue as RuntimeIssue: issue.message
        case let error as StorageError where error.code == .sizeLimitExceeded: "the file is larger than the limit"
        case let error as StorageError where error.code == .notARegularFile: "not a regular file"
        case let error as StorageError: error.message
        case let error as HTTPClientError: "HTTP request failed (\(error))"
        case is CancellationError: "cancelled"
        default: "\(error)"
        }
    }
}

/// A step failure whose message is already fit for the job's owner.
struct RuntimeIssue: Error, CustomStringConvertible {
    var message: String

    init(_ message: String) {
        self.message = message
    }

    var description: String { message }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
