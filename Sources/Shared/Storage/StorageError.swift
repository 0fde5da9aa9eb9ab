/// A failure of a storage operation: a stable machine-readable `code` and a human `message`.
/// Messages name paths relative to the store, never credentials.
package struct StorageError: Error, CustomStringConvertible, Sendable, Hashable {
    /// What went wrong, as a stable value to branch on.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case invalidName = "invalid_name"
            case outsideRoot = "outside_root"
            case notFound = "not_found"
            case notARegularFile = "not_a_regular_file"
            case sizeLimitExceeded = "size_limit_exceeded"
            case io
            case unavailable
            case rejected
            case unsupported
            case invalidConfiguration = "invalid_configuration"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// A result name that is empty, absolute, or climbs out with `..`.
        package static let invalidName = Code(.invalidName)
        /// A location that resolves (symbolic links included) outside the store's root.
        package static let outsideRoot = Code(.outsideRoot)
        /// Nothing is stored at the location.
        package static let notFound = Code(.notFound)
        /// The source or the stored object is a directory, link, device or pipe.
        package static let notARegularFile = Code(.notARegularFile)
        /// More bytes than the caller's limit.
        package static let sizeLimitExceeded = Code(.sizeLimitExceeded)
        /// An operating-system call failed.
        package static let io = Code(.io)
        /// A remote store (S3) could not be reached, timed out or kept answering 5xx or 503 SlowDown.
        package static let unavailable = Code(.unavailable)
        /// A remote store refused the request (4xx: credentials, bucket, permissions, a checksum mismatch).
        package static let rejected = Code(.rejected)
        /// The store cannot do this (a filesystem store has no presigned URLs).
        package static let unsupported = Code(.unsupported)
        /// The store's settings are unusable (a missing bucket name or credentials, a bad endpoint).
        package static let invalidConfiguration = Code(.invalidConfiguration)

        package var description: String { base.rawValue }
    }

    package var code: Code
    package var message: String
    /// The `errno` of the failed system call, when there is one.
    package var errno: Int32?
    /// The HTTP status a remote store answered, when it answered.
    package var httpStatus: Int?

    package init(code: Code, message: String, errno: Int32? = nil, httpStatus: Int? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
        self.httpStatus = httpStatus
    }

    /// Worth another try: the remote store was unavailable.
    package var isTransient: Bool { code == .unavailable }

    package var description: String { "\(code): \(message)" }
}
