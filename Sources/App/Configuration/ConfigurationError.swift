/// A setting c2d cannot use. The process stops at start with this one line, which names the variable and what is
/// wrong with it; secrets are never echoed.
package struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    package enum Code: String, Sendable {
        /// Not a number where one is needed.
        case notANumber
        /// A number outside the allowed range.
        case outOfRange
        /// Not one of the accepted words.
        case notAChoice
        /// Malformed: an address, a network, a key, a file's content.
        case invalidValue
        /// A file it names cannot be read.
        case unreadable
        /// Contradicts another setting.
        case conflicting
        /// Required by another setting and missing.
        case missing
    }

    package var code: Code
    /// The environment variable at fault.
    package var variable: String
    /// What is wrong, as the rest of a sentence that begins with the variable's name (`must be an integer in 1...10`,
    /// `: cannot read …`, `=s3 needs …`).
    package var problem: String

    package init(_ code: Code, _ variable: String, _ problem: String) {
        self.code = code
        self.variable = variable
        self.problem = problem
    }

    package var description: String {
        problem.hasPrefix(":") || problem.hasPrefix("=") ? variable + problem : "\(variable) \(problem)"
    }
}
