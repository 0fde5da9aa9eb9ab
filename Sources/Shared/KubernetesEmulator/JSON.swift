/// A JSON value. The emulator keeps objects as JSON, not typed structs, so fields it does not know round-trip
/// untouched, as they do through the real API server.
enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var int: Int64? {
        switch self {
        case .int(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 9e18: return Int64(value)
        default: return nil
        }
    }

    var double: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var array: [JSON]? {
        if case .array(let value) = self { return value }
        return nil
    }

    var object: [String: JSON]? {
        if case .object(let value) = self { return value }
        return nil
    }

    var isNull: Bool { self == .null }

    /// Member access; setting on a non-object turns it into an object, setting nil removes the key.
    subscript(key: String) -> JSON? {
        get {
            if case .object(let members) = self { return members[key] }
            return nil
        }
        set {
            var members = takeMembers()
            members[key] = newValue
            self = .object(members)
        }
    }

    /// The object's members, leaving `self` null so the dictionary is uniquely referenced and mutates in place
    /// (nested writes would otherwise copy whole subtrees).
    private mutating func takeMembers() -> [String: JSON] {
        guard case .object(let members) = self else { return [:] }
        self = .null
        return members
    }

    /// Value at a path of object keys.
    subscript(path: [String]) -> JSON? {
        get {
            var current: JSON? = self
            for key in path { current = current?[key] }
            return current
        }
        set {
            self.set(path[...], newValue)
        }
    }

    private mutating func set(_ path: ArraySlice<String>, _ value: JSON?) {
        guard let first = path.first else {
            self = value ?? .null
            return
        }
        var members = takeMembers()
        if path.count == 1 {
            members[first] = value
        } else {
            var child = members.removeValue(forKey: first) ?? .object([:])
            child.set(path.dropFirst(), value)
            members[first] = child
        }
        self = .object(members)
    }

    /// A string-to-string map such as labels or annotations (non-string values are skipped).
    var stringMap: [String: String] {
        guard let members = object else { return [:] }
        var result: [String: String] = [:]
        for (key, value) in members {
            if let text = value.string { result[key] = text }
        }
        return result
    }

    static func stringMap(_ map: [String: String]) -> JSON {
        .object(map.mapValues { .string($0) })
    }

    /// RFC 7386 JSON merge patch.
    func mergePatched(with patch: JSON) -> JSON {
        guard case .object(let changes) = patch else { return patch }
        var members = object ?? [:]
        for (key, value) in changes {
            if value == .null {
                members[key] = nil
            } else {
                members[key] = (members[key] ?? .null).mergePatched(with: value)
            }
        }
        return .object(members)
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int64) { self = .int(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: JSON...) { self = .array(elements) }
    init(floatLiteral value: Double) { self = .double(value) }
    init(nilLiteral: ()) { self = .null }
    init(dictionaryLiteral elements: (String, JSON)...) {
        var members: [String: JSON] = [:]
        for (key, value) in elements { members[key] = value }
        self = .object(members)
    }
}

// MARK: - Parsing

struct JSONParseError: Error, CustomStringConvertible {
    var offset: Int
    var reason: String
    var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension JSON {
    /// Parses UTF-8 JSON text; a hand-written parser keeps 100,000-object preloads fast.
    static func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws -> JSON {
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(bytes: buffer)
            parser.skipSpace()
            let value = try parser.value(depth: 0)
            parser.skipSpace()
            guard parser.index == buffer.count else { throw parser.error("trailing characters") }
            return value
        }
    }

    static func parse(_ text: String) throws -> JSON { try parse(Array(text.utf8)) }
}

private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    func error(_ reason: String) -> JSONParseError { JSONParseError(offset: index, reason: reason) }

    mutating func skipSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func expect(_ literal: StaticString, _ value: JSON) throws -> JSON {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end") }
        let start = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != start[offset] {
            throw error("unexpected literal")
        }
        index += count
        return value
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < 512 else { throw error("nesting too deep") }
        guard index < bytes.count else { throw error("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try objectValue(depth: depth)
        case UInt8(ascii: "["): return try arrayValue(depth: depth)
        case UInt8(ascii: "\""): return .string(try stringValue())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        default: return try numberValue()
        }
    }

    mutating func objectValue(depth: Int) throws -> JSON {
        index += 1
        var members: [String: JSON] = [:]
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a key") }
            let key = try stringValue()
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipSpace()
            members[key] = try value(depth: depth + 1)
            skipSpace()
            guard index < bytes.count else { throw error("unexpected end") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            } else {
                throw error("expected ',' or '}'")
            }
        }
    }

    mutating func arrayValue(depth: Int) throws -> JSON {
        index += 1
        var elements: [JSON] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipSpace()
            elements.append(try value(depth: depth + 1))
            skipSpace()
            guard index < bytes.count else { throw error("unexpected end") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            } else {
                throw error("expected ',' or ']'")
            }
        }
    }

    mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("short unicode escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("bad unicode escape")
            }
            value = value * 16 + digit
            index += 1
        }
        return value
    }

    mutating func stringValue() throws -> String {
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character in string") }
            index += 1
        }
        var scalars: [UInt8] = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: scalars, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw error("unexpected end") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escape)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code), index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"),
                        bytes[index + 1] == UInt8(ascii: "u")
                    {
                        index += 2
                        let low = try hex4()
                        code = 0x10000 + ((code - 0xD800) << 10) + (low &- 0xDC00)
                    }
                    let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                    scalars.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: throw error("bad escape")
                }
            default:
                if byte < 0x20 { throw error("control character in string") }
                scalars.append(byte)
            }
        }
        throw error("unterminated string")
    }

    mutating func numberValue() throws -> JSON {
        let start = index
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                index += 1
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
                || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
            {
                isInteger = false
                index += 1
            } else {
                break
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard !text.isEmpty, text != "-" else { throw error("unexpected character") }
        if isInteger, let value = Int64(text) { return .int(value) }
        guard let value = Double(text) else { throw error("bad number") }
        return .double(value)
    }
}

// MARK: - Serialization

extension JSON {
    /// Keys the real API server writes first (struct field order); the rest follow sorted, for stable output.
    private static let keyRank: [String: Int] = [
        "kind": 0, "apiVersion": 1, "type": 2, "metadata": 3, "name": 4, "generateName": 5, "namespace": 6,
        "uid": 7, "resourceVersion": 8, "generation": 9, "creationTimestamp": 10, "deletionTimestamp": 11,
        "spec": 20, "data": 21, "status": 30, "items": 31, "object": 32,
    ]

    /// Whether parsing ``serialized()`` gives this value back: false when it holds a double that is written as an
    /// integer (and so reads back as `.int`).
    var survivesSerialization: Bool {
        switch self {
        case .null, .bool, .int, .string: return true
        case .double(let value): return !(value.isFinite && value.rounded() == value && abs(value) < 1e15)
        case .array(let elements): return elements.allSatisfy(\.survivesSerialization)
        case .object(let members): return members.values.allSatisfy(\.survivesSerialization)
        }
    }

    func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(into: &out)
        return out
    }

    var text: String { String(decoding: serialized(), as: UTF8.self) }

    func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .int(let value): out.append(contentsOf: String(value).utf8)
        case .double(let value):
            if value.isFinite {
                out.append(
                    contentsOf: (value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : "\(value)").utf8
                )
            } else {
                out.append(contentsOf: "null".utf8)
            }
        case .string(let value): Self.writeString(value, into: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (offset, element) in elements.enumerated() {
                if offset > 0 { out.append(UInt8(ascii: ",")) }
                element.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // Each key's rank looked up once, not at every comparison (hashing keys was most of the sort).
            var ordered: [(rank: Int, key: String, value: JSON)] = []
            ordered.reserveCapacity(members.count)
            for (key, value) in members { ordered.append((Self.keyRank[key] ?? 100, key, value)) }
            ordered.sort { $0.rank != $1.rank ? $0.rank < $1.rank : $0.key < $1.key }
            for (offset, member) in ordered.enumerated() {
                if offset > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(member.key, into: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ value: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most strings need no escape: copied whole.
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.append(contentsOf: value.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
            case 0x0A: out.append(contentsOf: "\\n".utf8)
            case 0x0D: out.append(contentsOf: "\\r".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: "\\u00".utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
