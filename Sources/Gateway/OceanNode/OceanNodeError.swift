import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An ocean-node API error: ocean-node's body — the message as a JSON string on the start routes (`res.json(error)`),
/// as plain text on the download and log routes (`res.send(error)`) — with an HTTP status. c2d's machine-readable
/// code travels in the `X-C2D-Error-Code` header, which ocean-node clients ignore.
struct OceanNodeError: HTTPResponseError, Sendable, CustomStringConvertible {
    enum Body: Sendable {
        case jsonString, text
    }

    var status: HTTPResponse.Status
    var code: String
    var message: String
    var body: Body
    /// Headers the answer needs besides the body (e.g. `Retry-After` on a 429).
    var headers: HTTPFields

    init(
        _ status: HTTPResponse.Status = .badRequest, code: String, message: String, body: Body = .jsonString,
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        self.headers = headers
    }

    var description: String { "\(status.code) \(code): \(message)" }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = headers
        headers[.c2dErrorCode] = code
        let bytes: Data
        switch body {
        case .jsonString:
            headers[.contentType] = "application/json; charset=utf-8"
            bytes = try JSONEncoder().encode(message)
        case .text:
            headers[.contentType] = "text/plain; charset=utf-8"
            bytes = Data(message.utf8)
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    func asText() -> OceanNodeError {
        var copy = self
        copy.body = .text
        return copy
    }

    // MARK: ocean-node's texts (docs/ocean-node.md, "Errors")

    /// `validateCommandParameters`: a required field absent or null.
    static func missingField(_ field: String, command: String, required: [String]) -> OceanNodeError {
        OceanNodeError(
            code: "missing_field",
            message: "Missing one ( \"\(field)\" ) or more required field(s) for command: \"\(command)\". "
                + "Required fields: \(required.joined(separator: ","))")
    }

    static let invalidConsumer = OceanNodeError(
        code: "invalid_consumer_address", message: "Parameter : \"consumerAddress\" is not a valid web3 address")
    static let invalidEnvironment = OceanNodeError(code: "invalid_environment", message: "Invalid C2D Environment")
    static let invalidMaxJobDuration = OceanNodeError(
        code: "invalid_max_job_duration", message: "Invalid maxJobDuration")
    static let accessDenied = OceanNodeError(.forbidden, code: "access_denied", message: "Access denied")
    static let statusSelectorRequired = OceanNodeError(
        code: "selector_required", message: "Missing one of [\"jobId\",\"consumerAddress\",\"agreementId\"]")
    static let invalidResultIndex = OceanNodeError(
        code: "invalid_index", message: "Invalid result index", body: .text)

    static func unauthorized(_ reason: String) -> OceanNodeError {
        OceanNodeError(.unauthorized, code: "invalid_signature", message: reason)
    }

    static func jobNotFound(_ jobID: String) -> OceanNodeError {
        OceanNodeError(
            .notFound, code: "job_not_found", message: "Cannot find job with id \(jobID.prefix(80))", body: .text)
    }

    static func notAuthorizedForResults(consumer: String, jobID: String) -> OceanNodeError {
        OceanNodeError(
            .forbidden, code: "results_private",
            message: "\(consumer.prefix(64)) is not authorized to get results for job with id \(jobID.prefix(80))",
            body: .text)
    }

    static func noPayments(chainID: Int, token: String) -> OceanNodeError {
        OceanNodeError(
            code: "no_prices",
            message: "This compute env does not accept payments on chain: \(chainID) using token \(token.prefix(64))")
    }

    static func paymentUnverifiable(chainID: Int) -> OceanNodeError {
        OceanNodeError(
            code: "payment_unverifiable", message: "Cannot handle payments on chainId: \(chainID)")
    }

    static let unavailable = OceanNodeError(
        .serviceUnavailable, code: "store_unavailable", message: "the job store is unavailable; try again shortly")
}

extension HTTPField.Name {
    static let c2dErrorCode = HTTPField.Name("X-C2D-Error-Code")!
}
