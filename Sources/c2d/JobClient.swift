import App
import ArgumentParser
import AsyncHTTPClient
import Domain
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// What `c2d job` and `c2d batch` exit with. A script can tell a job that failed from a gateway it could not reach
/// from a typo in its file; README's "Submitting jobs" lists them.
enum ClientExit: Int32, CaseIterable {
    /// Done; with `--wait` or `watch`, every job succeeded.
    case success = 0
    /// A job failed (non-zero exit, provisioning failure, out of memory, an image it could not run, …).
    case jobFailed = 1
    /// A job was stopped.
    case jobStopped = 2
    /// A job ran out of time.
    case jobTimedOut = 3
    /// No such job or batch (or another owner's).
    case notFound = 4
    /// The file or the request was refused (400, 409, 413, 422): nothing was written.
    case invalid = 5
    /// The token is missing, unknown, revoked, or lacks the scope (401, 403).
    case notAuthorized = 6
    /// The gateway could not be reached, or answered 5xx.
    case unavailable = 7
    /// `--timeout` passed before the job (or batch) finished; it goes on.
    case gaveUp = 8

    /// The worst outcome of a set of jobs: failed, then timed out, then stopped.
    static func forOutcomes(_ counts: [String: Int]) -> ClientExit {
        if counts["failed", default: 0] > 0 { return .jobFailed }
        if counts["timed_out", default: 0] > 0 { return .jobTimedOut }
        if counts["stopped", default: 0] > 0 { return .jobStopped }
        return .success
    }

    static func forOutcome(_ outcome: String?) -> ClientExit {
        switch outcome {
        case "succeeded": .success
        case "stopped": .jobStopped
        case "timed_out": .jobTimedOut
        default: .jobFailed
        }
    }
}

/// A failure the command reports in one line (`c2d: …`, with the fix) and turns into its exit code.
struct ClientFailure: Error, CustomStringConvertible {
    var exit: ClientExit
    var message: String
    /// The gateway's answer, when there was one (an `invalid_batch` lists the refused jobs there).
    var body: Data?
    /// The gateway's error code (`log_not_found`, …), when it answered with one.
    var code: String?
    var description: String { message }

    init(_ exit: ClientExit, _ message: String, body: Data? = nil, code: String? = nil) {
        self.exit = exit
        self.message = message
        self.body = body
        self.code = code
    }
}

/// Where the gateway is and who calls it: `--url`/`C2D_URL` and `--token`/`C2D_TOKEN`, and the output format.
struct ClientOptions: ParsableArguments {
    @Option(help: "The gateway's base URL (default: $C2D_URL, else http://127.0.0.1:8080).")
    var url: String?

    @Option(help: "API token from 'c2d token create' (default: $C2D_TOKEN).")
    var token: String?

    @Flag(help: "Print JSON (one object, or one per line for streams) instead of text, for scripts.")
    var json = false

    @Option(help: "Seconds one request may take (1 to 86400).")
    var requestTimeout: Int = 30

    func validate() throws {
        guard (1...86_400).contains(requestTimeout) else {
            throw ValidationError("--request-timeout must be 1 to 86400 seconds")
        }
    }

    /// Checks a command's `--timeout`: only with `flag` when the command waits only with that flag, at least a
    /// second, and at most a year, since the deadline of a far longer wait overflows the clock's arithmetic.
    static func validate(timeout: Int?, onlyWith flag: (name: String, isSet: Bool)? = nil) throws {
        guard let timeout else { return }
        if let flag, !flag.isSet { throw ValidationError("--timeout applies only with \(flag.name)") }
        guard (1...31_536_000).contains(timeout) else {
            throw ValidationError("--timeout must be 1 to 31536000 seconds (a year)")
        }
    }

    func baseURL() throws -> String {
        let text = url ?? EnvironmentReader().text(.url)!
        guard let components = URLComponents(string: text), let scheme = components.scheme,
            ["http", "https"].contains(scheme.lowercased()), components.host != nil
        else {
            throw ClientFailure(
                .invalid, "'\(text)' is not the gateway's URL; set C2D_URL or --url, e.g. http://127.0.0.1:8080")
        }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    var resolvedToken: String? {
        token ?? EnvironmentReader().explicit(.token)
    }
}

/// A client of the native API for the CLI: JSON requests with timeouts and errors that name the fix, downloads
/// streamed to files, and Server-Sent Event streams that reconnect with `Last-Event-ID`.
struct JobClient: Sendable {
    let baseURL: String
    let token: String?
    let http: HTTPClient
    let requestTimeout: Duration

    /// Runs `body` with a client for `options`; the HTTP client is shut down afterwards, and a `ClientFailure` ends
    /// the process with its line and exit code.
    static func run(_ options: ClientOptions, _ body: (JobClient) async throws -> ClientExit) async throws {
        await ClientInterruption.install()
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        // Event streams send a heartbeat every 15 s; a minute of silence is a dead connection.
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let exit: ClientExit
        do {
            let client = JobClient(
                baseURL: try options.baseURL(), token: options.resolvedToken, http: http,
                requestTimeout: .seconds(options.requestTimeout))
            exit = try await body(client)
        } catch let failure as ClientFailure {
            try? await http.shutdown()
            FileHandle.standardError.write(Data("c2d: \(failure.message)\n".utf8))
            throw ExitCode(failure.exit.rawValue)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        if exit != .success { throw ExitCode(exit.rawValue) }
    }

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
        var object: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    /// One request; 2xx answers are returned, anything else becomes a `ClientFailure` naming what to do.
    func send(
        _ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [String: String] = [:],
        accept: Set<Int> = []
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let reply: Reply
        do {
            let response = try await http.execute(request, timeout: TimeAmount(requestTimeout))
            let collected = try await response.body.collect(upTo: 256 << 20)
            reply = Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: collected))
        } catch {
            throw unreachable(error)
        }
        if (200..<300).contains(reply.status) || accept.contains(reply.status) { return reply }
        throw failure(reply, method: method, path: path)
    }

    func getJSON(_ path: String) async throws -> Reply {
        try await send(.GET, path)
    }

    func unreachable(_ error: any Error) -> ClientFailure {
        ClientFailure(
            .unavailable,
            "cannot reach the gateway at \(baseURL) (\(error)); is it running? Set C2D_URL or --url to its address")
    }

    /// The API's `{"code","message"}` as one line, with the fix for the common cases.
    func failure(_ reply: Reply, method: HTTPMethod, path: String) -> ClientFailure {
        var failure = describedFailure(reply, method: method, path: path)
        failure.code = reply.object["code"] as? String
        return failure
    }

    private func describedFailure(_ reply: Reply, method: HTTPMethod, path: String) -> ClientFailure {
        let object = reply.object
        // Every 4xx of the gateway's API carries its JSON error; one without it came from something else (a wrong
        // --url), and "check the id" would send the user looking in the wrong place.
        if (400..<500).contains(reply.status), object["code"] == nil {
            let body = String(decoding: reply.body.prefix(200), as: UTF8.self)
            return ClientFailure(
                .unavailable,
                "\(method.rawValue) \(baseURL)\(path) answered HTTP \(reply.status) without a c2d error"
                    + (body.isEmpty ? "" : " (\(body))") + ": is \(baseURL) (C2D_URL or --url) a c2d gateway of this "
                    + "version?")
        }
        let code = object["code"] as? String ?? "http_\(reply.status)"
        let message = object["message"] as? String ?? String(decoding: reply.body.prefix(300), as: UTF8.self)
        var text = "\(message) (\(code), HTTP \(reply.status))"
        switch reply.status {
        case 401:
            text +=
                token == nil
                ? "; set C2D_TOKEN or --token to a token from 'c2d token create --scopes submit,read'"
                : "; the token is not accepted: create a new one with 'c2d token create'"
            return ClientFailure(.notAuthorized, text)
        case 403:
            return ClientFailure(.notAuthorized, text + "; use a token with the scope named above")
        case 404:
            return ClientFailure(.notFound, text + "; check the id (another owner's jobs and batches are not shown)")
        case 400, 409, 413, 415, 422:
            if code == "unknown_environment" { text += "; the gateway's environments: \(baseURL)/v1/environments" }
            if code.hasPrefix("image_") { text += "; see the environment's images at \(baseURL)/v1/environments" }
            if code == "body_too_large" || code == "batch_too_large" { text += "; use a smaller --chunk-size" }
            return ClientFailure(.invalid, text, body: reply.body)
        case 500...:
            return ClientFailure(.unavailable, text + "; the gateway failed, try again shortly")
        default:
            return ClientFailure(.invalid, "\(method.rawValue) \(path): \(text)")
        }
    }

    // MARK: Jobs

    /// A job as the API shows it (`JobView`), the fields the CLI reads.
    struct Job: Decodable {
        var id: String
        var environment: String
        var owner: String
        var status: Int
        var statusText: String
        var outcome: String?
        var failureReason: String?
        var exitCode: Int?
        var oomKilled: Bool?
        var attempt: Int?
        var dateCreated: String?
        var dateStarted: String?
        var dateFinished: String?
    }

    func job(_ id: String) async throws -> (Job, Data) {
        let reply = try await getJSON("/v1/jobs/\(Self.pathSegment(id))")
        return (try Self.decode(Job.self, reply.body), reply.body)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw ClientFailure(.unavailable, "the gateway's answer is not what this c2d expects: \(error)")
        }
    }

    static func pathSegment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    // MARK: Event streams

    /// One Server-Sent Event of a status stream.
    struct Event: Sendable {
        var id: Int
        var data: Data
        var object: [String: Any] { (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:] }
        var jobID: String { object["jobId"] as? String ?? "" }
        var status: Int { object["status"] as? Int ?? 0 }
        var statusText: String { (object["statusText"] as? String ?? "").trimmingCharacters(in: .whitespaces) }
        var reason: String? { object["reason"] as? String }
        var time: String { object["time"] as? String ?? "" }
        var isTerminal: Bool { JobStatus(rawValue: status)?.isTerminal ?? false }
    }

    /// Follows an event stream (`/v1/jobs/{id}/events`, `/v1/batches/{id}/events`) until the server ends it,
    /// calling `handle` for each event. A dropped connection is resumed after the last event seen
    /// (`Last-Event-ID`), so no event is lost or repeated; five failures in a row without a new event give up.
    /// `deadline` nil waits as long as it takes; past it, `gaveUp` is thrown.
    func follow(
        _ path: String, after start: Int? = nil, deadline: ContinuousClock.Instant?,
        handle: (Event) async throws -> Void
    ) async throws {
        let (events, continuation) = AsyncThrowingStream<Event, any Error>.makeStream()
        // The reader and the timer end the stream; whichever is first wins, and both go when this returns.
        let reader = Task { await read(path, after: start, into: continuation) }
        let timer = deadline.map { deadline in
            Task {
                try? await Task.sleep(until: deadline)
                if !Task.isCancelled { continuation.finish(throwing: ClientFailure(.gaveUp, "gave up waiting")) }
            }
        }
        defer {
            reader.cancel()
            timer?.cancel()
        }
        for try await event in events {
            try await handle(event)
        }
    }

    private func read(
        _ path: String, after start: Int?, into continuation: AsyncThrowingStream<Event, any Error>.Continuation
    ) async {
        var last = start
        var failures = 0
        while !Task.isCancelled {
            var request = HTTPClientRequest(url: baseURL + path)
            if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
            request.headers.add(name: "accept", value: "text/event-stream")
            if let last { request.headers.add(name: "last-event-id", value: String(last)) }
            var progressed = false
            do {
                let response = try await http.execute(request, timeout: .hours(24 * 7))
                guard response.status == .ok else {
                    let body = try await response.body.collect(upTo: 1 << 20)
                    continuation.finish(
                        throwing: failure(
                            Reply(
                                status: Int(response.status.code), headers: response.headers, body: Data(buffer: body)),
                            method: .GET, path: path))
                    return
                }
                var pending = ""
                for try await buffer in response.body {
                    pending += String(buffer: buffer)
                    while let end = pending.range(of: "\n\n") {
                        let block = String(pending[..<end.lowerBound])
                        pending = String(pending[end.upperBound...])
                        guard let event = Self.parseEvent(block) else { continue }
                        last = event.id
                        progressed = true
                        failures = 0
                        continuation.yield(event)
                    }
                }
                // The server ended the stream: everything it had to say was said.
                continuation.finish()
                return
            } catch {
                if Task.isCancelled { break }
                if !progressed { failures += 1 }
                if failures >= 5 {
                    continuation.finish(throwing: unreachable(error))
                    return
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        continuation.finish()
    }

    static func parseEvent(_ block: String) -> Event? {
        var id: Int?
        var data = ""
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("id:") {
                id = Int(line.dropFirst(3).trimmingCharacters(in: .whitespaces))
            } else if line.hasPrefix("data:") {
                data += line.dropFirst(5).drop { $0 == " " }
            }
        }
        guard let id, !data.isEmpty else { return nil }
        return Event(id: id, data: Data(data.utf8))
    }

    // MARK: Downloads

    /// Streams `path` into `file` (through a temporary file renamed at the end), or to standard output for "-".
    /// Returns the bytes written.
    @discardableResult
    func download(_ path: String, to file: String) async throws -> Int64 {
        var request = HTTPClientRequest(url: baseURL + path)
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .hours(6))
        } catch {
            throw unreachable(error)
        }
        guard response.status == .ok else {
            let body = try await response.body.collect(upTo: 1 << 20)
            throw failure(
                Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: body)),
                method: .GET, path: path)
        }
        let toStandardOutput = file == "-"
        let temporary = toStandardOutput ? "" : file + ".c2d-partial"
        let handle: FileHandle
        if toStandardOutput {
            fflush(nil)
            handle = FileHandle.standardOutput
        } else {
            guard FileManager.default.createFile(atPath: temporary, contents: nil),
                let opened = FileHandle(forWritingAtPath: temporary)
            else {
                throw ClientFailure(.invalid, "cannot write \(file); check the directory exists and is writable")
            }
            handle = opened
            ClientInterruption.downloading(to: temporary)
        }
        var written: Int64 = 0
        do {
            for try await buffer in response.body {
                let data = Data(buffer: buffer)
                try await NIOThreadPool.singleton.runIfActive { try handle.write(contentsOf: data) }
                written += Int64(data.count)
            }
        } catch {
            if !toStandardOutput {
                try? handle.close()
                try? FileManager.default.removeItem(atPath: temporary)
            }
            throw error is ClientFailure ? error : unreachable(error)
        }
        if !toStandardOutput {
            try handle.close()
            if FileManager.default.fileExists(atPath: file) { try? FileManager.default.removeItem(atPath: file) }
            try FileManager.default.moveItem(atPath: temporary, toPath: file)
            ClientInterruption.downloading(to: nil)
        }
        return written
    }
}

/// Text output helpers: JSON printed as the API gave it, aligned key-value blocks, progress on terminals.
enum ClientOutput {
    static var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) != 0 }

    /// Through `print`, like every other line on standard output, so their order is kept.
    static func printJSON(_ data: Data) {
        print(String(decoding: data, as: UTF8.self))
    }

    static func printJSON(_ object: Any) {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        printJSON(data)
    }

    static func note(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// `key: value` lines with the values aligned; nil values are left out.
    static func block(_ rows: [(String, String?)]) -> String {
        let shown = rows.compactMap { row in row.1.map { (row.0, $0) } }
        let width = (shown.map(\.0.count).max() ?? 0) + 1
        return shown.map { $0.0 + ":" + String(repeating: " ", count: width - $0.0.count) + " " + $0.1 }
            .joined(separator: "\n")
    }

    /// `[#####.....] 1200/2000 label`, drawn over itself on a terminal.
    static func bar(_ done: Int, _ total: Int, _ label: String) -> String {
        let width = 30
        let filled = total > 0 ? min(width, done * width / total) : width
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
            + "\(done)/\(total) \(label)"
    }
}
