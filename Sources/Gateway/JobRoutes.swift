import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import Persistence
import Storage

/// The native API under `/v1` (its contract: `openapi.json`).
struct JobRoutes: Sendable {
    let configuration: GatewayConfiguration
    let submitter: JobSubmitter
    let store: PostgresJobStore
    let resultStore: any ReadableResultStore
    /// The gateway's one limit on open streams, shared with ocean-node's followed logs.
    let streams: EventStreamLimiter
    /// Wakes the event streams at each commit of events; without it they only poll.
    var bell: EventStreamBell?

    func register(on router: Router<GatewayRequestContext>) {
        router.post("/v1/jobs", use: create)
        router.get("/v1/jobs/{id}", use: get)
        router.patch("/v1/jobs/{id}", use: update)
        router.post("/v1/jobs/{id}/stop", use: stop)
        router.get("/v1/jobs/{id}/results", use: listResults)
        router.get("/v1/jobs/{id}/results/{index}", use: downloadResult)
        router.get("/v1/jobs/{id}/results/{index}/url", use: resultURL)
        router.get("/v1/jobs/{id}/logs", use: listLogs)
        let events = EventRoutes(
            store: store, limiter: streams, bell: bell, pollInterval: configuration.eventPollInterval)
        events.register(on: router) { try await findJob($0, for: .see) }
        LogRoutes(
            streamer: StepLogStreamer(store: store, resultStore: resultStore, source: configuration.liveLogSource),
            limiter: streams
        ).register(on: router) { try await findJob($0, for: .readResults) }
        ListRoutes(store: store).register(on: router)
        BatchRoutes(configuration: configuration, submitter: submitter).register(on: router)
        BatchOperations(store: store, events: events).register(on: router)
        HealthRoutes(configuration: configuration, store: store).register(on: router)
        router.get("/healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
    }

    @Sendable func create(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let body = try await collectBody(request)
        let principal = try context.caller(needing: .submit)
        let submission = try Self.decode(JobSubmitter.Request.self, from: body)
        let requestID = request.headers[.requestID] ?? UUID().uuidString.lowercased()
        let (job, created) = try await submitter.submit(
            submission, principal: principal, requestID: requestID, idempotencyKey: request.headers[.idempotencyKey])
        return try Self.json(
            JobView(job), status: created ? .created : .ok,
            headers: [.location: "/v1/jobs/\(job.id)", .requestID: requestID])
    }

    @Sendable func get(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let job = try await findJob(context, for: .see)
        return try Self.json(JobView(job))
    }

    /// What `PATCH /v1/jobs/{id}` may change.
    struct Change: Decodable {
        var priority: Int
    }

    /// Changes a waiting job's priority (who may stop a job may reprioritize it). A job already admitted has its
    /// message out and its place taken: 409 `not_waiting`.
    @Sendable func update(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let body = try await collectBody(request)
        let job = try await findJob(context, for: .stop)
        let change = try Self.decode(Change.self, from: body)
        let priority = try JobSubmitter.priority(change.priority)
        do {
            guard let updated = try await store.setPriority(jobID: job.id, priority: priority) else {
                throw APIError.jobNotFound(job.id.description)
            }
            return try Self.json(JobView(updated))
        } catch let error as NotWaitingError {
            throw APIError(.conflict, code: "not_waiting", message: error.description)
        } catch is PostgresError {
            throw APIError.unavailable
        }
    }

    /// Stops a job in any phase: a queued job ends at once, a running one when its worker sees the request.
    @Sendable func stop(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let job = try await findJob(context, for: .stop)
        try await unavailableOnStoreError { _ = try await store.requestStop(jobIDs: [job.id]) }
        let current = try await unavailableOnStoreError { try await store.job(job.id) } ?? job
        return try Self.json(JobView(current), status: .accepted)
    }

    @Sendable func listResults(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let job = try await findJob(context, for: .readResults)
        let results = try await unavailableOnStoreError { try await store.results(of: job.id) }
        return try Self.json(ResultList(jobId: job.id.description, results: results.map(ResultView.init)))
    }

    /// The archived logs (algorithm, configure, publish), with the result indexes they download under.
    @Sendable func listLogs(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let job = try await findJob(context, for: .see)
        let results = try await unavailableOnStoreError { try await store.results(of: job.id) }
        return try Self.json(
            ResultList(jobId: job.id.description, results: results.filter { $0.kind != .output }.map(ResultView.init)))
    }

    @Sendable func downloadResult(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let job = try await findJob(context, for: .readResults)
        let indexText = context.parameters.get("index") ?? ""
        guard let index = Int(indexText), index >= 0 else {
            throw APIError(.badRequest, code: "invalid_index", message: "result index must be a non-negative integer")
        }
        let results = try await unavailableOnStoreError { try await store.results(of: job.id) }
        guard let result = results.first(where: { $0.index == index }) else {
            throw APIError(
                .notFound, code: "result_not_found", message: "job \(job.id) has no result with index \(index)")
        }
        do {
            return try await ResultDownload(result: result, resultStore: resultStore).response(
                request: request, context: context,
                contentDisposition: "attachment;filename=\(Self.quotedFilename(result.name))")
        } catch ResultDownload.Failure.rangeNotSatisfiable(let range, let size) {
            throw APIError(
                .rangeNotSatisfiable, code: "range_not_satisfiable",
                message: "range '\(range)' does not fit a file of \(size) bytes")
        } catch ResultDownload.Failure.fileMissing {
            throw APIError(
                .gone, code: "result_unavailable",
                message: "result \(index) of job \(job.id) is recorded but its file is no longer stored")
        }
    }

    // MARK: Helpers

    /// The request body, up to `C2D_MAX_BODY_BYTES` (413 `body_too_large` above).
    func collectBody(_ request: Request) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: configuration.limits.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(
                .contentTooLarge, code: "body_too_large",
                message: "the request body is larger than the limit of \(configuration.limits.maxBodyBytes) bytes")
        }
    }

    enum Access {
        /// Status, events, the logs list.
        case see
        /// Result and log contents.
        case readResults
        case stop
    }

    /// The job named in the path, if the caller may see it; another owner's job answers 404 like a missing one,
    /// so job ids reveal nothing. A job the caller may see but not act on in this way answers 403.
    func findJob(_ context: GatewayRequestContext, for access: Access) async throws -> Job {
        guard let principal = context.principal else { throw APIError.unauthenticated }
        let text = context.parameters.get("id") ?? ""
        guard let id = JobID(text) else { throw APIError.jobNotFound(text) }
        guard let job = try await unavailableOnStoreError({ try await store.job(id) }),
            principal.canSee(owner: job.owner, viewers: job.viewers)
        else {
            throw APIError.jobNotFound(text)
        }
        switch access {
        case .see:
            break
        case .readResults:
            guard principal.canReadResults(owner: job.owner, viewers: job.viewers) else {
                throw APIError(
                    .forbidden, code: "results_private",
                    message: "results are readable only by the job's owner, its viewers and admins")
            }
        case .stop:
            guard principal.canStop(owner: job.owner) else {
                throw APIError(
                    .forbidden, code: "missing_scope",
                    message: "stopping needs the owner's token with 'submit', or 'operate'")
            }
        }
        return job
    }

    static func decode<T: Decodable>(_ type: T.Type, from body: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: body))
        } catch DecodingError.keyNotFound(let key, let context) {
            throw APIError(
                .badRequest, code: "missing_field",
                message: "missing field '\(Self.path(context.codingPath + [key]))'")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            throw APIError(
                .badRequest, code: "invalid_field",
                message: "field '\(Self.path(context.codingPath))' has the wrong type: \(context.debugDescription)")
        } catch DecodingError.dataCorrupted(let context) where !context.codingPath.isEmpty {
            throw APIError(
                .badRequest, code: "invalid_field",
                message: "field '\(Self.path(context.codingPath))' is invalid: \(context.debugDescription)")
        } catch {
            throw APIError(.badRequest, code: "invalid_json", message: "the request body is not valid JSON")
        }
    }

    static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws
        -> Response
    {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(
            status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func quotedFilename(_ name: String) -> String {
        let base = name.split(separator: "/").last.map(String.init) ?? name
        return "\"" + base.filter { $0 != "\"" && $0 != "\\" && !$0.isNewline } + "\""
    }
}

/// A job as the native API shows it.
struct JobView: Encodable {
    var id: String
    var environment: String
    var owner: String
    var viewers: [String]
    var status: Int
    var statusText: String
    var outcome: String?
    var failureReason: String?
    var exitCode: Int?
    var oomKilled: Bool
    var stopreq: Int
    var attempt: Int
    var priority: Int
    var dateCreated: Date
    var dateStarted: Date?
    var dateFinished: Date?
    var algoDID: String
    var inputDID: [String]

    init(_ job: Job) {
        id = job.id.description
        environment = job.environment
        owner = job.owner
        viewers = job.viewers
        status = job.status.rawValue
        statusText = job.status.text
        outcome = job.outcome?.rawValue
        failureReason = job.failureReason
        exitCode = job.exitCode
        oomKilled = job.oomKilled
        stopreq = job.stopRequest
        attempt = job.attempt
        priority = job.priority
        dateCreated = job.createdAt
        dateStarted = job.startedAt
        dateFinished = job.finishedAt
        algoDID = job.workflow.stage?.algorithm.didOrRaw ?? "raw"
        inputDID = job.workflow.inputDIDs
    }
}

struct ResultView: Encodable {
    var index: Int
    var filename: String
    var type: String
    var filesize: Int64
    var sha256: String

    init(_ result: ResultFile) {
        index = result.index
        filename = result.name
        type = result.kind.rawValue
        filesize = result.size
        sha256 = result.sha256
    }
}

struct ResultList: Encodable {
    var jobId: String
    var results: [ResultView]
}

/// One HTTP byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`), clamped to the file; multiple ranges are not served.
struct ByteRange {
    static func parse(_ header: String, size: Int64) -> ClosedRange<Int>? {
        guard size > 0, header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst("bytes=".count).split(
            separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard spec.count == 2 else { return nil }
        let last = Int(size - 1)
        switch (Int(spec[0]), Int(spec[1])) {
        case (let start?, let end?) where start <= end && start <= last: return start...min(end, last)
        case (let start?, nil) where spec[1].isEmpty && start <= last: return start...last
        case (nil, let suffix?) where spec[0].isEmpty && suffix > 0: return max(0, last - suffix + 1)...last
        default: return nil
        }
    }
}
