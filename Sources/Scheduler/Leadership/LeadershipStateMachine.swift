/// The leader's view of its own lease, as a value: which role to announce after each database answer, and until when
/// the lease is certainly still ours by the local monotonic clock.
///
/// The database clock decides who may take the lease; locally we only need a safe lower bound of its end. A lease
/// acquired or renewed by a statement sent at `t` ends no earlier than `t + leaseDuration` (the server's `now()` is
/// taken after `t`), so the leader steps down at `t + leaseDuration - safetyMargin` unless a later renewal succeeded.
/// The margin absorbs clock-rate drift between the hosts. Stepping down early is always safe; late never is.
package struct LeadershipStateMachine: Sendable {
    package enum Role: Sendable, Hashable, CustomStringConvertible {
        case standby
        /// Leading with this fencing epoch; every write must be fenced by it.
        case leader(epoch: Int64)

        package var epoch: Int64? {
            if case .leader(let epoch) = self { return epoch }
            return nil
        }

        package var description: String {
            switch self {
            case .standby: "standby"
            case .leader(let epoch): "leader(epoch \(epoch))"
            }
        }
    }

    /// What the owner must do after an event: nothing, or announce a new role to the services that depend on it.
    package enum Action: Sendable, Hashable {
        case none
        case announce(Role, reason: String)
    }

    /// What the owner should do next, and when.
    package enum Step: Sendable, Hashable {
        /// Try to take the lease (standby).
        case acquire
        /// Renew, and give up waiting for the answer after `budget` (the lease's remaining safe time).
        case renew(epoch: Int64, budget: Duration)
    }

    package let leaseDuration: Duration
    package let safetyMargin: Duration
    package private(set) var role: Role = .standby
    /// Until this local instant the lease is ours; meaningful only while leading.
    package private(set) var validUntil: ContinuousClock.Instant?

    package init(leaseDuration: Duration, safetyMargin: Duration) {
        self.leaseDuration = leaseDuration
        self.safetyMargin = safetyMargin
    }

    /// The next database call, or a step-down when the lease may already have run out.
    package mutating func nextStep(now: ContinuousClock.Instant) -> (Step, Action) {
        let action = expire(now: now)
        guard case .leader(let epoch) = role, let validUntil else { return (.acquire, action) }
        return (.renew(epoch: epoch, budget: validUntil - now), action)
    }

    /// The acquire statement sent at `sentAt` returned `epoch` (nil: someone else holds a live lease).
    package mutating func acquired(epoch: Int64?, sentAt: ContinuousClock.Instant) -> Action {
        guard let epoch else { return .none }
        role = .leader(epoch: epoch)
        validUntil = sentAt + leaseDuration - safetyMargin
        return .announce(role, reason: "lease acquired")
    }

    /// The renewal sent at `sentAt` succeeded.
    package mutating func renewed(sentAt: ContinuousClock.Instant) -> Action {
        guard case .leader = role else { return .none }
        validUntil = sentAt + leaseDuration - safetyMargin
        return .none
    }

    /// The renewal found the row no longer ours (taken over, or released by an operator).
    package mutating func lost() -> Action {
        stepDown(reason: "lease lost")
    }

    /// A renewal failed (error or timeout): keep leading only while the last good renewal still covers us.
    package mutating func renewalFailed(now: ContinuousClock.Instant) -> Action {
        expire(now: now)
    }

    /// Graceful shutdown: the lease is about to be released.
    package mutating func resign() -> Action {
        stepDown(reason: "resigned")
    }

    private mutating func expire(now: ContinuousClock.Instant) -> Action {
        guard case .leader = role, let validUntil, now >= validUntil else { return .none }
        return stepDown(reason: "lease could not be renewed before it expired")
    }

    private mutating func stepDown(reason: String) -> Action {
        guard case .leader = role else { return .none }
        role = .standby
        validUntil = nil
        return .announce(.standby, reason: reason)
    }
}
