import Domain
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Persistence

/// An error answered as JSON `{"code", "message"}` with a 4xx (or, for c2d's own faults, 5xx) status.
package struct APIError: HTTPResponseError, Sendable {
    package var status: HTTPResponse.Status
    package var code: String
    package var message: String
    /// Headers the answer needs besides the body (e.g. `Retry-After` on a 429).
    package var headers: HTTPFields

    package init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    init(_ error: SubmissionError) {
        self.init(.init(code: error.httpStatus), code: error.code, message: error.message)
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONEncoder().encode(["code": code, "message": message])
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func jobNotFound(_ id: String) -> APIError {
        APIError(.notFound, code: "job_not_found", message: "no job with id '\(id.prefix(64))'")
    }

    static let unavailable = APIError(
        .serviceUnavailable, code: "store_unavailable", message: "the job store is unavailable; try again shortly")
}

/// Runs a store call; a store that is down (any `PostgresError`) answers `error`, a prompt 503 in the API's own
/// shape, instead of a bare 500. The one place every route maps store failures.
func unavailableOnStoreError<T>(
    answering error: some Error = APIError.unavailable, _ body: () async throws -> T
) async throws -> T {
    do {
        return try await body()
    } catch is PostgresError {
        throw error
    }
}
