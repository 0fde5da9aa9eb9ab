/// A workflow written as compact JSON by hand: the same text `JSONEncoder` writes with `.sortedKeys` (keys in
/// order, `/` escaped, integral doubles without ".0").
///
/// Every submit encodes its workflow once (the size check needs the bytes, and the store writes them), and the
/// encoder's generic `Codable` path was the largest single cost of an insert in the client: 16% of the client's CPU
/// in `c2d bench db`'s single inserts. For the bench's workflow of 1,138 bytes it took 13 µs, and this takes 2 µs
/// (docs/operations.md, "Where a submit's time goes").
package struct WorkflowJSON: Sendable {
    /// UTF-8 JSON text.
    package let bytes: [UInt8]
    /// Whether some string held a NUL character (written `\u0000`), which Postgres's jsonb cannot store.
    package let containsNUL: Bool

    /// Encodes `workflow`; throws `EncodingError.invalidValue`, as `JSONEncoder` does, for a number that is not
    /// finite, which JSON cannot write.
    package init(_ workflow: Workflow) throws {
        var json = JSONText(capacity: 1_024)
        try json.write(workflow)
        bytes = json.bytes
        containsNUL = json.containsNUL
    }

    package var text: String { String(decoding: bytes, as: UTF8.self) }
}

extension JSONText {
    // MARK: The workflow's types, keys in sorted order; absent optionals and (for inputs) empty lists omitted,
    // as their `Codable` conformances do

    fileprivate mutating func write(_ workflow: Workflow) throws {
        var object = ObjectState()
        key("stages", &object)
        try array(workflow.stages) { try $0.write($1) }
        end(object)
    }

    fileprivate mutating func write(_ stage: Workflow.Stage) throws {
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

    fileprivate mutating func write(_ input: Workflow.Input) throws {
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

    fileprivate mutating func write(_ algorithm: Workflow.Algorithm) throws {
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

    fileprivate mutating func write(_ compute: Workflow.Compute) throws {
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

    fileprivate mutating func write(_ value: JSONValue) throws {
        switch value {
        case .null: raw("null")
        case .bool(let value): boolean(value)
        case .number(let value): try number(value)
        case .string(let value): string(value)
        case .array(let values): try array(values) { try $0.write($1) }
        case .object(let members):
            var object = ObjectState()
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                startMember(&object)
                string(name)
                colon()
                try write(member)
            }
            end(object)
        }
    }
}
