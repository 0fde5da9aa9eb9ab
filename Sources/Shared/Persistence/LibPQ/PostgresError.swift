import Foundation

/// An error from the Postgres client: what kind of failure (``code``), and for server errors the SQLSTATE and the
/// server's primary message.
///
/// Messages never contain bound parameter values: the server's DETAIL field (which echoes row values, e.g.
/// "Key (email)=(…) already exists") is left out for data and integrity errors, and for data errors (class 22) the
/// quoted input the server echoes is cut off. The SQL text is not included either.
package struct PostgresError: Error, CustomStringConvertible, Sendable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case connectionFailed, connectionLost, server, timeout, acquireTimeout, poolClosed, decoding
            case invalidConfiguration, invalidArgument
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Could not open a connection (server down, refused, authentication failed, connect timeout).
        package static let connectionFailed = Code(.connectionFailed)
        /// The connection broke while in use (server restart, network failure, backend terminated).
        /// The statement may or may not have been applied.
        package static let connectionLost = Code(.connectionLost)
        /// The server rejected the statement; see ``PostgresError/sqlState``.
        package static let server = Code(.server)
        /// The server cancelled the statement because of `statement_timeout` or `lock_timeout`.
        package static let timeout = Code(.timeout)
        /// No connection became free within ``PostgresConfiguration/acquireTimeout``.
        package static let acquireTimeout = Code(.acquireTimeout)
        /// The client was shut down.
        package static let poolClosed = Code(.poolClosed)
        /// A column was missing, NULL where a value was required, or not in the expected format.
        package static let decoding = Code(.decoding)
        /// The configuration is unusable.
        package static let invalidConfiguration = Code(.invalidConfiguration)
        /// The caller passed something unusable (e.g. a COPY row with the wrong number of values); nothing was sent.
        package static let invalidArgument = Code(.invalidArgument)

        package var description: String { base.rawValue }
    }

    package var code: Code
    /// The five-character SQLSTATE (`PG_DIAG_SQLSTATE`), e.g. "23505"; nil when the error did not come from
    /// the server.
    package var sqlState: String?
    /// The primary message (plus detail where it carries no data); never includes parameter values.
    package var message: String
    /// The violated constraint (`PG_DIAG_CONSTRAINT_NAME`), for integrity errors.
    package var constraint: String?

    package init(code: Code, sqlState: String? = nil, message: String, constraint: String? = nil) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.constraint = constraint
    }

    /// 23505 unique_violation.
    package var isUniqueViolation: Bool { sqlState == "23505" }

    /// The server refused the statement for the data it carried (SQLSTATE class 22, data exception, or 23,
    /// integrity constraint violation), so nothing of it was written.
    var rejectsData: Bool {
        guard code == .server, let sqlState else { return false }
        return sqlState.hasPrefix("22") || sqlState.hasPrefix("23")
    }

    /// 40001 serialization_failure or 40P01 deadlock_detected: the transaction can be retried as a whole.
    package var isSerializationFailure: Bool { sqlState == "40001" || sqlState == "40P01" }

    /// Whether running the same work again (on another connection, after a backoff) may succeed: the connection
    /// failed or was lost, the pool had no connection free in time, the server is shutting down or starting
    /// (57P01…57P03, class 08), or a serialization failure or deadlock aborted the transaction. Note that after
    /// ``Code/connectionLost`` a write may already be committed, so only idempotent work should be retried blindly.
    /// The same name as `AMQPError`, `KubernetesError` and `StorageError` use.
    package var isTransient: Bool {
        if code == .connectionLost || code == .connectionFailed || code == .acquireTimeout { return true }
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(sqlState) || isSerializationFailure
    }

    package var description: String {
        var text = "PostgresError(\(code)"
        if let sqlState { text += ", \(sqlState)" }
        text += "): \(message)"
        if let constraint { text += " (constraint \(constraint))" }
        return text
    }
}

extension PostgresError {
    static func decoding(_ message: String) -> PostgresError {
        PostgresError(code: .decoding, message: message)
    }

    static let poolClosed = PostgresError(code: .poolClosed, message: "the Postgres client is shut down")

    /// Two calls at once on one connection (concurrent statements in one `withSession`), which libpq cannot run; the
    /// later one is refused before anything is sent.
    static let overlappingCalls = PostgresError(
        code: .invalidArgument, message: "another statement is still running on this connection; run them in turn")

    /// Builds the error for a server-reported failure from its fields, leaving out data the server echoes.
    /// `connectionBroken` says whether libpq reports the connection as bad afterwards.
    static func fromServer(
        sqlState: String?,
        primary: String?,
        detail: String?,
        constraint: String?,
        connectionBroken: Bool
    ) -> PostgresError {
        var message = primary.map { $0.trimmingTrailingNewlines() } ?? "unknown error"
        let errorClass = sqlState.map { String($0.prefix(2)) }
        if errorClass == "22", let cut = message.range(of: ": \"") {
            // e.g. `invalid input syntax for type uuid: "…"`: keep the kind, drop the echoed value.
            message = String(message[..<cut.lowerBound])
        }
        if let detail, !detail.isEmpty, errorClass != "22", errorClass != "23" {
            message += " — " + detail.trimmingTrailingNewlines()
        }
        let code: Code
        if connectionBroken {
            code = .connectionLost
        } else if sqlState == "57014", message.contains("statement timeout") {
            code = .timeout
        } else if sqlState == "55P03", message.contains("lock timeout") {
            code = .timeout
        } else {
            code = .server
        }
        return PostgresError(code: code, sqlState: sqlState, message: message, constraint: constraint)
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var text = Substring(self)
        while let last = text.last, last.isNewline || last == " " { text = text.dropLast() }
        return String(text)
    }
}
