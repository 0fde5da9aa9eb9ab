import Domain
import Foundation
import Hummingbird
import Logging
import NIOCore
import Persistence

/// `POST /v1/batches`: many jobs in one request, for batch clients (docs/architecture.md, "Batches").
///
/// Body `{"environment", "owner"?, "jobs": [{"workflow": …}, …]}` with at most
/// ``GatewayConfiguration/maxBatchJobs`` jobs (413 above) in at most ``GatewayConfiguration/maxBatchBodyBytes``
/// (413 above). All or nothing: if any job is invalid, the answer is 400
/// `{"code": "invalid_batch", "message", "errors": [{"index", "code", "message"}]}` and nothing is written.
/// Otherwise every job and its event are written in one transaction under a new batch id (the dispatcher admits
/// them from there), and the answer is 201 `{"batchId", "jobs": [ids in request order]}`. `priority` (0-9) applies
/// to every job of the batch.
/// `GET /v1/jobs?batch=<batchId>` lists the batch's jobs. With an `Idempotency-Key`, `batchId` and `position` a
/// client submits a large batch in resumable chunks (`BatchPlacement`); a replayed chunk answers 200.
struct BatchRoutes: Sendable {
    let configuration: GatewayConfiguration
    let submitter: JobSubmitter

    func register(on router: Router<GatewayRequestContext>) {
        router.post("/v1/batches", use: create)
    }

    struct Created: Encodable {
        var batchId: String
        var jobs: [String]
    }

    @Sendable func create(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let limit = configuration.maxBatchBodyBytes
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(
                .contentTooLarge, code: "body_too_large",
                message: "the request body is larger than the batch limit of \(limit) bytes")
        }
        let batch = try JobRoutes.decode(JobSubmitter.BatchRequest.self, from: body)
        let requestID = request.headers[.requestID] ?? UUID().uuidString.lowercased()
        let principal = try context.caller(needing: .submit)
        let (batchID, jobs, created) = try await submitter.submitBatch(
            batch, principal: principal, requestID: requestID, idempotencyKey: request.headers[.idempotencyKey],
            requestSHA256: JobSubmitter.sha256Hex(body.readableBytesView))
        return try JobRoutes.json(
            Created(batchId: batchID.uuidString.lowercased(), jobs: jobs.map(\.id.description)),
            status: created ? .created : .ok, headers: [.requestID: requestID])
    }
}

/// The `errors` of an `invalid_batch` answer.
struct BatchError: HTTPResponseError, Sendable {
    struct Item: Encodable, Sendable {
        var index: Int
        var code: String
        var message: String
    }

    var message: String
    var errors: [Item]
    var status: HTTPResponse.Status { .badRequest }

    struct Body: Encodable {
        var code = "invalid_batch"
        var message: String
        var errors: [Item]
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(Body(message: message, errors: errors))
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension JobSubmitter {
    /// A batch of jobs, as `POST /v1/batches` receives it.
    package struct BatchRequest: Sendable, Decodable {
        package var environment: String
        package var owner: String?
        /// Who else may read every job of the batch.
        package var viewers: [String]?
        package var chainId: Int?
        /// 0 (the default) to 9, for every job of the batch.
        package var priority: Int?
        /// Add the jobs to this batch of the caller's (same environment) instead of a new one.
        package var batchId: UUID?
        /// Index of this request's first job within the batch, for chunked submissions (see `BatchPlacement`).
        package var position: Int?
        package var jobs: [Item]

        /// One job of a batch. A job whose JSON does not decode keeps its error, so the answer can name it
        /// rather than fail the whole body as malformed.
        package struct Item: Sendable, Decodable {
            package var workflow: Result<Workflow, SubmissionError>

            enum CodingKeys: String, CodingKey { case workflow }

            package init(from decoder: any Decoder) throws {
                do {
                    let container = try decoder.container(keyedBy: CodingKeys.self)
                    workflow = .success(try container.decode(Workflow.self, forKey: .workflow))
                } catch DecodingError.keyNotFound(let key, let context) {
                    let path = Self.path(context.codingPath + [key], from: decoder.codingPath.count)
                    workflow = .failure(.init(code: "missing_field", message: "missing field '\(path)'"))
                } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
                    let path = Self.path(context.codingPath, from: decoder.codingPath.count)
                    workflow = .failure(.init(code: "invalid_field", message: "field '\(path)' has the wrong type"))
                } catch DecodingError.dataCorrupted(let context) {
                    let path = Self.path(context.codingPath, from: decoder.codingPath.count)
                    workflow = .failure(
                        .init(
                            code: "invalid_field",
                            message: "field '\(path)' is invalid: \(context.debugDescription.prefix(200))"))
                }
            }

            /// The path inside the item (without `jobs[i]`).
            static func path(_ keys: [any CodingKey], from depth: Int) -> String {
                JobRoutes.path(Array(keys.dropFirst(depth)))
            }
        }
    }

    /// Most per-item errors one `invalid_batch` answer lists; the message gives the total.
    static let maxReportedBatchErrors = 100

    /// Validates every job of the batch (all or nothing) and writes them in one transaction under a new batch id.
    func submitBatch(
        _ request: BatchRequest, principal: Principal, requestID: String, idempotencyKey: String? = nil,
        requestSHA256: String = ""
    ) async throws -> (batchID: UUID, jobs: [Job], created: Bool) {
        guard !request.jobs.isEmpty else {
            throw APIError(.badRequest, code: "empty_batch", message: "a batch needs at least one job")
        }
        guard request.jobs.count <= configuration.maxBatchJobs else {
            throw APIError(
                .contentTooLarge, code: "batch_too_large",
                message:
                    "the batch has \(request.jobs.count) jobs; the limit is \(configuration.maxBatchJobs) per request")
        }
        guard let environment = configuration.environment(request.environment) else {
            throw APIError(
                .badRequest, code: "unknown_environment",
                message: "environment '\(request.environment.prefix(64))' does not exist")
        }
        let owner = try owner(requested: request.owner, principal: principal)
        let viewers = try viewers(request.viewers)
        let priority = try Self.priority(request.priority)

        var errors: [BatchError.Item] = []
        var workflows: [Workflow] = []
        workflows.reserveCapacity(request.jobs.count)
        // Each workflow's JSON from its validation, written as is: encoding is a batch's largest cost in the gateway.
        var workflowJSON: [String]? = []
        workflowJSON?.reserveCapacity(request.jobs.count)
        for (index, item) in request.jobs.enumerated() {
            do {
                let workflow = try item.workflow.get()
                let json = try validate(workflow, environment: environment, chainID: request.chainId)
                workflows.append(workflow)
                if let json { workflowJSON?.append(json) } else { workflowJSON = nil }
            } catch {
                errors.append(.init(index: index, code: error.code, message: error.message))
            }
        }
        guard errors.isEmpty else {
            let shown = errors.prefix(Self.maxReportedBatchErrors)
            throw BatchError(
                message:
                    "\(errors.count) of \(request.jobs.count) jobs are invalid (\(shown.count) listed); nothing was written",
                errors: Array(shown))
        }

        let placement = try await placeBatch(
            request, owner: owner, viewers: viewers, environment: environment, count: workflows.count,
            idempotencyKey: idempotencyKey, requestSHA256: requestSHA256)
        if let existing = placement.existing { return (placement.batchID, existing, false) }
        let batchID = placement.batchID
        let createdAt = Date()
        let jobs = zip(workflows, placement.jobIDs).map { workflow, id in
            Job(
                id: id, environment: environment.id, owner: owner, viewers: viewers, createdAt: createdAt,
                priority: priority, workflow: workflow)
        }
        do {
            try await store.insertBatch(
                jobs, workflowJSON: workflowJSON, batchID: batchID, trace: .new(requestID: requestID))
        } catch let error as PostgresError {
            // Another retry of the same reserved chunk wrote these jobs first.
            if placement.resumesReservation, error.isUniqueViolation,
                let written = try? await store.jobs(placement.jobIDs), written.count == placement.jobIDs.count
            {
                return (batchID, written, false)
            }
            if placement.createdBatch { try? await store.deleteEmptyBatch(batchID) }
            logger.error("batch insert failed", metadata: ["batch": "\(batchID)", "error": "\(error)"])
            throw APIError.unavailable
        }
        await confirmWritten(owner: owner, idempotencyKey: idempotencyKey)
        return (batchID, jobs, true)
    }
}
