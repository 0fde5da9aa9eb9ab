/// A scheduler write refused because this process is not (or no longer) the leader it believes it is.
///
/// Raised by ``SchedulerLeadership/withFencedTransaction(epoch:_:)`` before the caller's writes can commit, so a
/// deposed leader's work rolls back instead of landing next to the new leader's.
package struct LeadershipError: Error, CustomStringConvertible, Sendable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case fenced, notLeader
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The lease row no longer names this holder and epoch, or the lease has expired: another scheduler may lead.
        package static let fenced = Code(.fenced)
        /// The operation needs leadership and this process is a standby.
        package static let notLeader = Code(.notLeader)

        package var description: String { base.rawValue }
    }

    package var code: Code
    /// The lease the check was about.
    package var leaseName: String
    /// The epoch the caller believed it held; nil when it held none.
    package var epoch: Int64?
    package var message: String

    package init(code: Code, leaseName: String, epoch: Int64?, message: String) {
        self.code = code
        self.leaseName = leaseName
        self.epoch = epoch
        self.message = message
    }

    package static func fenced(leaseName: String, epoch: Int64) -> LeadershipError {
        LeadershipError(
            code: .fenced, leaseName: leaseName, epoch: epoch,
            message: "lease \(leaseName) is no longer held at epoch \(epoch); write refused")
    }

    package var description: String { "LeadershipError.\(code): \(message)" }
}
