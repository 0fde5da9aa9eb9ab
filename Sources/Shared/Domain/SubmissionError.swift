/// A request c2d refuses, with a machine-readable code and a message for people. The gateway maps these
/// to 4xx responses `{"code", "message"}`.
package struct SubmissionError: Error, Sendable, Hashable, CustomStringConvertible {
    package var code: String
    package var message: String
    /// Suggested HTTP status.
    package var httpStatus: Int

    package init(code: String, message: String, httpStatus: Int = 400) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
    }

    package var description: String { "\(code): \(message)" }
}

/// Limits on what one request may carry. Every limit is configuration (README.md, "Configuration").
package struct SubmissionLimits: Sendable, Hashable {
    /// Largest request body, in bytes. Default 1 MiB.
    package var maxBodyBytes: Int
    /// Most inputs one workflow may name. Default 64.
    package var maxInputs: Int
    /// Most files one input may name. Default 64.
    package var maxFilesPerInput: Int
    /// Longest string field (ids, URLs, entrypoint), in bytes. Default 4096.
    package var maxFieldBytes: Int
    /// Largest raw algorithm, in bytes. Default 512 KiB.
    package var maxRawCodeBytes: Int
    /// Largest workflow, as JSON, in bytes. Default 768 KiB (room for the largest raw algorithm).
    package var maxWorkflowBytes: Int = 768 << 10

    package init(
        maxBodyBytes: Int = 1 << 20, maxInputs: Int = 64, maxFilesPerInput: Int = 64, maxFieldBytes: Int = 4096,
        maxRawCodeBytes: Int = 512 << 10
    ) {
        self.maxBodyBytes = maxBodyBytes
        self.maxInputs = maxInputs
        self.maxFilesPerInput = maxFilesPerInput
        self.maxFieldBytes = maxFieldBytes
        self.maxRawCodeBytes = maxRawCodeBytes
    }
}
