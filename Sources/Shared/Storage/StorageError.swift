/// A failure of a storage operation: a stable machine-readable `code` and a human `message`.
/// Messages name paths relative to the store, never credentials.
public struct StorageError: Error, CustomStringConvertible, Sendable, Hashable {
    /// What went wrong, as a stable value to branch on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
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
        public static let invalidName = Code(.invalidName)
        /// A location that resolves (symbolic links included) outside the store's root.
        public static let outsideRoot = Code(.outsideRoot)
        /// Nothing is stored at the location.
        public static let notFound = Code(.notFound)
        /// The source or the stored object is a directory, link, device or pipe.
        public static let notARegularFile = Code(.notARegularFile)
        /// More bytes than the caller's limit.
        public static let sizeLimitExceeded = Code(.sizeLimitExceeded)
        /// An operating-system call failed.
        public static let io = Code(.io)
        /// A remote store (S3) could not be reached, timed out or kept answering 5xx or 503 SlowDown.
        public static let unavailable = Code(.unavailable)
        /// A remote store refused the request (4xx: credentials, bucket, permissions, a checksum mismatch).
        public static let rejected = Code(.rejected)
        /// The store cannot do this (a filesystem store has no presigned URLs).
        public static let unsupported = Code(.unsupported)
        /// The store's settings are unusable (a missing bucket name or credentials, a bad endpoint).
        public static let invalidConfiguration = Code(.invalidConfiguration)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The `errno` of the failed system call, when there is one.
    public var errno: Int32?
    /// The HTTP status a remote store answered, when it answered.
    public var httpStatus: Int?

    public init(code: Code, message: String, errno: Int32? = nil, httpStatus: Int? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
        self.httpStatus = httpStatus
    }

    /// Worth another try: the remote store was unavailable.
    public var isTransient: Bool { code == .unavailable }

    public var description: String { "\(code): \(message)" }
}
