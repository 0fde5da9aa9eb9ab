import Domain
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Persistence
import Storage

/// The internal endpoint the Kubernetes executor's publish pods upload results to (`c2d pod publish`):
///
/// `PUT /internal/v1/jobs/{id}/attempts/{attempt}/results/{kind}/{name…}` with `Authorization: Bearer <attempt
/// token>`. `kind` is `output`, `algorithmLog`, `configrationLog` or `publishLog`; the rest of the path is the file's
/// name relative to `outputs/`, `logs/` or `adminlogs/`, each segment percent-encoded (outputs and logs may have
/// subdirectories, `a/b.csv`; admin logs are one segment). The body is the file, streamed to a spool file (at most
/// `maxUploadBytes`), then into the ResultStore under the job as `<attempt>/<outputs|logs|adminlogs>/<name>`, then
/// recorded in `attempt_uploads`. Re-uploading a name replaces it.
///
/// Answers 200 with `{name, kind, size, sha256}`; 400 bad kind or name; 401 missing or wrong token; 404 unknown
/// job; 409 the attempt is no longer current or the job finished; 413 body over the limit; 503 store down.
///
/// `GET /internal/v1/jobs/{id}/attempts/{attempt}/workflow` with the same token answers the job's workflow (JSON),
/// which the configure step needs: no Kubernetes object carries it. Same errors (401, 404, 409, 503).
///
/// Not part of the public `/v1` API (nor its OpenAPI document): it authenticates with attempt tokens, not API tokens.
struct UploadRoutes {
    static let path = "/internal/v1/jobs/{id}/attempts/{attempt}/results/{kind}/**"
    static let workflowPath = "/internal/v1/jobs/{id}/attempts/{attempt}/workflow"

    let configuration: GatewayConfiguration
    let store: PostgresJobStore
    let resultStore: any ReadableResultStore

    func register(on router: Router<GatewayRequestContext>) {
        router.put(RouterPath(Self.path), use: upload)
        router.post(RouterPath(Self.storedPath), use: registerStored)
        router.get(RouterPath(Self.workflowPath), use: workflow)
    }

    /// The attempt's workflow, for its configure step.
    @Sendable func workflow(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let (jobID, attempt) = try Self.attempt(context)
        try await authorize(jobID: jobID, attempt: attempt, request: request)
        guard let job = try await unavailableOnStoreError({ try await store.job(jobID) }) else {
            throw APIError.jobNotFound(jobID.description)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = try encoder.encode(job.workflow)
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// What an upload (or a registration) is for, once its token was checked.
    struct Target {
        var jobID: JobID
        var attempt: Int
        var kind: ResultKind
        var name: String
    }

    @Sendable func upload(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let target = try await authorize(request, context: context)
        let (jobID, attempt, kind, name) = (target.jobID, target.attempt, target.kind, target.name)
        if let length = request.headers[.contentLength].flatMap({ Int64($0) }), length > configuration.maxUploadBytes {
            throw APIError.uploadTooLarge(configuration.maxUploadBytes)
        }

        let stored = try await spoolAndStore(request.body, jobID: jobID, name: Self.storeName(attempt, kind, name))
        guard
            try await unavailableOnStoreError({
                try await store.recordUpload(jobID: jobID, attempt: attempt, name: name, kind: kind, stored: stored)
            })
        else {
            throw APIError.attemptNotCurrent(attempt)
        }
        let body = try JSONEncoder().encode(
            UploadedFile(name: name, kind: kind.rawValue, size: stored.size, sha256: stored.sha256))
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The job, attempt, kind and name of the path, after checking the attempt's token and that the attempt is
    /// current.
    func authorize(_ request: Request, context: GatewayRequestContext) async throws -> Target {
        let (jobID, attempt) = try Self.attempt(context)
        guard let kind = context.parameters.get("kind").flatMap(ResultKind.init(rawValue:)) else {
            throw APIError(
                .badRequest, code: "invalid_kind",
                message: "kind must be one of " + ResultKind.allCases.map(\.rawValue).joined(separator: ", "))
        }
        guard let name = Self.resultName(context.parameters.getCatchAll(), kind: kind) else {
            throw APIError(
                .badRequest, code: "invalid_name",
                message: "the result name must be a relative path of safe segments"
                    + (kind == .output || kind == .algorithmLog ? "" : " (one segment for admin logs)"))
        }
        try await authorize(jobID: jobID, attempt: attempt, request: request)
        return Target(jobID: jobID, attempt: attempt, kind: kind, name: name)
    }

    static func attempt(_ context: GatewayRequestContext) throws -> (JobID, Int) {
        let idText = context.parameters.get("id") ?? ""
        guard let jobID = JobID(idText) else { throw APIError.jobNotFound(idText) }
        guard let attempt = context.parameters.get("attempt").flatMap({ Int($0) }), attempt > 0 else {
            throw APIError(.badRequest, code: "invalid_attempt", message: "the attempt must be a positive integer")
        }
        return (jobID, attempt)
    }

    /// The token must be the attempt's, the attempt current and the job unfinished.
    private func authorize(jobID: JobID, attempt: Int, request: Request) async throws {
        let hash = try Self.tokenHash(request.headers[.authorization])
        switch try await unavailableOnStoreError({
            try await store.uploadAuthorization(jobID: jobID, attempt: attempt, hash: hash)
        }) {
        case .allowed: break
        case .unknownJob: throw APIError.jobNotFound(jobID.description)
        case .invalidToken: throw APIError.invalidUploadToken
        case .notCurrent: throw APIError.attemptNotCurrent(attempt)
        }
    }

    /// Streams the body to a spool file under the size limit, then copies it into the result store.
    private func spoolAndStore(_ body: RequestBody, jobID: JobID, name: String) async throws -> StoredObject {
        let spool: UploadSpool
        do {
            spool = try await UploadSpool(
                directory: configuration.uploadSpoolDirectory, limit: configuration.maxUploadBytes)
        } catch {
            throw APIError(.internalServerError, code: "spool_failed", message: "cannot accept the upload now")
        }
        do {
            for try await buffer in body {
                try await spool.write(buffer)
            }
            _ = try await spool.finish()
            let stored = try await resultStore.store(jobID: jobID, name: name, from: spool.file)
            await spool.remove()
            return stored
        } catch let error as StorageError where error.code == .sizeLimitExceeded {
            await spool.remove()
            throw APIError.uploadTooLarge(configuration.maxUploadBytes)
        } catch {
            await spool.remove()
            throw error
        }
    }

    struct UploadedFile: Encodable {
        var name: String
        var kind: String
        var size: Int64
        var sha256: String
    }

    // MARK: Helpers

    /// Where an upload goes below the job in the result store; the same layout as the local publisher's.
    static func storeName(_ attempt: Int, _ kind: ResultKind, _ name: String) -> String {
        let directory =
            switch kind {
            case .output: "outputs"
            case .algorithmLog: "logs"
            case .configurationLog, .publishLog: "adminlogs"
            }
        return "\(attempt)/\(directory)/\(name)"
    }

    /// The name from the path's remaining segments, each percent-decoded; nil if any segment is empty, `.`, `..`,
    /// holds a `/` or a control character, or if an admin log's name has more than one segment.
    static func resultName(_ segments: [Substring], kind: ResultKind) -> String? {
        guard !segments.isEmpty, kind == .output || kind == .algorithmLog || segments.count == 1 else { return nil }
        var decoded: [String] = []
        for segment in segments {
            guard let text = String(segment).removingPercentEncoding, !text.isEmpty, text != ".", text != "..",
                !text.contains("/"), !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            else { return nil }
            decoded.append(text)
        }
        let name = decoded.joined(separator: "/")
        guard name.utf8.count <= 1024, WorkflowValidator.isContainedRelativePath(name) else { return nil }
        return name
    }

    static func tokenHash(_ header: String?) throws -> [UInt8] {
        guard let header else { throw APIError.unauthenticated }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw APIError.invalidUploadToken }
        let token = String(parts[1]).trimmingCharacters(in: .whitespaces)
        guard UploadToken.isWellFormed(token) else { throw APIError.invalidUploadToken }
        return UploadToken.hash(token)
    }
}

extension APIError {
    static let invalidUploadToken = APIError(
        .unauthorized, code: "invalid_upload_token", message: "the bearer token is not this attempt's upload token")

    static func attemptNotCurrent(_ attempt: Int) -> APIError {
        APIError(
            .conflict, code: "attempt_not_current",
            message: "attempt \(attempt) is no longer the job's current attempt, or the job has finished")
    }

    static func uploadTooLarge(_ limit: Int64) -> APIError {
        APIError(.contentTooLarge, code: "upload_too_large", message: "the upload is larger than \(limit) bytes")
    }
}
