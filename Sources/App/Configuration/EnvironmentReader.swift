import Foundation

/// Reads declared settings from the environment, one parser per kind of value. An unset or empty variable reads as
/// its declared default when that is a value (``Setting/Default/value(_:)``), else as nil so the caller keeps the
/// default it computes. Every failure is a ``ConfigurationError`` naming the variable.
package struct EnvironmentReader: Sendable {
    package let variables: [String: String]

    package init(_ variables: [String: String] = ProcessInfo.processInfo.environment) {
        self.variables = variables
    }

    /// The variable's text if set and not empty.
    package func explicit(_ setting: Setting) -> String? {
        variables[setting.name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The variable's text, else its declared default value.
    package func text(_ setting: Setting) -> String? {
        if let text = explicit(setting) { return text }
        if case .value(let value) = setting.default { return value }
        return nil
    }

    package func integer(_ setting: Setting, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let text = text(setting) else { return nil }
        guard let number = Int(text) else {
            throw ConfigurationError(.notANumber, setting.name, "must be an integer in \(describe(range))")
        }
        guard range.contains(number) else {
            throw ConfigurationError(.outOfRange, setting.name, "must be an integer in \(describe(range))")
        }
        return number
    }

    package func number(_ setting: Setting, in range: ClosedRange<Double>) throws(ConfigurationError) -> Double? {
        guard let text = text(setting) else { return nil }
        let bounds = "\(Setting.number(range.lowerBound))...\(Setting.number(range.upperBound))"
        guard let number = Double(text), number.isFinite else {
            throw ConfigurationError(.notANumber, setting.name, "must be a number in \(bounds)")
        }
        guard range.contains(number) else {
            throw ConfigurationError(.outOfRange, setting.name, "must be a number in \(bounds)")
        }
        return number
    }

    /// Seconds, fractions allowed, to the millisecond.
    package func seconds(_ setting: Setting, in range: ClosedRange<Double>) throws(ConfigurationError) -> Duration? {
        guard let seconds = try number(setting, in: range) else { return nil }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// `1` or `true` turns it on, `0` or `false` (or nothing) leaves it off.
    package func flag(_ setting: Setting) throws(ConfigurationError) -> Bool {
        switch explicit(setting) {
        case nil, "0", "false": return false
        case "1", "true": return true
        default: throw ConfigurationError(.notAChoice, setting.name, "must be 1 (on) or 0 (off)")
        }
    }

    /// One of the type's raw values.
    package func choice<Choice: RawRepresentable & CaseIterable>(
        _ setting: Setting, as type: Choice.Type
    ) throws(ConfigurationError) -> Choice? where Choice.RawValue == String {
        guard let text = text(setting) else { return nil }
        guard let choice = Choice(rawValue: text) else {
            let choices = Choice.allCases.map { "'\($0.rawValue)'" }
            throw ConfigurationError(
                .notAChoice, setting.name,
                "must be \(choices.dropLast().joined(separator: ", ")) or \(choices.last ?? ""), not '\(text.prefix(32))'"
            )
        }
        return choice
    }

    /// A file or directory; relative paths are taken from the working directory.
    package func path(_ setting: Setting) -> URL? {
        text(setting).map { URL(fileURLWithPath: $0).standardizedFileURL }
    }

    /// Comma-separated entries, trimmed; empty entries are skipped.
    package func list(_ setting: Setting) -> [String] {
        (text(setting) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    /// Any other kind of value: `parse` returns nil or throws for a bad one, which is reported as `must be <what>`.
    package func value<Value>(
        _ setting: Setting, mustBe what: String, _ parse: (String) throws -> Value?
    ) throws(ConfigurationError) -> Value? {
        guard let text = text(setting) else { return nil }
        guard let value = try? parse(text) else {
            throw ConfigurationError(.invalidValue, setting.name, "must be \(what)")
        }
        return value
    }

    private func describe(_ range: ClosedRange<Int>) -> String {
        "\(range.lowerBound)...\(range.upperBound)"
    }
}
