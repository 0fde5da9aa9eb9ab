/// A workflow written as compact JSON by hand: the same text `JSONEncoder` writes with `.sortedKeys` (keys in
/// order, `/` escaped, integral doubles without ".0").
///
/// Every submit encodes its workflow once (the size check needs the bytes, and the store writes them), and the
/// encoder's generic `Codable` path was the largest single cost of an insert in the client: 16% of the client's CPU
/// in `c2d bench db`'s single inserts. For the bench's workflow of 1,138 bytes it took 13 µs, and this takes 2 µs
/// (docs/operations.md, "Where a submit's time goes").
package struct WorkflowJSON: Sendable {
    /// UTF-8 JSON text.
    package private(set) var bytes: [UInt8]
    /// Whether some string held a NUL character (written `\u0000`), which Postgres's jsonb cannot store.
    package private(set) var containsNUL = false

    /// Encodes `workflow`; throws `EncodingError.invalidValue`, as `JSONEncoder` does, for a number that is not
    /// finite, which JSON cannot write.
    package init(_ workflow: Workflow) throws {
        bytes = []
        bytes.reserveCapacity(1_024)
        try write(workflow)
    }

    package var text: String { String(decoding: bytes, as: UTF8.self) }

    // MARK: The workflow's types, keys in sorted order; absent optionals and (for inputs) empty lists omitted,
    // as their `Codable` conformances do

    private mutating func write(_ workflow: Workflow) throws {
        var object = ObjectState()
        key("stages", &object)
        try array(workflow.stages) { try $0.write($1) }
        end(object)
    }

    private mutating func write(_ stage: Workflow.Stage) throws {
        var object = ObjectState()
        key("algorithm", &object)
        try write(stage.algorithm)
        if let compute = stage.compute {
            key("compute", &object)
            try write(compute)
        }
        if let index = stage.index { key("index", &object); integer(index) }
        key("input", &object)
        try array(stage.input) { try $0.write($1) }
        if let output = stage.output { key("output", &object); try write(output) }
        end(object)
    }

    private mutating func write(_ input: Workflow.Input) throws {
        var object = ObjectState()
        if !input.checksum.isEmpty { key("checksum", &object); strings(input.checksum) }
        key("id", &object)
        string(input.id)
        if let index = input.index { key("index", &object); integer(index) }
        if !input.path.isEmpty { key("path", &object); strings(input.path) }
        if let remote = input.remote { key("remote", &object); try write(remote) }
        if !input.url.isEmpty { key("url", &object); strings(input.url) }
        end(object)
    }

    private mutating func write(_ algorithm: Workflow.Algorithm) throws {
        var object = ObjectState()
        if let data = algorithm.algocustomdata { key("algocustomdata", &object); try write(data) }
        if let checksum = algorithm.checksum { key("checksum", &object); string(checksum) }
        if let container = algorithm.container {
            key("container", &object)
            var inner = ObjectState()
            if let checksum = container.checksum { key("checksum", &inner); string(checksum) }
            key("entrypoint", &inner)
            string(container.entrypoint)
            if let image = container.image { key("image", &inner); string(image) }
            if let tag = container.tag { key("tag", &inner); string(tag) }
            end(inner)
        }
        if let id = algorithm.id { key("id", &object); string(id) }
        if let rawcode = algorithm.rawcode { key("rawcode", &object); string(rawcode) }
        if let remote = algorithm.remote { key("remote", &object); try write(remote) }
        if let url = algorithm.url { key("url", &object); string(url) }
        end(object)
    }

    private mutating func write(_ compute: Workflow.Compute) throws {
        var object = ObjectState()
        if let allowNetwork = compute.allowNetwork { key("allowNetwork", &object); boolean(allowNetwork) }
        if let maxtime = compute.maxtime { key("maxtime", &object); integer(maxtime) }
        if let namespace = compute.namespace { key("namespace", &object); string(namespace) }
        if let resources = compute.resources {
            key("resources", &object)
            try array(resources) { writer, resource in
                var inner = ObjectState()
                writer.key("amount", &inner)
                try writer.number(resource.amount)
                writer.key("id", &inner)
                writer.string(resource.id)
                writer.end(inner)
            }
        }
        end(object)
    }

    private mutating func write(_ value: JSONValue) throws {
        switch value {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let value): boolean(value)
        case .number(let value): try number(value)
        case .string(let value): string(value)
        case .array(let values): try array(values) { try $0.write($1) }
        case .object(let members):
            var object = ObjectState()
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                startMember(&object)
                string(name)
                bytes.append(UInt8(ascii: ":"))
                try write(member)
            }
            end(object)
        }
    }

    // MARK: JSON's pieces

    /// Whether an object has had a member yet: its `{` is written with the first key, so that an empty object
    /// becomes `{}` in ``end(_:)``.
    private struct ObjectState {
        var hasMembers = false
    }

    /// Writes `{` before an object's first member, `,` before the others.
    private mutating func startMember(_ object: inout ObjectState) {
        bytes.append(object.hasMembers ? UInt8(ascii: ",") : UInt8(ascii: "{"))
        object.hasMembers = true
    }

    /// Starts a member and writes `"name":`. `name` must need no escaping.
    private mutating func key(_ name: StaticString, _ object: inout ObjectState) {
        startMember(&object)
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    private mutating func end(_ object: ObjectState) {
        if !object.hasMembers { bytes.append(UInt8(ascii: "{")) }
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func array<Element>(
        _ elements: [Element], _ writeElement: (inout WorkflowJSON, Element) throws -> Void
    ) rethrows {
        bytes.append(UInt8(ascii: "["))
        for (position, element) in elements.enumerated() {
            if position > 0 { bytes.append(UInt8(ascii: ",")) }
            try writeElement(&self, element)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    private mutating func strings(_ values: [String]) {
        array(values) { $0.string($1) }
    }

    private mutating func integer(_ value: Int) {
        bytes.append(contentsOf: String(value).utf8)
    }

    private mutating func boolean(_ value: Bool) {
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// Swift's shortest round-tripping form, without the ".0" of an integral value, as `JSONEncoder` writes it.
    private mutating func number(_ value: Double) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "a workflow number is not finite: \(value)"))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes.append(contentsOf: text.utf8)
    }

    /// A quoted string: `"`, `\` and `/` escaped with a backslash, control characters as `\b`, `\f`, `\n`, `\r`,
    /// `\t` or `\u00XX`; everything else, non-ASCII included, as its UTF-8 bytes.
    private mutating func string(_ value: String) {
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
