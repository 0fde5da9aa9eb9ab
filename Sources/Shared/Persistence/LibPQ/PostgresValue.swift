import Foundation

/// A bound parameter (`$1`, `$2` …). Values are sent in Postgres's text format together with a type OID for
/// the cases where the type matters (uuid, numbers, bool, timestamptz, jsonb, bytea), so `$1::uuid` casts are
/// optional. `.text` is sent untyped ("unknown"), so the server infers the type from the context, which lets a
/// string bind to text, varchar, enum or citext columns alike. `.null` is untyped too: where the server cannot
/// infer its type (e.g. `$1 IS NULL` alone), add a cast in the SQL.
package enum PostgresValue: Sendable, Hashable {
    case null
    case text(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case uuid(UUID)
    /// A `timestamptz`, sent with microsecond precision in UTC.
    case timestamp(Date)
    /// A JSON document, sent as `jsonb`.
    case json(String)
    case bytea([UInt8])
    /// A `text[]`; elements may be NULL.
    case textArray([String?])

    /// `.text(value)` or `.null`.
    package static func optional(_ value: String?) -> PostgresValue {
        value.map(PostgresValue.text) ?? .null
    }

    /// `.int(value)` or `.null`.
    package static func optional(_ value: Int?) -> PostgresValue {
        value.map { .int(Int64($0)) } ?? .null
    }

    /// `.uuid(value)` or `.null`.
    package static func optional(_ value: UUID?) -> PostgresValue {
        value.map(PostgresValue.uuid) ?? .null
    }

    /// `.timestamp(value)` or `.null`.
    package static func optional(_ value: Date?) -> PostgresValue {
        value.map(PostgresValue.timestamp) ?? .null
    }

    /// `.int` from a platform integer.
    package static func int(_ value: Int) -> PostgresValue { .int(Int64(value)) }

    /// The type OID sent with the parameter; 0 lets the server infer it.
    var typeOID: UInt32 {
        switch self {
        case .null, .text: 0
        case .int: 20  // int8
        case .bool: 16
        case .double: 701  // float8
        case .uuid: 2950
        case .timestamp: 1184  // timestamptz
        case .json: 3802  // jsonb
        case .bytea: 17
        case .textArray: 1009  // text[]
        }
    }

    /// The value in Postgres's text input format; nil for SQL NULL.
    var textEncoding: String? {
        switch self {
        case .null: nil
        case .text(let value), .json(let value): value
        case .int(let value): String(value)
        case .bool(let value): value ? "t" : "f"
        case .double(let value): PostgresText.encode(value)
        case .uuid(let value): value.uuidString
        case .timestamp(let value): PostgresText.encode(value)
        case .bytea(let value): PostgresText.encodeHex(value)
        case .textArray(let value): PostgresText.encodeArray(value)
        }
    }
}

extension PostgresValue: ExpressibleByStringLiteral {
    package init(stringLiteral value: String) { self = .text(value) }
}

extension PostgresValue: ExpressibleByIntegerLiteral {
    package init(integerLiteral value: Int64) { self = .int(value) }
}

extension PostgresValue: ExpressibleByBooleanLiteral {
    package init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension PostgresValue: ExpressibleByFloatLiteral {
    package init(floatLiteral value: Double) { self = .double(value) }
}

extension PostgresValue: ExpressibleByNilLiteral {
    package init(nilLiteral: ()) { self = .null }
}
