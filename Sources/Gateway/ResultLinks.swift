import Domain
import Foundation
import Hummingbird
import Persistence
import Storage

/// `GET /v1/jobs/{id}/results/{index}/url`: a short-lived presigned URL to download one result straight from the
/// object store, bypassing the gateway. Only the job's owner gets one (a viewer or an admin downloads through
/// `/v1/jobs/{id}/results/{index}`): a URL works for whoever holds it until it expires, so it is handed out only to
/// the one party the results belong to. With a filesystem result store there are no such URLs (409).
extension JobRoutes {
    struct ResultLink: Encodable {
        var url: String
        var expiresAt: Date
        var filename: String
        var size: Int64
        var sha256: String
    }

    @Sendable func resultURL(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let job = try await findJob(context, for: .readResults)
        guard let principal = context.principal,
            principal.isUnrestricted || Principal.sameOwner(job.owner, principal.owner)
        else {
            throw APIError(
                .forbidden, code: "owner_only",
                message: "presigned URLs are given to the job's owner only; download through "
                    + "/v1/jobs/{id}/results/{index} instead")
        }
        let indexText = context.parameters.get("index") ?? ""
        guard let index = Int(indexText), index >= 0 else {
            throw APIError(.badRequest, code: "invalid_index", message: "result index must be a non-negative integer")
        }
        let results = try await unavailableOnStoreError { try await store.results(of: job.id) }
        guard let result = results.first(where: { $0.index == index }) else {
            throw APIError(
                .notFound, code: "result_not_found", message: "job \(job.id) has no result with index \(index)")
        }
        let lifetime = configuration.presignedURLLifetime
        let filename = ResultDownload.bareFilename(result.name)
        let url: String?
        do {
            url = try resultStore.presignedDownloadURL(
                location: result.location, filename: filename,
                contentType: result.kind == .output ? "application/octet-stream" : "text/plain; charset=utf-8",
                expiresIn: lifetime)
        } catch {
            throw APIError(.internalServerError, code: "presign_failed", message: "cannot make a download URL")
        }
        guard let url else {
            throw APIError(
                .conflict, code: "presigned_urls_unavailable",
                message: "this deployment keeps results on a filesystem; download through /v1/jobs/{id}/results/{index}"
            )
        }
        return try Self.json(
            ResultLink(
                url: url, expiresAt: Date().addingTimeInterval(lifetime.seconds), filename: filename,
                size: result.size, sha256: result.sha256))
    }
}
