import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A small typed client for the part of the Kubernetes API c2d uses (docs/architecture.md, "Modules").
///
/// Every call waits for the client-side rate limit, carries the bearer token (re-read when its file changes), has a
/// deadline, retries 429 (honouring `Retry-After`) for every verb, and retries 5xx and transport failures for reads
/// only; a create is retried after a transport failure only when the connection was never made. Errors are
/// ``KubernetesError`` (or `CancellationError` when the calling task is cancelled).
///
/// Call ``shutdown()`` before dropping the client: it owns an `HTTPClient`.
package final class KubernetesClient: Sendable {
    /// Pass as `namespace` to list or watch across all namespaces.
    package static let allNamespaces = ""

    package let configuration: KubernetesConfiguration
    private let httpClient: HTTPClient
    private let baseURL: String
    private let limiter: PriorityRateLimiter
    private let permits: PriorityPermits
    private let credentials: Credentials
    private let logger: Logger

    package init(
        configuration: KubernetesConfiguration, logger: Logger = Logger(label: "c2d.kubernetes")
    ) throws(KubernetesError) {
        let server =
            configuration.server.hasSuffix("/") ? String(configuration.server.dropLast()) : configuration.server
        guard let url = URL(string: server), let scheme = url.scheme, ["http", "https"].contains(scheme),
            url.host != nil
        else {
            throw .configuration("server \"\(configuration.server)\" is not an http(s) URL")
        }
        var httpConfiguration = HTTPClient.Configuration(
            tlsConfiguration: scheme == "https" ? try Self.makeTLSConfiguration(configuration) : nil,
            redirectConfiguration: .disallow,
            timeout: .init(
                connect: TimeAmount(configuration.connectTimeout),
                read: TimeAmount(configuration.streamIdleTimeout))
        )
        httpConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(
            1, configuration.maxConnections)
        self.configuration = configuration
        self.baseURL = server
        self.httpClient = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: httpConfiguration,
            backgroundActivityLogger: logger)
        self.limiter = PriorityRateLimiter(
            TokenBucket(queriesPerSecond: configuration.queriesPerSecond, burst: configuration.burst))
        // A quarter of the connections stays for watches and log follows, which hold one each for their life.
        self.permits = PriorityPermits(limit: max(1, configuration.maxConnections * 3 / 4))
        self.credentials = Credentials(configuration.authentication)
        self.logger = logger
    }

    /// Closes connections; in-flight requests fail.
    package func shutdown() async throws {
        try await httpClient.shutdown()
    }

    // MARK: - Operations

    /// Creates `object` (POST) and returns it as stored, with uid and resourceVersion. The namespace is `namespace`,
    /// else the object's, else the configured default.
    package func create<R: KubernetesResource>(
        _ object: R, namespace: String? = nil, priority: RequestPriority = .starting
    ) async throws -> R {
        try await create(object, as: R.self, namespace: namespace, priority: priority)
    }

    /// Creates `object` and decodes the stored object as `projection` only (say its uid and labels): a launch that
    /// needs the uid should not pay for decoding the whole pod or Job the API server echoes back.
    package func create<R: KubernetesResource, P: Decodable & Sendable>(
        _ object: R, as projection: P.Type, namespace: String? = nil, priority: RequestPriority = .starting
    ) async throws -> P {
        var object = object
        object.apiVersion = R.resource.apiVersion
        object.kind = R.resource.kind
        let namespace = resolve(namespace ?? object.metadata.namespace)
        let body = try encode(object, context: "encode \(R.resource.kind)")
        let call = Call(
            method: .POST, path: R.resource.collectionPath(namespace: namespace), body: body,
            contentType: "application/json",
            context: "create \(R.resource.kind) \(object.metadata.name ?? object.metadata.generateName ?? "")",
            priority: priority)
        return try decode(P.self, from: try await execute(call), context: call.context)
    }

    package func get<R: KubernetesResource>(_ type: R.Type, name: String, namespace: String? = nil) async throws -> R {
        try await get(type, as: R.self, name: name, namespace: namespace)
    }

    /// Reads one object, decoded as `projection` only.
    package func get<R: KubernetesResource, P: Decodable & Sendable>(
        _ type: R.Type, as projection: P.Type, name: String, namespace: String? = nil
    ) async throws -> P {
        let call = Call(
            method: .GET, path: R.resource.objectPath(name: name, namespace: resolve(namespace)),
            context: "get \(R.resource.kind) \(name)")
        return try decode(P.self, from: try await execute(call), context: call.context)
    }

    /// One page of `type`, items decoded as the full kind.
    package func list<R: KubernetesResource>(
        _ type: R.Type, namespace: String? = nil, options: ListOptions = ListOptions()
    ) async throws -> ObjectList<R> {
        try await list(type, as: R.self, namespace: namespace, options: options)
    }

    /// One page of `type`, items decoded as `projection`: declare only the fields you read (say `metadata.uid`,
    /// `metadata.labels`, `status.conditions`) and decoding skips the rest of each object.
    package func list<R: KubernetesResource, P: Decodable & Sendable>(
        _ type: R.Type, as projection: P.Type, namespace: String? = nil, options: ListOptions = ListOptions()
    ) async throws -> ObjectList<P> {
        let call = Call(
            method: .GET, path: R.resource.collectionPath(namespace: resolve(namespace)), query: options.query,
            context: "list \(R.resource.plural)")
        return try decode(ObjectList<P>.self, from: try await execute(call), context: call.context)
    }

    /// Every page of `type`, following `continue` tokens, `pageSize` items at a time. The result carries the first
    /// page's resourceVersion (all pages are one snapshot): watch from it. A continue token that expired mid-way
    /// throws ``KubernetesError/Code-swift.struct/gone``; start again.
    package func listAll<R: KubernetesResource, P: Decodable & Sendable>(
        _ type: R.Type, as projection: P.Type, namespace: String? = nil, options: ListOptions = ListOptions(),
        pageSize: Int = 500
    ) async throws -> ObjectList<P> {
        var options = options
        options.limit = pageSize
        options.continueToken = nil
        var first = try await list(type, as: projection, namespace: namespace, options: options)
        var token = first.metadata.continue
        while let next = token, !next.isEmpty {
            options.continueToken = next
            let page = try await list(type, as: projection, namespace: namespace, options: options)
            first.items.append(contentsOf: page.items)
            token = page.metadata.continue
        }
        first.metadata.continue = nil
        first.metadata.remainingItemCount = nil
        return first
    }

    /// Every page of `type`, decoded as the full kind.
    package func listAll<R: KubernetesResource>(
        _ type: R.Type, namespace: String? = nil, options: ListOptions = ListOptions(), pageSize: Int = 500
    ) async throws -> ObjectList<R> {
        try await listAll(type, as: R.self, namespace: namespace, options: options, pageSize: pageSize)
    }

    /// Deletes an object. The server answers with the object (when finalizers or foreground deletion keep it around
    /// for a while) or a `Status`; either is success. A missing object throws ``KubernetesError/Code-swift.struct/notFound``.
    package func delete<R: KubernetesResource>(
        _ type: R.Type, name: String, namespace: String? = nil,
        propagationPolicy: PropagationPolicy? = .background, gracePeriodSeconds: Int? = nil,
        priority: RequestPriority = .finishing
    ) async throws {
        var query: [(String, String)] = []
        if let propagationPolicy { query.append(("propagationPolicy", propagationPolicy.rawValue)) }
        if let gracePeriodSeconds { query.append(("gracePeriodSeconds", String(gracePeriodSeconds))) }
        let call = Call(
            method: .DELETE, path: R.resource.objectPath(name: name, namespace: resolve(namespace)), query: query,
            context: "delete \(R.resource.kind) \(name)", priority: priority)
        _ = try await execute(call)
    }

    /// Applies a JSON merge patch (RFC 7386) and returns the updated object. Good for small changes, e.g.
    /// `["spec": ["ttlSecondsAfterFinished": 60]]` or `["metadata": ["labels": ["c2d.io/state": "done"]]]`; a nil
    /// value (encoded as `null`) removes a key.
    package func patch<R: KubernetesResource>(
        _ type: R.Type, name: String, namespace: String? = nil, mergePatch: some Encodable & Sendable
    ) async throws -> R {
        let body = try encode(mergePatch, context: "encode patch of \(R.resource.kind) \(name)")
        let call = Call(
            method: .PATCH, path: R.resource.objectPath(name: name, namespace: resolve(namespace)), body: body,
            contentType: "application/merge-patch+json", context: "patch \(R.resource.kind) \(name)",
            priority: .finishing)
        return try decode(R.self, from: try await execute(call), context: call.context)
    }

    /// Watches `type` from `options.resourceVersion`, decoding objects as `projection`. The sequence ends when the
    /// server closes the watch (after `timeoutSeconds`); watch again from the last resourceVersion seen. A too-old
    /// resourceVersion throws ``KubernetesError/Code-swift.struct/gone``, at the start or as an `ERROR` event: relist.
    package func watch<R: KubernetesResource, P: Decodable & Sendable>(
        _ type: R.Type, as projection: P.Type, namespace: String? = nil, options: WatchOptions = WatchOptions()
    ) async throws -> WatchStream<P> {
        // The server must end the watch before the idle timeout would, or a quiet watch would look dead.
        let ceiling = max(1, Int(configuration.streamIdleTimeout / .seconds(1)) - 30)
        let call = Call(
            method: .GET, path: R.resource.collectionPath(namespace: resolve(namespace)),
            query: options.query(maximumTimeoutSeconds: ceiling), context: "watch \(R.resource.plural)")
        let response = try await open(call)
        return WatchStream(body: response.body, context: call.context)
    }

    /// Watches `type`, decoding objects as the full kind.
    package func watch<R: KubernetesResource>(
        _ type: R.Type, namespace: String? = nil, options: WatchOptions = WatchOptions()
    ) async throws -> WatchStream<R> {
        try await watch(type, as: R.self, namespace: namespace, options: options)
    }

    /// A pod's log so far (capped by `options.limitBytes`, else by ``KubernetesConfiguration/maxResponseBytes``).
    package func podLogs(name: String, namespace: String? = nil, options: PodLogOptions = PodLogOptions())
        async throws -> ByteBuffer
    {
        let call = Call(
            method: .GET, path: Pod.resource.objectPath(name: name, namespace: resolve(namespace)) + "/log",
            query: options.query(follow: false), accept: "*/*", context: "logs of pod \(name)")
        return try await execute(call)
    }

    /// Follows a pod's log: chunks as the container writes them, ending when the container exits. A container
    /// silent for ``KubernetesConfiguration/streamIdleTimeout`` ends the stream with a timeout; follow again with
    /// `sinceSeconds` or `timestamps` to resume.
    package func followPodLogs(name: String, namespace: String? = nil, options: PodLogOptions = PodLogOptions())
        async throws -> PodLogStream
    {
        let call = Call(
            method: .GET, path: Pod.resource.objectPath(name: name, namespace: resolve(namespace)) + "/log",
            query: options.query(follow: true), accept: "*/*", context: "follow logs of pod \(name)")
        let response = try await open(call)
        return PodLogStream(body: response.body, context: call.context)
    }

    // MARK: - Request pipeline

    private func resolve(_ namespace: String?) -> String? {
        guard let namespace else { return configuration.namespace }
        return namespace == Self.allNamespaces ? nil : namespace
    }

    /// Sends `call` and returns its whole body, with retries; the timeout covers the head and the body.
    private func execute(_ call: Call) async throws -> ByteBuffer {
        let timeout = configuration.requestTimeout
        let maxBytes = configuration.maxResponseBytes
        return try await withRetries(call, holdingPermit: true) { request in
            try await Self.withTimeout(timeout, context: call.context) { [httpClient, logger] in
                let response = try await httpClient.execute(
                    request, deadline: .now() + TimeAmount(timeout), logger: logger)
                let body = try await response.body.collect(upTo: maxBytes)
                guard (200..<300).contains(response.status.code) else {
                    throw HTTPFailure(status: response.status, headers: response.headers, body: body)
                }
                return body
            }
        }
    }

    /// Sends `call` and returns the response once a 2xx head arrived, for the caller to stream the body.
    private func open(_ call: Call) async throws -> HTTPClientResponse {
        let timeout = configuration.requestTimeout
        return try await withRetries(call, holdingPermit: false) { [httpClient, logger] request in
            let response = try await httpClient.execute(
                request, deadline: .now() + TimeAmount(timeout), logger: logger)
            guard (200..<300).contains(response.status.code) else {
                let body = try await Self.withTimeout(timeout, context: call.context) {
                    try await response.body.collect(upTo: 1 << 20)
                }
                throw HTTPFailure(status: response.status, headers: response.headers, body: body)
            }
            return response
        }
    }

    /// Sends `call` through the rate limit, retrying what may be retried. With `holdingPermit`, each try also holds
    /// one of the short requests' permits while it runs (not while it waits to retry).
    private func withRetries<T: Sendable>(
        _ call: Call, holdingPermit: Bool, attempt operation: (HTTPClientRequest) async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let request = try await makeRequest(call)
            if holdingPermit { try await permits.acquire(call.priority) }
            let outcome: Result<T, any Error>
            do {
                try await limiter.acquire(call.priority)
                outcome = .success(try await operation(request))
            } catch {
                outcome = .failure(error)
            }
            if holdingPermit { await permits.release() }
            var logger = self.logger
            logger[metadataKey: "k8s.request"] = "\(call.method) \(call.path)"
            logger[metadataKey: "k8s.attempt"] = "\(attempt)"
            let delay: Duration
            let failed: KubernetesError
            do {
                let result = try outcome.get()
                logger.debug("kubernetes request succeeded")
                return result
            } catch let failure as HTTPFailure {
                failed = KubernetesError(
                    httpStatus: Int(failure.status.code), body: failure.body.readableBytesView, context: call.context)
                guard
                    let wait = RetryPolicy.delay(
                        status: Int(failure.status.code), retryAfter: failure.headers.first(name: "Retry-After"),
                        isIdempotent: call.isIdempotent, attempt: attempt)
                else { throw failed }
                delay = wait
            } catch {
                if Task.isCancelled { throw CancellationError() }
                let mapped = Self.transportError(error, context: call.context)
                guard call.isIdempotent || Self.isConnectFailure(error) else { throw mapped }
                (delay, failed) = (RetryPolicy.backoff(attempt: attempt), mapped)
            }
            guard attempt <= configuration.maxRetries else { throw failed }
            logger.debug(
                "kubernetes request will be retried",
                metadata: ["k8s.error": "\(failed)", "k8s.delay": "\(delay)"])
            try await Task.sleep(for: delay)
        }
    }

    private func makeRequest(_ call: Call) async throws -> HTTPClientRequest {
        var url = baseURL + call.path
        if !call.query.isEmpty {
            url += "?" + call.query.map { "\($0.0)=\(ResourceInfo.escape($0.1))" }.joined(separator: "&")
        }
        var request = HTTPClientRequest(url: url)
        request.method = call.method
        request.headers.add(name: "Accept", value: call.accept)
        request.headers.add(name: "User-Agent", value: "c2d")
        if let token = try await credentials.bearerToken() {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        if let body = call.body {
            request.headers.add(name: "Content-Type", value: call.contentType ?? "application/json")
            request.body = .bytes(body)
        }
        return request
    }

    private func encode(_ value: some Encodable, context: String) throws -> ByteBuffer {
        do {
            return ByteBuffer(data: try KubernetesJSON.makeEncoder().encode(value))
        } catch {
            throw KubernetesError(code: .invalid, message: "\(context): \(error)")
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, from body: ByteBuffer, context: String) throws -> T {
        do {
            return try KubernetesJSON.makeDecoder().decode(T.self, from: body)
        } catch {
            throw KubernetesError(code: .decoding, message: "\(context): cannot decode \(T.self): \(error)")
        }
    }

    /// Runs `operation`, failing with a timeout if it has not finished after `timeout`. AsyncHTTPClient's deadline
    /// stops at the response head, so bodies need this to be bounded.
    static func withTimeout<T: Sendable>(
        _ timeout: Duration, context: String, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else {
                throw KubernetesError(code: .timeout, message: "\(context): no complete response within \(timeout)")
            }
            return result
        }
    }

    static func transportError(_ error: any Error, context: String) -> KubernetesError {
        if let error = error as? KubernetesError { return error }
        if let error = error as? HTTPClientError,
            [.deadlineExceeded, .readTimeout, .connectTimeout, .getConnectionFromPoolTimeout].contains(error)
        {
            return KubernetesError(code: .timeout, message: "\(context): \(error)")
        }
        if error is NIOTooManyBytesError {
            return KubernetesError(code: .decoding, message: "\(context): response too large (\(error))")
        }
        return KubernetesError(code: .transport, message: "\(context): \(error)")
    }

    /// Failures that mean the request never left this process, so even a create may be sent again.
    static func isConnectFailure(_ error: any Error) -> Bool {
        switch error {
        case let error as HTTPClientError:
            return error == .connectTimeout || error == .getConnectionFromPoolTimeout
        case let error as ChannelError:
            if case .connectTimeout = error { return true }
            return false
        case is NIOConnectionError:
            return true
        case let error as IOError:
            return [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(error.errnoCode)
        default:
            return false
        }
    }

    private static func makeTLSConfiguration(
        _ configuration: KubernetesConfiguration
    ) throws(KubernetesError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            if let pem = configuration.certificateAuthorityPEM {
                let certificates = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
                guard !certificates.isEmpty else { throw KubernetesError.configuration("no certificate in the CA PEM") }
                tls.trustRoots = .certificates(certificates)
            }
            if case .clientCertificate(let certificatePEM, let keyPEM) = configuration.authentication {
                let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
                guard !chain.isEmpty else { throw KubernetesError.configuration("no certificate in the client PEM") }
                tls.certificateChain = chain.map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
            }
        } catch let error as KubernetesError {
            throw error
        } catch {
            throw .configuration("TLS material cannot be loaded: \(error)")
        }
        if configuration.insecureSkipTLSVerify { tls.certificateVerification = .none }
        return tls
    }
}

/// How a delete treats the object's dependents (Pods of a Job, objects owned by a Secret).
package enum PropagationPolicy: String, Sendable, Hashable {
    /// Dependents are deleted by the garbage collector after the object is gone.
    case background = "Background"
    /// The object stays (with a deletionTimestamp) until its dependents are deleted.
    case foreground = "Foreground"
    /// Dependents are left behind. The API's default for Jobs, which is why callers should not rely on defaults.
    case orphan = "Orphan"
}

package struct ListOptions: Sendable, Hashable {
    /// E.g. `app.kubernetes.io/managed-by=c2d,c2d.io/step in (algorithm)`.
    package var labelSelector: String?
    /// E.g. `status.phase=Running`, `metadata.name=c2d-1`.
    package var fieldSelector: String?
    /// Page size; the response then carries a continue token when more items remain.
    package var limit: Int?
    package var continueToken: String?
    /// `"0"` lets the server answer from its watch cache (cheaper, possibly slightly stale); nil reads the latest.
    package var resourceVersion: String?

    package init(
        labelSelector: String? = nil, fieldSelector: String? = nil, limit: Int? = nil, continueToken: String? = nil,
        resourceVersion: String? = nil
    ) {
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.limit = limit
        self.continueToken = continueToken
        self.resourceVersion = resourceVersion
    }

    var query: [(String, String)] {
        var query: [(String, String)] = []
        if let labelSelector { query.append(("labelSelector", labelSelector)) }
        if let fieldSelector { query.append(("fieldSelector", fieldSelector)) }
        if let limit { query.append(("limit", String(limit))) }
        if let continueToken { query.append(("continue", continueToken)) }
        if let resourceVersion { query.append(("resourceVersion", resourceVersion)) }
        return query
    }
}

package struct WatchOptions: Sendable, Hashable {
    package var labelSelector: String?
    package var fieldSelector: String?
    /// Start after this version (a list's `metadata.resourceVersion` or the last event's); nil starts with synthetic
    /// ADDED events for every existing object.
    package var resourceVersion: String?
    /// Ask for BOOKMARK events, which advance the resourceVersion without a change (default true).
    package var allowWatchBookmarks: Bool
    /// The server ends the watch after this long (default 300 s; capped below the client's stream idle timeout).
    package var timeoutSeconds: Int

    package init(
        labelSelector: String? = nil, fieldSelector: String? = nil, resourceVersion: String? = nil,
        allowWatchBookmarks: Bool = true, timeoutSeconds: Int = 300
    ) {
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.resourceVersion = resourceVersion
        self.allowWatchBookmarks = allowWatchBookmarks
        self.timeoutSeconds = timeoutSeconds
    }

    func query(maximumTimeoutSeconds: Int) -> [(String, String)] {
        var query: [(String, String)] = [("watch", "true")]
        if let labelSelector { query.append(("labelSelector", labelSelector)) }
        if let fieldSelector { query.append(("fieldSelector", fieldSelector)) }
        if let resourceVersion { query.append(("resourceVersion", resourceVersion)) }
        if allowWatchBookmarks { query.append(("allowWatchBookmarks", "true")) }
        query.append(("timeoutSeconds", String(max(1, min(timeoutSeconds, maximumTimeoutSeconds)))))
        return query
    }
}

package struct PodLogOptions: Sendable, Hashable {
    /// Required when the pod has more than one container.
    package var container: String?
    package var limitBytes: Int?
    package var sinceSeconds: Int?
    package var tailLines: Int?
    /// Prefix every line with an RFC 3339 timestamp.
    package var timestamps: Bool
    /// The log of the previous, terminated instance of the container.
    package var previous: Bool

    package init(
        container: String? = nil, limitBytes: Int? = nil, sinceSeconds: Int? = nil, tailLines: Int? = nil,
        timestamps: Bool = false, previous: Bool = false
    ) {
        self.container = container
        self.limitBytes = limitBytes
        self.sinceSeconds = sinceSeconds
        self.tailLines = tailLines
        self.timestamps = timestamps
        self.previous = previous
    }

    func query(follow: Bool) -> [(String, String)] {
        var query: [(String, String)] = []
        if let container { query.append(("container", container)) }
        if follow { query.append(("follow", "true")) }
        if let limitBytes { query.append(("limitBytes", String(limitBytes))) }
        if let sinceSeconds { query.append(("sinceSeconds", String(sinceSeconds))) }
        if let tailLines { query.append(("tailLines", String(tailLines))) }
        if timestamps { query.append(("timestamps", "true")) }
        if previous { query.append(("previous", "true")) }
        return query
    }
}

/// One request as the pipeline sees it.
private struct Call: Sendable {
    var method: HTTPMethod
    var path: String
    var query: [(String, String)] = []
    var body: ByteBuffer? = nil
    var contentType: String? = nil
    var accept = "application/json"
    /// What is being done, for error messages: "create Job c2d-1-0-algorithm".
    var context: String
    /// Its place in the rate limiter's queue; by verb unless the caller says otherwise.
    var priority: RequestPriority = .observing

    /// Reads may be repeated freely; writes only when they certainly were not received.
    var isIdempotent: Bool { method == .GET }
}

/// A non-2xx response, carried from an attempt to the retry decision.
private struct HTTPFailure: Error {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// Supplies the bearer token, re-reading a token file when its modification time changes.
actor Credentials {
    private let authentication: KubernetesConfiguration.Authentication
    private var cached: (token: String, modified: Date?)?

    init(_ authentication: KubernetesConfiguration.Authentication) { self.authentication = authentication }

    func bearerToken() throws(KubernetesError) -> String? {
        switch authentication {
        case .none, .clientCertificate: return nil
        case .bearerToken(let token): return token
        case .bearerTokenFile(let path):
            // Projected tokens are symlinks swapped by the kubelet; stat the target, not the link.
            let target = (path as NSString).resolvingSymlinksInPath
            let modified = (try? FileManager.default.attributesOfItem(atPath: target))?[.modificationDate] as? Date
            if let cached, modified != nil, cached.modified == modified { return cached.token }
            do {
                let token = try String(contentsOfFile: target, encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                cached = (token, modified)
                return token
            } catch {
                throw .configuration("cannot read bearer token file \(path): \(error.localizedDescription)")
            }
        }
    }
}
