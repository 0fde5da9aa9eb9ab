import Foundation

/// A failure of the Kubernetes client: what kind (``code``), the HTTP status, and the API server's `Status` reason and
/// message when it sent one.
package struct KubernetesError: Error, CustomStringConvertible, Sendable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case badRequest, unauthorized, forbidden, notFound, alreadyExists, conflict, gone, invalid
            case tooManyRequests, serverError, timeout, transport, decoding, configuration, unexpectedResponse
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// 400: the request was malformed (bad selector, bad patch body).
        package static let badRequest = Code(.badRequest)
        /// 401: no or wrong credentials (an expired token, a rotated certificate).
        package static let unauthorized = Code(.unauthorized)
        /// 403: authenticated, but RBAC or admission denied the request.
        package static let forbidden = Code(.forbidden)
        /// 404: the object (or namespace) does not exist.
        package static let notFound = Code(.notFound)
        /// 409 with reason `AlreadyExists`: a create found an object of that name.
        package static let alreadyExists = Code(.alreadyExists)
        /// 409 otherwise: a stale `resourceVersion` on update, or a concurrent change.
        package static let conflict = Code(.conflict)
        /// 410, or a watch `ERROR` event with code 410: the resourceVersion or continue token is too old. Relist.
        package static let gone = Code(.gone)
        /// 422: the object failed validation (``KubernetesError/status`` has the causes).
        package static let invalid = Code(.invalid)
        /// 429 after the retries ran out (API Priority and Fairness, or max-requests-inflight).
        package static let tooManyRequests = Code(.tooManyRequests)
        /// 5xx other than a timeout.
        package static let serverError = Code(.serverError)
        /// The request deadline passed, a stream went idle, or the server answered 504 / reason `Timeout`.
        package static let timeout = Code(.timeout)
        /// The server could not be reached or the connection broke; for a mutating call its outcome is unknown.
        package static let transport = Code(.transport)
        /// The response body was not what the typed API expected.
        package static let decoding = Code(.decoding)
        /// The configuration (kubeconfig, in-cluster files, URL, PEM) cannot be used.
        package static let configuration = Code(.configuration)
        /// Any other HTTP status.
        package static let unexpectedResponse = Code(.unexpectedResponse)

        package var description: String { base.rawValue }
    }

    package var code: Code
    /// Says what failed, quoting the API server's message when there is one.
    package var message: String
    /// The HTTP status of the response, or the `code` of a watch `ERROR` event; nil for local failures.
    package var httpStatus: Int?
    /// The API server's `Status` body, when it sent one.
    package var status: Status?

    package init(code: Code, message: String, httpStatus: Int? = nil, status: Status? = nil) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.status = status
    }

    /// The `reason` of the API `Status` (e.g. `AlreadyExists`, `Expired`), if any.
    package var reason: String? { status?.reason }

    package var description: String {
        var text = "KubernetesError.\(code)"
        if let httpStatus { text += " (\(httpStatus)" + (reason.map { " \($0)" } ?? "") + ")" }
        return text + ": \(message)"
    }

    /// True for failures a later attempt may not repeat: throttling, server errors, timeouts, broken connections.
    package var isTransient: Bool {
        switch code {
        case .tooManyRequests, .serverError, .timeout, .transport: true
        default: false
        }
    }

    /// Builds the error for a non-2xx response, decoding its body as an API `Status` when it is one.
    package init(httpStatus: Int, body: some Collection<UInt8>, context: String) {
        let status = try? JSONDecoder().decode(Status.self, from: Data(body))
        let parsed = status?.kind == "Status" || status?.reason != nil ? status : nil
        let detail =
            parsed?.message
            ?? String(decoding: body.prefix(512), as: UTF8.self).trimmingCharacters(
                in: .whitespacesAndNewlines)
        self.init(
            code: Self.code(httpStatus: httpStatus, reason: parsed?.reason),
            message: detail.isEmpty ? "\(context): HTTP \(httpStatus)" : "\(context): \(detail)",
            httpStatus: httpStatus,
            status: parsed
        )
    }

    /// Builds the error for a watch `ERROR` event, whose object is a `Status`.
    package init(watchStatus status: Status, context: String) {
        let httpStatus = status.code ?? 500
        self.init(
            code: Self.code(httpStatus: httpStatus, reason: status.reason),
            message: "\(context): \(status.message ?? "watch error")",
            httpStatus: httpStatus,
            status: status
        )
    }

    /// Maps an HTTP status and `Status.reason` to a code; the reason wins where the status is ambiguous (409, 410).
    static func code(httpStatus: Int, reason: String?) -> Code {
        switch (httpStatus, reason) {
        case (_, "Expired"), (_, "Gone"), (410, _): .gone
        case (_, "AlreadyExists"): .alreadyExists
        case (_, "Timeout"), (504, _): .timeout
        case (400, _): .badRequest
        case (401, _): .unauthorized
        case (403, _): .forbidden
        case (404, _): .notFound
        case (409, _): .conflict
        case (422, _): .invalid
        case (429, _): .tooManyRequests
        case (500...599, _): .serverError
        default: .unexpectedResponse
        }
    }

    static func configuration(_ message: String) -> KubernetesError {
        KubernetesError(code: .configuration, message: message)
    }
}

/// The API server's `Status` object (meta/v1), returned for failures and by some deletes.
package struct Status: Codable, Sendable, Hashable {
    package var apiVersion: String?
    package var kind: String?
    /// `Success` or `Failure`.
    package var status: String?
    package var message: String?
    /// Machine-readable cause, e.g. `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`, `TooManyRequests`.
    package var reason: String?
    package var details: Details?
    /// The HTTP status the server meant (also set on watch `ERROR` events).
    package var code: Int?

    package struct Details: Codable, Sendable, Hashable {
        package var name: String?
        package var group: String?
        package var kind: String?
        package var uid: String?
        package var causes: [Cause]?
        package var retryAfterSeconds: Int?

        package init(
            name: String? = nil, group: String? = nil, kind: String? = nil, uid: String? = nil,
            causes: [Cause]? = nil, retryAfterSeconds: Int? = nil
        ) {
            self.name = name
            self.group = group
            self.kind = kind
            self.uid = uid
            self.causes = causes
            self.retryAfterSeconds = retryAfterSeconds
        }
    }

    package struct Cause: Codable, Sendable, Hashable {
        package var reason: String?
        package var message: String?
        package var field: String?

        package init(reason: String? = nil, message: String? = nil, field: String? = nil) {
            self.reason = reason
            self.message = message
            self.field = field
        }
    }

    package init(
        status: String? = nil, message: String? = nil, reason: String? = nil, details: Details? = nil,
        code: Int? = nil
    ) {
        self.apiVersion = "v1"
        self.kind = "Status"
        self.status = status
        self.message = message
        self.reason = reason
        self.details = details
        self.code = code
    }
}
