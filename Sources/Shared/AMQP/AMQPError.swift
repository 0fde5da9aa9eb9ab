/// A failure of the AMQP client: what kind (``code``), a message for humans, and the broker's reply code when the
/// broker closed the channel or connection.
package struct AMQPError: Error, CustomStringConvertible, Sendable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidURL, connectionFailed, authenticationFailed, notConnected, connectionClosed, channelClosed
            case timeout, nacked, unroutable, declarationConflict, protocolError
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The configured URL cannot be used.
        package static let invalidURL = Code(.invalidURL)
        /// The broker could not be reached (refused, unreachable, connect timeout, handshake failure).
        package static let connectionFailed = Code(.connectionFailed)
        /// The broker rejected the credentials or the vhost (403 ACCESS_REFUSED during login).
        package static let authenticationFailed = Code(.authenticationFailed)
        /// There is no open connection right now; the client is (re)connecting or shut down. Nothing was sent.
        package static let notConnected = Code(.notConnected)
        /// The connection was lost or closed while the operation was in flight; its outcome is unknown.
        package static let connectionClosed = Code(.connectionClosed)
        /// The broker closed the channel the operation used (``AMQPError/replyCode`` says why, e.g. 404).
        package static let channelClosed = Code(.channelClosed)
        /// A synchronous method or a publisher confirm did not complete within the configured time.
        package static let timeout = Code(.timeout)
        /// The broker answered a publish with basic.nack: it did not take responsibility for the message.
        package static let nacked = Code(.nacked)
        /// A mandatory publish matched no queue (basic.return).
        package static let unroutable = Code(.unroutable)
        /// A queue or exchange exists with different properties or arguments (406 PRECONDITION_FAILED on declare).
        package static let declarationConflict = Code(.declarationConflict)
        /// The broker or the library reported something the client did not expect.
        package static let protocolError = Code(.protocolError)

        package var description: String { base.rawValue }
    }

    package var code: Code
    /// Says what failed, naming the queue, exchange or argument where relevant, and quoting the broker's reply text.
    package var message: String
    /// The AMQP reply code when the broker closed the channel or connection (e.g. 406, 404, 320 CONNECTION_FORCED).
    package var replyCode: Int?

    package init(code: Code, message: String, replyCode: Int? = nil) {
        self.code = code
        self.message = message
        self.replyCode = replyCode
    }

    package var description: String {
        if let replyCode { return "AMQPError.\(code) (\(replyCode)): \(message)" }
        return "AMQPError.\(code): \(message)"
    }

    /// True for failures that a later attempt on a new connection may not repeat (lost connection, timeouts, closed
    /// channels); false for configuration and routing errors.
    package var isTransient: Bool {
        switch code {
        case .connectionFailed, .notConnected, .connectionClosed, .channelClosed, .timeout, .nacked: true
        default: false
        }
    }

    /// Same error, with what was being done put in front of the message.
    func prefixed(_ context: String) -> AMQPError {
        AMQPError(code: code, message: "\(context): \(message)", replyCode: replyCode)
    }
}
