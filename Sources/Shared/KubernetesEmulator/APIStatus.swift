/// A failed API call, rendered as a Kubernetes `Status` object with the same code, reason and message text the
/// real API server uses, because clients branch on them.
struct APIStatus: Error, Sendable {
    struct Cause: Sendable {
        var reason: String
        var message: String
        var field: String
    }

    var code: Int
    var reason: String
    var message: String
    var name: String?
    var group: String?
    var kind: String?
    var causes: [Cause] = []
    var retryAfterSeconds: Int?

    var json: JSON {
        var details: JSON = [:]
        if let name { details["name"] = .string(name) }
        if let group { details["group"] = .string(group) }
        if let kind { details["kind"] = .string(kind) }
        if !causes.isEmpty {
            details["causes"] = .array(
                causes.map {
                    ["reason": .string($0.reason), "message": .string($0.message), "field": .string($0.field)]
                })
        }
        if let retryAfterSeconds { details["retryAfterSeconds"] = .int(Int64(retryAfterSeconds)) }
        var status: JSON = [
            "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure",
            "message": .string(message), "reason": .string(reason), "code": .int(Int64(code)),
        ]
        if details != [:] { status["details"] = details }
        return status
    }

    static func notFound(_ resource: ResourceType, _ name: String) -> APIStatus {
        APIStatus(
            code: 404, reason: "NotFound", message: "\(resource.qualifiedName) \"\(name)\" not found", name: name,
            group: resource.group, kind: resource.name)
    }

    static func alreadyExists(_ resource: ResourceType, _ name: String) -> APIStatus {
        APIStatus(
            code: 409, reason: "AlreadyExists", message: "\(resource.qualifiedName) \"\(name)\" already exists",
            name: name, group: resource.group, kind: resource.name)
    }

    static func conflict(_ resource: ResourceType, _ name: String, _ detail: String) -> APIStatus {
        APIStatus(
            code: 409, reason: "Conflict",
            message: "Operation cannot be fulfilled on \(resource.qualifiedName) \"\(name)\": \(detail)", name: name,
            group: resource.group, kind: resource.name)
    }

    static let staleObject =
        "the object has been modified; please apply your changes to the latest version and try again"

    static func invalid(_ resource: ResourceType, _ name: String, _ causes: [Cause]) -> APIStatus {
        let parts = causes.map { "\($0.field): \($0.message)" }
        let summary = parts.count == 1 ? parts[0] : "[\(parts.joined(separator: ", "))]"
        return APIStatus(
            code: 422, reason: "Invalid", message: "\(resource.qualifiedKind) \"\(name)\" is invalid: \(summary)",
            name: name, group: resource.group, kind: resource.kind, causes: causes)
    }

    static func badRequest(_ message: String) -> APIStatus {
        APIStatus(code: 400, reason: "BadRequest", message: message)
    }

    static func methodNotAllowed() -> APIStatus {
        APIStatus(
            code: 405, reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource")
    }

    static func pathNotFound() -> APIStatus {
        APIStatus(code: 404, reason: "NotFound", message: "the server could not find the requested resource")
    }

    static func expired(_ message: String) -> APIStatus {
        APIStatus(code: 410, reason: "Expired", message: message)
    }

    static func tooManyRequests(retryAfter: Int) -> APIStatus {
        APIStatus(
            code: 429, reason: "TooManyRequests", message: "Too many requests, please try again later.",
            retryAfterSeconds: retryAfter)
    }

    static func internalError(_ message: String) -> APIStatus {
        APIStatus(code: 500, reason: "InternalError", message: "Internal error occurred: \(message)")
    }
}

/// Collects field errors the way apimachinery's `field.ErrorList` does, then fails with one 422.
struct FieldErrors {
    var causes: [APIStatus.Cause] = []

    var isEmpty: Bool { causes.isEmpty }

    mutating func required(_ field: String, _ detail: String = "") {
        causes.append(
            .init(
                reason: "FieldValueRequired", message: "Required value" + (detail.isEmpty ? "" : ": \(detail)"),
                field: field))
    }

    mutating func invalid(_ field: String, _ value: String, _ detail: String) {
        causes.append(
            .init(reason: "FieldValueInvalid", message: "Invalid value: \"\(value)\": \(detail)", field: field))
    }

    mutating func invalid(_ field: String, number: Int64, _ detail: String) {
        causes.append(.init(reason: "FieldValueInvalid", message: "Invalid value: \(number): \(detail)", field: field))
    }

    mutating func notSupported(_ field: String, _ value: String, _ supported: [String]) {
        let list = supported.map { "\"\($0)\"" }.joined(separator: ", ")
        causes.append(
            .init(
                reason: "FieldValueNotSupported", message: "Unsupported value: \"\(value)\": supported values: \(list)",
                field: field))
    }

    mutating func duplicate(_ field: String, _ value: String) {
        causes.append(.init(reason: "FieldValueDuplicate", message: "Duplicate value: \"\(value)\"", field: field))
    }

    mutating func notFound(_ field: String, _ value: String) {
        causes.append(.init(reason: "FieldValueNotFound", message: "Not found: \"\(value)\"", field: field))
    }

    mutating func forbidden(_ field: String, _ detail: String) {
        causes.append(.init(reason: "FieldValueForbidden", message: "Forbidden: \(detail)", field: field))
    }

    func check(_ resource: ResourceType, _ name: String) throws {
        if !causes.isEmpty { throw APIStatus.invalid(resource, name, causes) }
    }
}
