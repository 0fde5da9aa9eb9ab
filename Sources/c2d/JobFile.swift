import Foundation
import Yams

/// Reading the files `c2d job submit` and `c2d batch submit` take: JSON or YAML (by extension, or by content when
/// it does not start like JSON), turned into the JSON the API wants. Errors name the file and line.
enum JobFile {
    /// The bytes of `path`, or of standard input for "-".
    static func read(_ path: String) throws -> Data {
        if path == "-" { return FileHandle.standardInput.readDataToEndOfFile() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClientFailure(.invalid, "cannot read \(path); check the path (-f)")
        }
        return data
    }

    static func isYAML(_ path: String, _ data: Data) -> Bool {
        let lowered = path.lowercased()
        if lowered.hasSuffix(".yaml") || lowered.hasSuffix(".yml") { return true }
        if lowered.hasSuffix(".json") || lowered.hasSuffix(".jsonl") || lowered.hasSuffix(".ndjson") { return false }
        let first = data.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        return first != UInt8(ascii: "{") && first != UInt8(ascii: "[")
    }

    /// One JSON or YAML document as JSON values (dictionaries, arrays, strings, numbers, booleans, NSNull).
    static func document(_ data: Data, path: String) throws -> Any {
        if isYAML(path, data) {
            do {
                return try jsonCompatible(
                    Yams.load(yaml: String(decoding: data, as: UTF8.self)) ?? NSNull(), path: path)
            } catch let failure as ClientFailure {
                throw failure
            } catch {
                throw ClientFailure(.invalid, "\(path) is not valid YAML: \(error)")
            }
        }
        do {
            return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw ClientFailure(.invalid, "\(path) is not valid JSON: \(describe(error))")
        }
    }

    /// Every YAML document of a multi-document stream (`---` separated).
    static func yamlDocuments(_ data: Data, path: String) throws -> [Any] {
        do {
            return try Yams.load_all(yaml: String(decoding: data, as: UTF8.self)).map {
                try jsonCompatible($0, path: path)
            }
        } catch let failure as ClientFailure {
            throw failure
        } catch {
            throw ClientFailure(.invalid, "\(path) is not valid YAML: \(error)")
        }
    }

    /// YAML's values as JSON's: keys as strings, timestamps as ISO 8601 text.
    static func jsonCompatible(_ value: Any, path: String) throws -> Any {
        switch value {
        case let dictionary as [String: Any]:
            return try dictionary.mapValues { try jsonCompatible($0, path: path) }
        case let dictionary as [AnyHashable: Any]:
            var result: [String: Any] = [:]
            for (key, item) in dictionary { result["\(key)"] = try jsonCompatible(item, path: path) }
            return result
        case let array as [Any]:
            return try array.map { try jsonCompatible($0, path: path) }
        case let date as Date:
            return ISO8601DateFormatter().string(from: date)
        case is String, is Bool, is Int, is Double, is NSNull:
            return value
        case let data as Data:
            return data.base64EncodedString()
        default:
            throw ClientFailure(.invalid, "\(path) holds a value JSON cannot carry: \(value)")
        }
    }

    /// The body of `POST /v1/jobs` from a request file or a bare workflow file; `environment` overrides the file's.
    static func request(path: String, environment: String?) throws -> Data {
        let data = try read(path)
        guard var object = try document(data, path: path) as? [String: Any] else {
            throw ClientFailure(.invalid, "\(path) must hold one object: a workflow {\"stages\": …} or a request")
        }
        if object["workflow"] == nil {
            guard object["stages"] != nil else {
                throw ClientFailure(
                    .invalid,
                    "\(path) is neither a request (with \"workflow\") nor a workflow (with \"stages\")")
            }
            object = ["workflow": object]
        }
        if let environment { object["environment"] = environment }
        guard object["environment"] is String else {
            throw ClientFailure(
                .invalid, "no environment: pass --environment or put \"environment\" in \(path)")
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    /// JSONSerialization's messages carry a byte offset; this keeps them short.
    static func describe(_ error: any Error) -> String {
        let text = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
        return String(text.prefix(200))
    }
}

/// The jobs of a `c2d batch submit` file, each as its workflow's JSON and where it came from.
struct BatchFile {
    struct Item {
        /// The workflow, as canonical JSON (sorted keys): the same file always gives the same bytes.
        var workflow: Data
        /// `file:line` (JSON lines) or `file: job n` (YAML, JSON), for error messages.
        var source: String
    }

    var environment: String?
    var items: [Item]

    /// Reads JSON lines (`.jsonl`, `.ndjson`: one job per line, blank and `#` lines skipped), a YAML stream of jobs
    /// (one per document), or one JSON or YAML document that is a list of jobs or `{"environment"?, "jobs": […]}`.
    /// A job is `{"workflow": …}` or a bare workflow `{"stages": …}`.
    static func load(path: String) throws -> BatchFile {
        let data = try JobFile.read(path)
        let lowered = path.lowercased()
        if lowered.hasSuffix(".jsonl") || lowered.hasSuffix(".ndjson") || looksLikeJSONLines(data) {
            var items: [Item] = []
            var number = 0
            for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                number += 1
                let text = line.drop { [0x20, 0x09, 0x0D].contains($0) }
                if text.isEmpty || text.first == UInt8(ascii: "#") { continue }
                let source = "\(path):\(number)"
                let value: Any
                do {
                    value = try JSONSerialization.jsonObject(with: Data(text))
                } catch {
                    throw ClientFailure(.invalid, "\(source): not a JSON object: \(JobFile.describe(error))")
                }
                items.append(try item(value, source: source))
            }
            return BatchFile(environment: nil, items: items)
        }
        var documents = [try JobFile.document(data, path: path)]
        if JobFile.isYAML(path, data) {
            documents = try JobFile.yamlDocuments(data, path: path)
        }
        if documents.count == 1, let object = documents[0] as? [String: Any], let jobs = object["jobs"] as? [Any] {
            return BatchFile(
                environment: object["environment"] as? String,
                items: try jobs.enumerated().map { try item($0.element, source: "\(path): job \($0.offset + 1)") })
        }
        if documents.count == 1, let list = documents[0] as? [Any] {
            return BatchFile(
                environment: nil,
                items: try list.enumerated().map { try item($0.element, source: "\(path): job \($0.offset + 1)") })
        }
        return BatchFile(
            environment: nil,
            items: try documents.enumerated().map { try item($0.element, source: "\(path): job \($0.offset + 1)") })
    }

    /// More than one line that starts like a JSON object.
    static func looksLikeJSONLines(_ data: Data) -> Bool {
        let lines = data.split(separator: UInt8(ascii: "\n")).prefix(3).map { $0.drop { [0x20, 0x09].contains($0) } }
        return lines.count > 1 && lines.allSatisfy { $0.first == UInt8(ascii: "{") }
    }

    static func item(_ value: Any, source: String) throws -> Item {
        guard let object = value as? [String: Any] else {
            throw ClientFailure(.invalid, "\(source): a job must be an object ({\"workflow\": …} or {\"stages\": …})")
        }
        let workflow: Any
        if let inner = object["workflow"] {
            workflow = inner
        } else if object["stages"] != nil {
            workflow = object
        } else {
            throw ClientFailure(.invalid, "\(source): neither {\"workflow\": …} nor a workflow with \"stages\"")
        }
        return Item(
            workflow: try JSONSerialization.data(withJSONObject: workflow, options: [.sortedKeys]), source: source)
    }
}
