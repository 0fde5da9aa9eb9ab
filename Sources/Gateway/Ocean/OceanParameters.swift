import Foundation

/// A parameter value as Ocean's operator-service receives it: query values are strings, JSON values keep their
/// types. Numbers keep their literal text, because the Provider signs `f"{owner}{nonce}"` with the nonce as
/// Python prints it (`1700000000123.456`, `1700000000123456789`), and re-printing a parsed Double would change
/// those bytes and break the signature.
enum OceanValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// The number's literal text, exactly as it appeared in the JSON.
    case number(String)
    case string(String)
    case array([OceanValue])
    case object([String: OceanValue])

    /// Python's truthiness, which the operator-service's `if not workflow` checks use.
    var isFalsy: Bool {
        switch self {
        case .null: true
        case .bool(let value): !value
        case .number(let text): Double(text) == 0
        case .string(let text): text.isEmpty
        case .array(let values): values.isEmpty
        case .object(let members): members.isEmpty
        }
    }

    /// What Python's `f"{value}"` gives for a scalar: the text the Provider concatenated when it signed.
    var text: String {
        switch self {
        case .null: "None"
        case .bool(let value): value ? "True" : "False"
        case .number(let text), .string(let text): text
        case .array, .object: String(decoding: json, as: UTF8.self)
        }
    }

    /// The value serialized as JSON again (numbers as their original literals), for `JSONDecoder`.
    var json: Data {
        var output = ""
        write(to: &output)
        return Data(output.utf8)
    }

    private func write(to output: inout String) {
        switch self {
        case .null: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .number(let text): output += text
        case .string(let text): Self.writeString(text, to: &output)
        case .array(let values):
            output += "["
            for (position, value) in values.enumerated() {
                if position > 0 { output += "," }
                value.write(to: &output)
            }
            output += "]"
        case .object(let members):
            output += "{"
            for (position, (key, value)) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if position > 0 { output += "," }
                Self.writeString(key, to: &output)
                output += ":"
                value.write(to: &output)
            }
            output += "}"
        }
    }

    private static func writeString(_ text: String, to output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case _ where scalar.value < 0x20:
                output +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: output.unicodeScalars.append(scalar)
            }
        }
        output += "\""
    }
}

/// The parameters of one operator-service call, read as the operator-service reads them: from the query string
/// if it has any, else from the JSON body — on every verb, GET included.
struct OceanParameters: Sendable {
    var values: [String: OceanValue]

    init(values: [String: OceanValue]) {
        self.values = values
    }

    /// `query` is the raw query string (without `?`); `body` the request body. A body that is not a JSON object
    /// gives no parameters, which the routes answer as Ocean does (`payload seems empty.`).
    init(query: String?, body: Data) {
        if let query, !query.isEmpty {
            var values: [String: OceanValue] = [:]
            // Werkzeug keeps the first value of a repeated key in `request.args[...]`.
            for (key, value) in Self.formDecode(query) where values[key] == nil {
                values[key] = .string(value)
            }
            if !values.isEmpty {
                self.values = values
                return
            }
        }
        var parser = OceanJSONParser(Array(body))
        if case .object(let members)? = try? parser.parseDocument() {
            values = members
        } else {
            values = [:]
        }
    }

    var isEmpty: Bool { values.isEmpty }

    subscript(_ key: String) -> OceanValue? { values[key] }

    /// The first of `keys` that is absent, in the given order (Ocean's `check_required_attributes`).
    func firstMissing(_ keys: [String]) -> String? {
        keys.first { values[$0] == nil }
    }

    /// A selector as the status and stop routes read it: absent, falsy or shorter than 2 characters counts as
    /// not given.
    func selector(_ key: String) -> String? {
        guard let value = values[key], !value.isFalsy else { return nil }
        let text = value.text
        return text.count < 2 ? nil : text
    }

    /// `application/x-www-form-urlencoded` decoding: `+` is a space, then percent-decoding.
    static func formDecode(_ query: String) -> [(String, String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                let spaced = text.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            let key = decode(parts[0])
            guard !key.isEmpty else { return nil }
            return (key, parts.count > 1 ? decode(parts[1]) : "")
        }
    }
}

/// A strict JSON (RFC 8259) parser that keeps number literals as text. Nesting is bounded so a hostile body
/// cannot exhaust the stack.
struct OceanJSONParser {
    struct Failure: Error {}

    private let bytes: [UInt8]
    private var position = 0
    private var depth = 0
    static let maxDepth = 64

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func parseDocument() throws(Failure) -> OceanValue {
        let value = try parseValue()
        skipWhitespace()
        guard position == bytes.count else { throw Failure() }
        return value
    }

    private mutating func skipWhitespace() {
        while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
    }

    private mutating func parseValue() throws(Failure) -> OceanValue {
        skipWhitespace()
        guard position < bytes.count else { throw Failure() }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default: return .number(try parseNumber())
        }
    }

    private mutating func expect(_ literal: String) throws(Failure) {
        for byte in literal.utf8 {
            guard position < bytes.count, bytes[position] == byte else { throw Failure() }
            position += 1
        }
    }

    private mutating func nest() throws(Failure) {
        depth += 1
        guard depth <= Self.maxDepth else { throw Failure() }
    }

    private mutating func parseObject() throws(Failure) -> OceanValue {
        try nest()
        defer { depth -= 1 }
        position += 1
        var members: [String: OceanValue] = [:]
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw Failure() }
            let key = try parseString()
            skipWhitespace()
            try expect(":")
            // Python's json keeps the last of duplicate keys.
            members[key] = try parseValue()
            skipWhitespace()
            guard position < bytes.count else { throw Failure() }
            let separator = bytes[position]
            position += 1
            if separator == UInt8(ascii: "}") { return .object(members) }
            guard separator == UInt8(ascii: ",") else { throw Failure() }
        }
    }

    private mutating func parseArray() throws(Failure) -> OceanValue {
        try nest()
        defer { depth -= 1 }
        position += 1
        var values: [OceanValue] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(values)
        }
        while true {
            values.append(try parseValue())
            skipWhitespace()
            guard position < bytes.count else { throw Failure() }
            let separator = bytes[position]
            position += 1
            if separator == UInt8(ascii: "]") { return .array(values) }
            guard separator == UInt8(ascii: ",") else { throw Failure() }
        }
    }

    private mutating func parseNumber() throws(Failure) -> String {
        let start = position
        func digits() -> Int {
            let from = position
            while position < bytes.count, (0x30...0x39).contains(bytes[position]) { position += 1 }
            return position - from
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        let integerStart = position
        let integerDigits = digits()
        guard integerDigits > 0, integerDigits == 1 || bytes[integerStart] != UInt8(ascii: "0") else {
            throw Failure()
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digits() > 0 else { throw Failure() }
        }
        if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard digits() > 0 else { throw Failure() }
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    private mutating func parseString() throws(Failure) -> String {
        position += 1
        var scalars = String.UnicodeScalarView()
        var run = position
        func flush(_ end: Int) throws(Failure) {
            guard let text = String(validating: bytes[run..<end], as: UTF8.self) else { throw Failure() }
            scalars.append(contentsOf: text.unicodeScalars)
        }
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                try flush(position)
                position += 1
                return String(scalars)
            }
            guard byte >= 0x20 else { throw Failure() }
            guard byte == UInt8(ascii: "\\") else {
                position += 1
                continue
            }
            try flush(position)
            position += 1
            guard position < bytes.count else { throw Failure() }
            let escape = bytes[position]
            position += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800...0xDBFF).contains(code) {
                    // A surrogate pair; a lone surrogate cannot be represented and is refused.
                    try expect("\\u")
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw Failure() }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw Failure() }
                scalars.append(scalar)
            default: throw Failure()
            }
            run = position
        }
        throw Failure()
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard position + 4 <= bytes.count,
            let value = UInt32(String(decoding: bytes[position..<position + 4], as: UTF8.self), radix: 16)
        else { throw Failure() }
        position += 4
        return value
    }
}
