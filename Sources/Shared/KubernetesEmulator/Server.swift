import HTTPTypes
import Hummingbird
import NIOCore

/// Routes requests by path exactly as the real API server lays them out, and answers `Status` bodies on errors.
struct EmulatorResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let cluster: Cluster
    let configuration: KubernetesEmulatorConfiguration

    /// A parsed resource path: `/api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]]` or the `/apis/...` form.
    struct ResourcePath {
        var resource: ResourceType
        var namespace: String?
        var name: String?
        var subresource: String?
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        let segments = request.uri.path.split(separator: "/").map(String.init)
        let query = Self.parseQuery(request.uri.query)
        do {
            if segments.first == "_emulator" { return try await emulatorEndpoint(request, segments) }
            if let response = try discovery(request, segments) {
                try await admit(verb: "get", resource: "discovery")
                return response
            }
            guard let path = try Self.resourcePath(segments) else { throw APIStatus.pathNotFound() }
            return try await resourceRequest(request, path, query)
        } catch let status as APIStatus {
            return Self.statusResponse(status)
        } catch let error as JSONParseError {
            return Self.statusResponse(.badRequest("the body of the request could not be decoded: \(error)"))
        } catch {
            return Self.statusResponse(.internalError("\(error)"))
        }
    }

    // MARK: Responses

    static func json(_ code: Int, _ bytes: [UInt8]) -> Response {
        Response(
            status: .init(code: code), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func json(_ code: Int, _ value: JSON) -> Response { json(code, value.serialized()) }

    static func statusResponse(_ status: APIStatus) -> Response {
        var response = json(status.code, status.json)
        if let retry = status.retryAfterSeconds { response.headers[.retryAfter] = String(retry) }
        return response
    }

    // MARK: Paths and queries

    static func parseQuery(_ query: String?) -> [String: String] {
        var result: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = percentDecode(String(parts[0]))
            result[key] = parts.count > 1 ? percentDecode(String(parts[1])) : ""
        }
        return result
    }

    /// Go clients encode spaces as `+` (url.Values), which set-based label selectors contain.
    static func percentDecode(_ text: String) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func resourcePath(_ segments: [String]) throws -> ResourcePath? {
        var rest: ArraySlice<String>
        var group = ""
        var version = ""
        if segments.count >= 2 && segments[0] == "api" {
            version = segments[1]
            rest = segments[2...]
        } else if segments.count >= 3 && segments[0] == "apis" {
            group = segments[1]
            version = segments[2]
            rest = segments[3...]
        } else {
            return nil
        }
        var namespace: String?
        if rest.first == "namespaces" && rest.count >= 3 {
            namespace = rest[rest.startIndex + 1]
            rest = rest.dropFirst(2)
        }
        guard let resourceName = rest.first,
            let resource = ResourceType.find(group: group, version: version, name: resourceName)
        else { return nil }
        rest = rest.dropFirst()
        let name = rest.first
        let subresource = rest.dropFirst().first
        if rest.count > 2 { return nil }
        if name != nil && namespace == nil { return nil }
        return ResourcePath(resource: resource, namespace: namespace, name: name, subresource: subresource)
    }

    func discovery(_ request: Request, _ segments: [String]) throws -> Response? {
        guard request.method == .get else { return nil }
        let document: JSON?
        switch segments.count {
        case 0:
            document = [
                "paths": [
                    "/api", "/api/v1", "/apis", "/apis/batch", "/apis/batch/v1", "/apis/networking.k8s.io",
                    "/apis/networking.k8s.io/v1", "/healthz", "/livez", "/readyz", "/version",
                ]
            ]
        case 1 where ["healthz", "livez", "readyz"].contains(segments[0]):
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: "ok")))
        case 1 where segments[0] == "version": document = Discovery.version()
        case 1 where segments[0] == "api": document = Discovery.coreVersions()
        case 1 where segments[0] == "apis": document = Discovery.groupList()
        case 2 where segments[0] == "api": document = Discovery.resourceList(group: "", version: segments[1])
        case 2 where segments[0] == "apis": document = Discovery.group(segments[1])
        case 3 where segments[0] == "apis": document = Discovery.resourceList(group: segments[1], version: segments[2])
        case 2 where segments[0] == "openapi" && segments[1] == "v3": document = Discovery.openAPIIndex()
        case 4...5 where segments[0] == "openapi" && segments[1] == "v3":
            document = Discovery.openAPIDocument(segments[2...].joined(separator: "/"))
        case 4 where segments[0] == "api" && segments[2] == "namespaces":
            // Namespaces are implicit: any valid name exists and is Active.
            guard Names.isDNSLabel(segments[3]) else {
                throw APIStatus(
                    code: 404, reason: "NotFound", message: "namespaces \"\(segments[3])\" not found",
                    name: segments[3], kind: "namespaces")
            }
            document = [
                "kind": "Namespace", "apiVersion": "v1",
                "metadata": [
                    "name": .string(segments[3]), "labels": ["kubernetes.io/metadata.name": .string(segments[3])],
                ],
                "spec": ["finalizers": ["kubernetes"]], "status": ["phase": "Active"],
            ]
        default: return nil
        }
        guard let document else { throw APIStatus.pathNotFound() }
        return Self.json(200, document)
    }

    func admit(verb: String, resource: String) async throws {
        let (admission, latency) = await cluster.admit(verb: verb, resource: resource)
        if latency > .zero { try await Task.sleep(for: latency) }
        if case .reject(let status) = admission { throw status }
    }

    func body(_ request: Request) async throws -> JSON? {
        // Typed kubectl generators (`create secret`, `create job`) send protobuf; the emulator speaks JSON only.
        if let type = request.headers[.contentType],
            type.contains("protobuf") || type.contains("yaml") || type.contains("cbor")
        {
            throw APIStatus(
                code: 415, reason: "UnsupportedMediaType",
                message:
                    "the body of the request was in an unknown format - accepted media types include: application/json")
        }
        var request = request
        let buffer = try await request.collectBody(upTo: configuration.maxRequestBodyBytes)
        guard buffer.readableBytes > 0 else { return nil }
        return try JSON.parse(buffer.readableBytesView)
    }

    // MARK: Resource verbs

    func resourceRequest(_ request: Request, _ path: ResourcePath, _ query: [String: String]) async throws -> Response {
        guard let name = path.name else { return try await collectionRequest(request, path, query) }
        let namespace = path.namespace ?? ""
        switch path.subresource {
        case nil:
            return try await objectRequest(request, path.resource, namespace, name, query)
        case "status" where path.resource.hasStatus:
            return try await statusRequest(request, path.resource, namespace, name, query)
        case "log" where path.resource == .pods:
            guard request.method == .get else { throw APIStatus.methodNotAllowed() }
            try await admit(verb: "get", resource: "pods/log")
            return try await podLog(namespace, name, query)
        default:
            throw APIStatus.pathNotFound()
        }
    }

    /// A resource's collection: list, watch, create, deletecollection.
    private func collectionRequest(
        _ request: Request, _ path: ResourcePath, _ query: [String: String]
    ) async throws -> Response {
        let resource = path.resource
        let dryRun = query["dryRun"] == "All"
        let watching = query["watch"] == "true" || query["watch"] == "1"
        let verb: String
        switch request.method {
        case .get: verb = watching ? "watch" : "list"
        case .post: verb = "create"
        case .delete: verb = "deletecollection"
        default: throw APIStatus.methodNotAllowed()
        }
        try await admit(verb: verb, resource: resource.name)
        if request.method == .post {
            guard let namespace = path.namespace else { throw APIStatus.methodNotAllowed() }
            guard let body = try await body(request) else {
                throw APIStatus.badRequest("the request body is empty")
            }
            return Self.json(
                201, try await cluster.create(resource, namespace: namespace, body: body, dryRun: dryRun))
        }
        var selection = Selection(namespace: path.namespace)
        if let text = query["labelSelector"] { selection.labels = try LabelSelector(parsing: text) }
        if let text = query["fieldSelector"] {
            selection.fields = try FieldSelector(parsing: text, resource: resource)
        }
        if request.method == .delete {
            let options = try DeleteOptions(body: try await body(request), query: query)
            return Self.json(
                200, try await cluster.deleteCollection(resource, selection: selection, options: options))
        }
        let table = TablePrinter.wants(request.headers[.accept])
        if watching { return try await watch(resource, selection, query, table: table) }
        let limit = query["limit"].flatMap { Int($0) }
        let bytes = try await cluster.list(
            resource, selection: selection, limit: limit, continueToken: query["continue"])
        guard table else { return Self.json(200, bytes) }
        let list = try JSON.parse(bytes)
        return Self.json(
            200, TablePrinter.table(resource, items: list["items"]?.array ?? [], metadata: list["metadata"] ?? [:]))
    }

    /// One object: get, update, patch, delete.
    private func objectRequest(
        _ request: Request, _ resource: ResourceType, _ namespace: String, _ name: String, _ query: [String: String]
    ) async throws -> Response {
        let dryRun = query["dryRun"] == "All"
        switch request.method {
        case .get:
            try await admit(verb: "get", resource: resource.name)
            let bytes = try await cluster.get(resource, namespace: namespace, name: name)
            guard TablePrinter.wants(request.headers[.accept]) else { return Self.json(200, bytes) }
            let object = try JSON.parse(bytes)
            let metadata: JSON = ["resourceVersion": object[["metadata", "resourceVersion"]] ?? ""]
            return Self.json(200, TablePrinter.table(resource, items: [object], metadata: metadata))
        case .put:
            try await admit(verb: "update", resource: resource.name)
            guard let body = try await body(request) else {
                throw APIStatus.badRequest("the request body is empty")
            }
            return Self.json(
                200,
                try await cluster.update(resource, namespace: namespace, name: name, body: body, dryRun: dryRun))
        case .patch:
            try await admit(verb: "patch", resource: resource.name)
            return try await patch(request, resource, namespace, name, kind: .main, dryRun: dryRun)
        case .delete:
            try await admit(verb: "delete", resource: resource.name)
            let options = try DeleteOptions(body: try await body(request), query: query)
            return Self.json(
                200, try await cluster.delete(resource, namespace: namespace, name: name, options: options))
        default:
            throw APIStatus.methodNotAllowed()
        }
    }

    /// One object's status subresource: get, update, patch.
    private func statusRequest(
        _ request: Request, _ resource: ResourceType, _ namespace: String, _ name: String, _ query: [String: String]
    ) async throws -> Response {
        let dryRun = query["dryRun"] == "All"
        switch request.method {
        case .get:
            try await admit(verb: "get", resource: resource.name + "/status")
            return Self.json(200, try await cluster.get(resource, namespace: namespace, name: name))
        case .put:
            try await admit(verb: "update", resource: resource.name + "/status")
            guard let body = try await body(request) else {
                throw APIStatus.badRequest("the request body is empty")
            }
            return Self.json(
                200,
                try await cluster.update(
                    resource, namespace: namespace, name: name, body: body, kind: .status, dryRun: dryRun))
        case .patch:
            try await admit(verb: "patch", resource: resource.name + "/status")
            return try await patch(request, resource, namespace, name, kind: .status, dryRun: dryRun)
        default:
            throw APIStatus.methodNotAllowed()
        }
    }

    func patch(
        _ request: Request, _ resource: ResourceType, _ namespace: String, _ name: String, kind: Cluster.UpdateKind,
        dryRun: Bool
    ) async throws -> Response {
        let contentType = request.headers[.contentType] ?? ""
        guard let body = try await body(request) else { throw APIStatus.badRequest("the request body is empty") }
        let result = try await cluster.patch(
            resource, namespace: namespace, name: name, patch: body, contentType: contentType, kind: kind,
            dryRun: dryRun)
        return Self.json(200, result)
    }

    func watch(
        _ resource: ResourceType, _ selection: Selection, _ query: [String: String], table: Bool
    ) async throws -> Response {
        let timeout = query["timeoutSeconds"].flatMap { Int64($0) }.map { Duration.seconds($0) }
        let bookmarks = query["allowWatchBookmarks"] == "true" || query["allowWatchBookmarks"] == "1"
        let stream = try await cluster.watch(
            resource, selection: selection, from: query["resourceVersion"], bookmarks: bookmarks, timeout: timeout)
        let body = ResponseBody { writer in
            // Each element holds one or more whole lines (what the cluster wrote in one turn).
            for await lines in stream {
                guard table else {
                    try await writer.write(ByteBuffer(bytes: lines))
                    continue
                }
                var out: [UInt8] = []
                for line in lines.split(separator: UInt8(ascii: "\n")) {
                    out.append(contentsOf: TablePrinter.watchLine(resource, Array(line) + [UInt8(ascii: "\n")]))
                }
                try await writer.write(ByteBuffer(bytes: out))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: body)
    }

    func podLog(_ namespace: String, _ name: String, _ query: [String: String]) async throws -> Response {
        let container = query["container"]
        let follow = query["follow"] == "true" || query["follow"] == "1"
        let timestamps = query["timestamps"] == "true" || query["timestamps"] == "1"
        let limit = query["limitBytes"].flatMap { Int($0) }
        let tail = query["tailLines"].flatMap { Int($0) }
        // Validate (404, waiting container) before answering 200.
        let first = try await cluster.podLog(namespace: namespace, name: name, container: container, from: 0)
        @Sendable func render(_ lines: ArraySlice<(time: Double, text: String)>) -> [UInt8] {
            var out: [UInt8] = []
            for line in lines {
                if timestamps { out.append(contentsOf: (Timestamp.format(line.time, fractional: true) + " ").utf8) }
                out.append(contentsOf: line.text.utf8)
                out.append(UInt8(ascii: "\n"))
            }
            return out
        }
        var tailed = first.lines[...]
        if let tail, tail >= 0 { tailed = tailed.suffix(tail) }
        let initial = tailed
        if !follow {
            var bytes = render(initial)
            if let limit, limit >= 0, bytes.count > limit { bytes = Array(bytes.prefix(limit)) }
            return Response(
                status: .ok, headers: [.contentType: "text/plain"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        let cluster = self.cluster
        let endsAt = await cluster.faults.endFollowsAfterSeconds.map { ContinuousClock.now + .seconds($0) }
        let body = ResponseBody { writer in
            var written = 0
            var next = first.lines.count
            var chunk = render(initial)
            var finished = first.finished
            while true {
                if let limit, written + chunk.count > limit { chunk = Array(chunk.prefix(max(0, limit - written))) }
                if !chunk.isEmpty {
                    try await writer.write(ByteBuffer(bytes: chunk))
                    written += chunk.count
                }
                if finished || (limit.map { written >= $0 } ?? false) || Task.isCancelled { break }
                if let endsAt, ContinuousClock.now >= endsAt { break }
                try await Task.sleep(for: .milliseconds(20))
                guard await !cluster.stopped,
                    let more = try? await cluster.podLog(
                        namespace: namespace, name: name, container: container, from: next)
                else { break }
                next += more.lines.count
                chunk = render(more.lines[...])
                finished = more.finished
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/plain"], body: body)
    }

    // MARK: Emulator control

    func emulatorEndpoint(_ request: Request, _ segments: [String]) async throws -> Response {
        switch (request.method, segments.dropFirst().first ?? "") {
        case (.get, "stats"):
            return Self.json(200, await cluster.statistics().json)
        case (.get, "faults"):
            return Self.json(200, await cluster.faults.json)
        case (.post, "faults"):
            let body = try await body(request) ?? [:]
            await cluster.setFaults(KubernetesEmulatorFaults(json: body))
            if body["dropWatches"]?.bool == true { await cluster.dropWatches() }
            if body["compact"]?.bool == true { await cluster.compactAll() }
            return Self.json(200, await cluster.faults.json)
        case (.post, "compact"):
            await cluster.compactAll()
            return Self.json(200, await cluster.statistics().json)
        case (.post, "drop-watches"):
            await cluster.dropWatches()
            return Self.json(200, await cluster.statistics().json)
        default:
            throw APIStatus.pathNotFound()
        }
    }
}

extension HTTPField.Name {
    static let retryAfter = HTTPField.Name("Retry-After")!
}
