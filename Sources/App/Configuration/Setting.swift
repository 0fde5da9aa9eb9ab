/// One environment variable c2d reads, declared once: its name, its default and what it means. README's configuration
/// table is printed from these declarations (`c2d settings`), and a test fails when the two disagree.
package struct Setting: Sendable, Hashable {
    /// How the default reads in the table, and whether the loader can parse it.
    package enum Default: Sendable, Hashable {
        /// A value in the variable's own syntax: what the loader parses when the variable is unset or empty, so the
        /// documented default and the one in effect cannot drift apart.
        case value(String)
        /// A default that depends on something else (the machine, another variable, libpq); the loader computes it.
        case described(String)

        /// A duration in seconds, written as the variable takes it (`5`, `0.5`).
        package static func seconds(_ duration: Duration) -> Default {
            .value(Setting.number(Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18))
        }
    }

    /// The environment variable.
    package var name: String
    /// The first column of README's table when it is not just the name (a row that stands for several variables).
    package var shownAs: String?
    package var `default`: Default
    /// The table's third column (Markdown).
    package var meaning: String

    package init(_ name: String, shownAs: String? = nil, default: Default, _ meaning: String) {
        self.name = name
        self.shownAs = shownAs
        self.default = `default`
        self.meaning = meaning
    }

    /// `5` rather than `5.0`, `0.5` as is.
    package static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// README's configuration table, in the order of ``all``.
    package static func markdownTable(_ settings: [Setting] = all) -> String {
        var lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
        for setting in settings {
            let defaultText: String
            switch setting.default {
            case .value(let value): defaultText = "`\(value)`"
            case .described(let text): defaultText = text
            }
            lines.append("| \(setting.shownAs ?? "`\(setting.name)`") | \(defaultText) | \(setting.meaning) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
