import Domain

/// The configure step failed: an input or the algorithm could not be fetched or verified. The `reason` is meant
/// for the job's owner (it is recorded as the job's failure reason) and holds no secrets.
public struct ProvisioningError: Error, CustomStringConvertible, Sendable, Hashable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case dataProvisioningFailed = "data_provisioning_failed"
            case algorithmProvisioningFailed = "algorithm_provisioning_failed"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// An input could not be fetched, was too large, failed its checksum or was outside the data directory.
        public static let dataProvisioningFailed = Code(.dataProvisioningFailed)
        /// The algorithm (or its custom data) could not be fetched, written or verified.
        public static let algorithmProvisioningFailed = Code(.algorithmProvisioningFailed)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var reason: String

    public init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }

    /// The terminal status to record: 31 or 32.
    public var status: JobStatus {
        code == .dataProvisioningFailed ? .dataProvisioningFailed : .algorithmProvisioningFailed
    }

    public var description: String { "\(code): \(reason)" }
}

/// The sandbox cannot be used on this machine (reported by `Sandbox.selfCheck()`), so the worker should refuse
/// to start rather than fail every job.
public struct SandboxError: Error, CustomStringConvertible, Sendable, Hashable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case toolMissing = "tool_missing"
            case unavailable
            case isolationUnavailable = "isolation_unavailable"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// `bwrap` or `prlimit` is not installed where the configuration says.
        public static let toolMissing = Code(.toolMissing)
        /// bubblewrap is installed but cannot build a sandbox (usually: user namespaces are disabled).
        public static let unavailable = Code(.unavailable)
        /// `C2D_SANDBOX_ISOLATION=strict`, and a hard limit (cgroup, output volume, network namespace) cannot be
        /// enforced on this host.
        public static let isolationUnavailable = Code(.isolationUnavailable)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// Publishing could not store everything: the outputs were over the job's disk limit (status 42), or the result
/// store failed (status 62).
public struct PublishError: Error, CustomStringConvertible, Sendable, Hashable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case diskQuotaExceeded = "disk_quota_exceeded"
            case resultsUploadFailed = "results_upload_failed"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Outputs and logs together are larger than the environment's `diskMiB` (or more files than allowed).
        public static let diskQuotaExceeded = Code(.diskQuotaExceeded)
        /// The result store refused or failed to store a file.
        public static let resultsUploadFailed = Code(.resultsUploadFailed)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var reason: String

    public init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }

    /// The terminal status to record: 42 or 62.
    public var status: JobStatus {
        code == .diskQuotaExceeded ? .diskQuotaExceeded : .resultsUploadFailed
    }

    public var description: String { "\(code): \(reason)" }
}
