import Domain
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Persistence
import Storage

/// `POST /internal/v1/jobs/{id}/attempts/{attempt}/stored-results/{kind}/{name…}`: a publish pod that uploaded a
/// file straight to the object store (`C2D_RESULT_STORE=s3` in the pod) registers it here, with the same attempt
/// token as uploads, body `{"location", "size", "sha256"}`. No bytes pass through the gateway.
///
/// The pod may only register the one location the gateway itself would have used for that attempt, kind and name
/// (`<job id>/<attempt>/<outputs|logs|adminlogs>/<name>`), and only an object the store has with the size (and,
/// when the store recorded one, the sha-256) claimed. Answers like an upload: 200 `{name, kind, size, sha256}`;
/// 400 another location; 409 nothing stored there, or the attempt is not current; 422 size or digest differ.
extension UploadRoutes {
    static let storedPath = "/internal/v1/jobs/{id}/attempts/{attempt}/stored-results/{kind}/**"

    struct Registration: Decodable {
        var location: String
        var size: Int64
        var sha256: String
    }

    @Sendable func registerStored(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let target = try await authorize(request, context: context)
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: 64 << 10)
        } catch {
            throw APIError(.contentTooLarge, code: "body_too_large", message: "a registration is a small JSON object")
        }
        let claimed = try JobRoutes.decode(Registration.self, from: body)
        let expected = "\(target.jobID)/\(Self.storeName(target.attempt, target.kind, target.name))"
        guard claimed.location == expected else {
            throw APIError(
                .badRequest, code: "invalid_location",
                message: "this attempt's \(target.kind.rawValue) '\(target.name)' belongs at '\(expected)'")
        }
        let stored: StoredObject?
        do {
            stored = try await resultStore.describe(location: expected)
        } catch {
            throw APIError(
                .serviceUnavailable, code: "result_store_unavailable", message: "the result store cannot be read now")
        }
        guard let stored else {
            throw APIError(.conflict, code: "stored_result_missing", message: "nothing is stored at '\(expected)'")
        }
        guard stored.size == claimed.size, stored.sha256.isEmpty || stored.sha256 == claimed.sha256 else {
            throw APIError(
                .unprocessableContent, code: "stored_result_mismatch",
                message: "the store holds \(stored.size) bytes with sha256 '\(stored.sha256)' at '\(expected)'")
        }
        let recorded = StoredObject(location: expected, size: claimed.size, sha256: claimed.sha256)
        guard
            try await unavailableOnStoreError({
                try await store.recordUpload(
                    jobID: target.jobID, attempt: target.attempt, name: target.name, kind: target.kind,
                    stored: recorded)
            })
        else {
            throw APIError.attemptNotCurrent(target.attempt)
        }
        let answer = try JSONEncoder().encode(
            UploadedFile(name: target.name, kind: target.kind.rawValue, size: recorded.size, sha256: recorded.sha256))
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: answer)))
    }
}
