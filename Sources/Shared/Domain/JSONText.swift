/// Compact JSON written by hand, byte for byte as `JSONEncoder` writes it with `.sortedKeys` (`/` escaped, integral
/// doubles without ".0"); the caller writes each object's keys in sorted order. For the hot paths whose `Codable`
/// encoding was a measurable cost: the workflow of every submit (``WorkflowJSON``) and every status event
/// (``JobEvent/json``).
package struct JSONText: Sendable {
    /// UTF-8 JSON text.
    package private(set) var bytes: [UInt8] = []
    /// Whether some string held a NUL character (written `\u0000`), which Postgres's jsonb cannot store.
    package private(set) var containsNUL = false

    package init(capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    package var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Appends text that is already JSON, such as `null`.
    package mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// The `:` after a key written with ``string(_:)`` (a key that may need escaping).
    package mutating func colon() {
        bytes.append(UInt8(ascii: ":"))
    }

    /// Whether an object has had a member yet: its `{` is written with the first key, so that an empty object
    /// becomes `{}` in ``end(_:)``.
    package struct ObjectState {
        var hasMembers = false

        package init() {}
    }

    /// Writes `{` before an object's first member, `,` before the others.
    package mutating func startMember(_ object: inout ObjectState) {
        bytes.append(object.hasMembers ? UInt8(ascii: ",") : UInt8(ascii: "{"))
        object.hasMembers = true
    }

    /// Starts a member and writes `"name":`. `name` must need no escaping.
    package mutating func key(_ name: StaticString, _ object: inout ObjectState) {
        startMember(&object)
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    package mutating func end(_ object: ObjectState) {
        if !object.hasMembers { bytes.append(UInt8(ascii: "{")) }
        bytes.append(UInt8(ascii: "}"))
    }

    package mutating func array<Element>(
        _ elements: [Element], _ writeElement: (inout JSONText, Element) throws -> Void
    ) rethrows {
        bytes.append(UInt8(ascii: "["))
        for (position, element) in elements.enumerated() {
            if position > 0 { bytes.append(UInt8(ascii: ",")) }
            try writeElement(&self, element)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    package mutating func strings(_ values: [String]) {
        array(values) { $0.string($1) }
    }

    package mutating func integer(_ value: Int) {
        bytes.append(contentsOf: String(value).utf8)
    }

    package mutating func boolean(_ value: Bool) {
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// Swift's shortest round-tripping form, without the ".0" of an integral value, as `JSONEncoder` writes it.
    package mutating func number(_ value: Double) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "a JSON number is not finite: \(value)"))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes.append(contentsOf: text.utf8)
    }

    /// A quoted string: `"`, `\` and `/` escaped with a backslash, control characters as `\b`, `\f`, `\n`, `\r`,
    /// `\t` or `\u00XX`; everything else, non-ASCII included, as its UTF-8 bytes.
    package mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        var utf8 = value
        utf8.withUTF8 { source in
            var plainStart = 0
            for (offset, byte) in source.enumerated() where Self.isEscaped(byte) {
                bytes.append(contentsOf: source[plainStart..<offset])
                plainStart = offset + 1
                bytes.append(UInt8(ascii: "\\"))
                switch byte {
                case 0x22, 0x5C, 0x2F: bytes.append(byte)
                case 0x08: bytes.append(UInt8(ascii: "b"))
                case 0x0C: bytes.append(UInt8(ascii: "f"))
                case 0x0A: bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "t"))
                default:
                    if byte == 0 { containsNUL = true }
                    bytes.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    bytes.append(Self.hexDigits[Int(byte >> 4)])
                    bytes.append(Self.hexDigits[Int(byte & 0x0F)])
                }
            }
            bytes.append(contentsOf: source[plainStart...])
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A control character, `"`, `\` or `/`.
    private static func isEscaped(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == 0x22 || byte == 0x5C || byte == 0x2F
    }
}
