import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An operator-service error: Ocean's body `{"error": "<message>"}` with Ocean's status code. `code` names the
/// failure for logs and tests; it is not sent, because Ocean's clients only know the message.
struct OceanError: HTTPResponseError, Sendable, CustomStringConvertible {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    /// Headers the answer needs besides the body (e.g. `Content-Range` on a 416).
    var headers: HTTPFields

    init(_ status: HTTPResponse.Status = .badRequest, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    var description: String { "\(status.code) \(code): \(message)" }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONEncoder().encode(["error": message])
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(
            status: status, headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: Ocean's texts (docs/ocean-operator-service.md, "Errors"), verbatim

    static let payloadEmpty = OceanError(code: "payload_empty", message: "payload seems empty.")

    static func missingAttribute(_ name: String, call: String) -> OceanError {
        OceanError(code: "missing_attribute", message: "\"\(name)\" is required in the call to \(call)")
    }

    static let workflowRequired = OceanError(
        code: "workflow_required", message: "`workflow` is required in the payload and must include workflow stages")
    static let agreementInUse = OceanError(
        code: "agreement_in_use", message: "`agreementId` already in use for other job.")
    static let environmentInvalid = OceanError(
        code: "environment_invalid", message: "Environment invalid or does not exist")
    static let missingStages = OceanError(code: "missing_stages", message: "Missing stages")
    static let multipleStages = OceanError(code: "multiple_stages", message: "Multiple stages are not supported yet")

    static func missingInStage(_ name: String) -> OceanError {
        OceanError(code: "missing_stage_attribute", message: "Missing \(name) in stage 0")
    }

    static let selectorRequired = OceanError(
        code: "selector_required", message: "You have to specify one of agreementId, jobId or owner")
    static let signatureRequired = OceanError(
        code: "signature_required", message: "`providerSignature` of agreementId is required.")
    static let recoveryFailed = OceanError(code: "recovery_failed", message: "Failed to recover address")

    static func notAuthorized(signature: String, message: String, signer: String) -> OceanError {
        OceanError(
            .unauthorized, code: "provider_not_allowed",
            message: "Invalid signature \(signature.prefix(140)) of documentId \(message.prefix(200)),"
                + "the signing ethereum account \(signer) is not authorized to use this service.")
    }

    static func ownerMismatch(owner: String, jobID: String) -> OceanError {
        OceanError(
            .notFound, code: "owner_mismatch",
            message: "Owner \(owner.prefix(100)) mismatch for job \(jobID.prefix(64))")
    }

    static func noResults(jobID: String) -> OceanError {
        OceanError(.notFound, code: "no_results", message: "No results for job \(jobID.prefix(64))")
    }

    static func negativeIndex(_ index: Int) -> OceanError {
        OceanError(.notFound, code: "negative_index", message: "Negative index \(index)")
    }

    static func noSuchIndex(_ index: Int) -> OceanError {
        OceanError(.notFound, code: "no_such_index", message: "No such index \(index) in this compute job")
    }

    // MARK: c2d's own refusals, in Ocean's shape

    /// Ocean answers a stale nonce with a 500 from a failed insert; c2d says what is wrong.
    static func staleNonce(_ nonce: String, signer: String) -> OceanError {
        OceanError(
            code: "stale_nonce",
            message: "Invalid nonce \(nonce.prefix(80)): it must be greater than the last nonce used by \(signer)")
    }

    static func invalidNonce(_ nonce: String) -> OceanError {
        OceanError(
            code: "invalid_nonce",
            message: "Invalid nonce \(nonce.prefix(80)): it must be a non-negative decimal number")
    }

    static let disabled = OceanError(
        .notFound, code: "ocean_api_disabled",
        message:
            "The Ocean operator-service API is disabled on this gateway: the operator lists the Providers allowed to "
            + "use it in C2D_ALLOWED_PROVIDERS")

    static let unavailable = OceanError(
        .serviceUnavailable, code: "store_unavailable", message: "the job store is unavailable; try again shortly")
}
