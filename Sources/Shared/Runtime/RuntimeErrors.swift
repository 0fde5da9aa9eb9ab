import Domain

/// The configure step failed: an input or the algorithm could not be fetched or verified. The `reason` is meant
/// for the job's owner (it is recorded as the job's failure reason) and holds no secrets.
package struct ProvisioningError: Error, CustomStringConvertible, Sendable, Hashable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case dataProvisioningFailed = "data_provisioning_failed"
            case algorithmProvisioningFailed = "algorithm_provisioning_failed"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// An input could not be fetched, was too large, failed its checksum or was outside the data directory.
        package static let dataProvisioningFailed = Code(.dataProvisioningFailed)
        /// The algorithm (or its custom data) could not be fetched, written or verified.
        package static let algorithmProvisioningFailed = Code(.algorithmProvisioningFailed)

        package var description: String { base.rawValue }
    }

    package var code: Code
    package var reason: String

    package init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }

    /// The terminal status to record: 31 or 32.
    package var status: JobStatus {
        code == .dataProvisioningFailed ? .dataProvisioningFailed : .algorithmProvisioningFailed
    }

    package var description: String { "\(code): \(reason)" }
}

/// The sandbox cannot be used on this machine (reported by `Sandbox.selfCheck()`), so the worker should refuse
/// to start rather than fail every job.
package struct SandboxError: Error, CustomStringConvertible, Sendable, Hashable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
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
        package static let toolMissing = Code(.toolMissing)
        /// bubblewrap is installed but cannot build a sandbox (usually: user namespaces are disabled).
        package static let unavailable = Code(.unavailable)
        /// `C2D_SANDBOX_ISOLATION=strict`, and a hard limit (cgroup, output volume, network namespace) cannot be
        /// enforced on this host.
        package static let isolationUnavailable = Code(.isolationUnavailable)

        package var description: String { base.rawValue }
    }

    package var code: Code
    package var message: String

    package init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { "\(code): \(message)" }
}

/// Publishing could not store everything: the outputs were over the job's disk limit (status 42), or the result
/// store failed (status 62).
package struct PublishError: Error, CustomStringConvertible, Sendable, Hashable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case diskQuotaExceeded = "disk_quota_exceeded"
            case resultsUploadFailed = "results_upload_failed"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Outputs and logs together are larger than the environment's `diskMiB` (or more files than allowed).
        package static let diskQuotaExceeded = Code(.diskQuotaExceeded)
        /// The result store refused or failed to store a file.
        package static let resultsUploadFailed = Code(.resultsUploadFailed)

        package var description: String { base.rawValue }
    }

    package var code: Code
    package var reason: String

    package init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }

    /// The terminal status to record: 42 or 62.
    package var status: JobStatus {
        code == .diskQuotaExceeded ? .diskQuotaExceeded : .resultsUploadFailed
    }

    package var description: String { "\(code): \(reason)" }
}
