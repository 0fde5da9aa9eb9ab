import Foundation

/// The fields of an object that selectors look at, kept next to the stored bytes so lists and watches do not parse.
struct SelectableFields: Sendable, Equatable {
    var name: String
    var namespace: String
    var labels: [String: String]
    /// Pods' `status.phase`.
    var phase: String?
}

/// A parsed `labelSelector` query parameter (equality- and set-based, as `k8s.io/apimachinery/pkg/labels`).
struct LabelSelector: Sendable {
    enum Operator: Sendable {
        case equals, notEquals, exists, doesNotExist, isIn, notIn
    }

    struct Requirement: Sendable {
        var key: String
        var op: Operator
        var values: Set<String>
    }

    var requirements: [Requirement] = []

    static let everything = LabelSelector()

    init() {}

    init(parsing text: String) throws {
        for part in Self.splitTopLevel(text) {
            let term = part.trimmingSpaces()
            if term.isEmpty { continue }
            requirements.append(try Self.requirement(term))
        }
    }

    func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { requirement in
            let value = labels[requirement.key]
            switch requirement.op {
            case .equals: return value != nil && requirement.values.contains(value!)
            case .notEquals: return value == nil || !requirement.values.contains(value!)
            case .exists: return value != nil
            case .doesNotExist: return value == nil
            case .isIn: return value != nil && requirement.values.contains(value!)
            case .notIn: return value == nil || !requirement.values.contains(value!)
            }
        }
    }

    /// Splits on commas outside parentheses: `a in (x,y),b` is two requirements.
    static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        for character in text {
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1 }
            if character == "," && depth == 0 {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    static func parseError(_ term: String, _ reason: String) -> APIStatus {
        APIStatus.badRequest("unable to parse requirement: \(reason)")
    }

    static func checkKey(_ key: String) throws {
        if let problem = Names.qualifiedNameError(key) {
            throw APIStatus.badRequest(
                "unable to parse requirement: values[0][\(key)]: Invalid value: \"\(key)\": \(problem)")
        }
    }

    static func checkValue(_ key: String, _ value: String) throws {
        if !Names.isLabelValue(value) || value.utf8.count > 63 {
            throw APIStatus.badRequest(
                "unable to parse requirement: values[0][\(key)]: Invalid value: \"\(value)\": \(Names.labelValueMessage)"
            )
        }
    }

    static func requirement(_ term: String) throws -> Requirement {
        if term.hasPrefix("!") {
            let key = String(term.dropFirst()).trimmingSpaces()
            try checkKey(key)
            return Requirement(key: key, op: .doesNotExist, values: [])
        }
        for (token, op) in [("!=", Operator.notEquals), ("==", .equals), ("=", .equals)] {
            if let range = term.range(of: token) {
                let key = String(term[..<range.lowerBound]).trimmingSpaces()
                let value = String(term[range.upperBound...]).trimmingSpaces()
                try checkKey(key)
                try checkValue(key, value)
                return Requirement(key: key, op: op, values: [value])
            }
        }
        let words = term.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true).map(String.init)
        if words.count == 1 {
            try checkKey(words[0])
            return Requirement(key: words[0], op: .exists, values: [])
        }
        // `key in (a,b)` and `key notin (a,b)`; the parenthesis may follow the operator without a space.
        guard let operatorEnd = term.firstIndex(of: "(") else {
            throw parseError(term, "found '\(words.last ?? "")', expected: in, notin, =, ==, !=, gt, lt")
        }
        let head = term[..<operatorEnd].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard head.count == 2, head[1] == "in" || head[1] == "notin", term.hasSuffix(")") else {
            throw parseError(term, "found '\(term)', expected: in, notin, =, ==, !=, gt, lt")
        }
        try checkKey(head[0])
        let inner = term[term.index(after: operatorEnd)..<term.index(before: term.endIndex)]
        var values: Set<String> = []
        for value in inner.split(separator: ",", omittingEmptySubsequences: false) {
            let text = String(value).trimmingSpaces()
            try checkValue(head[0], text)
            values.insert(text)
        }
        return Requirement(key: head[0], op: head[1] == "in" ? .isIn : .notIn, values: values)
    }
}

/// A parsed `fieldSelector`: `metadata.name`, `metadata.namespace`, and `status.phase` for pods.
struct FieldSelector: Sendable {
    struct Requirement: Sendable {
        var field: String
        var value: String
        var equal: Bool
    }

    var requirements: [Requirement] = []

    static let everything = FieldSelector()

    init() {}

    init(parsing text: String, resource: ResourceType) throws {
        var allowed = ["metadata.name", "metadata.namespace"]
        if resource == .pods { allowed.append("status.phase") }
        for part in text.split(separator: ",") {
            let term = String(part).trimmingSpaces()
            if term.isEmpty { continue }
            var matched: Requirement?
            for (token, equal) in [("!=", false), ("==", true), ("=", true)] {
                if let range = term.range(of: token) {
                    matched = Requirement(
                        field: String(term[..<range.lowerBound]).trimmingSpaces(),
                        value: String(term[range.upperBound...]).trimmingSpaces(), equal: equal)
                    break
                }
            }
            guard let requirement = matched else {
                throw APIStatus.badRequest("invalid selector: '\(text)'; can't understand '\(term)'")
            }
            guard allowed.contains(requirement.field) else {
                throw APIStatus.badRequest("field label not supported: \(requirement.field)")
            }
            requirements.append(requirement)
        }
    }

    func matches(_ fields: SelectableFields) -> Bool {
        requirements.allSatisfy { requirement in
            let actual: String?
            switch requirement.field {
            case "metadata.name": actual = fields.name
            case "metadata.namespace": actual = fields.namespace
            case "status.phase": actual = fields.phase ?? ""
            default: actual = nil
            }
            // spec.* fields are accepted but not indexed; they match everything, like an unset field would not.
            guard let actual else { return true }
            return (actual == requirement.value) == requirement.equal
        }
    }
}

struct Selection: Sendable {
    var namespace: String?
    var labels: LabelSelector = .everything
    var fields: FieldSelector = .everything

    func matches(_ fields: SelectableFields) -> Bool {
        if let namespace, namespace != fields.namespace { return false }
        return labels.matches(fields.labels) && self.fields.matches(fields)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var scalars = Substring(String(self))
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
