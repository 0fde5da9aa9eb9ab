import Domain
import Foundation
import Logging
import Persistence

/// Renews the leases of every job a worker holds in one statement every third of the lease (at most every 5 s, so a
/// stop request is seen promptly), instead of one write per job: a worker monitoring thousands of Kubernetes jobs
/// then costs the database a few statements a second, not thousands. A held job costs an entry here, not a task nor
/// a closure: its attempt's control is interrupted once, when its claim is refused (another worker claimed the job,
/// or it finished), a stop is requested, or the worker could not renew for a whole lease: then the job may already be
/// another worker's, so this one must stop touching it at once.
actor LeaseKeeper {
    private let store: PostgresJobStore
    private let workerID: String
    private let lease: Duration
    private let logger: Logger
    private var book: LeaseBook
    private var controls: [JobID: AttemptControl] = [:]
    /// Releases that arrived before their registration (``hold(_:_:)`` queues it): each cancels it. Kept for a lease
    /// at most, so a release after the handler was called does not stay here.
    private var releasedEarly: [JobClaim: ContinuousClock.Instant] = [:]

    init(store: PostgresJobStore, workerID: String, lease: Duration, logger: Logger) {
        self.store = store
        self.workerID = workerID
        self.lease = lease
        self.logger = logger
        self.book = LeaseBook(lease: lease)
    }

    /// Renews the claim's lease from now on; `control` is interrupted with ``interruption(_:)`` when a stop is
    /// requested or the lease is lost (once, after which the job is no longer renewed). Callable from synchronous
    /// code: the registration is queued on the actor.
    nonisolated func hold(_ claim: JobClaim, _ control: AttemptControl) {
        Task { await self.register(claim, control) }
    }

    private func register(_ claim: JobClaim, _ control: AttemptControl) {
        if releasedEarly.removeValue(forKey: claim) != nil { return }
        book.hold(claim, at: .now)
        controls[claim.jobID] = control
    }

    /// What a renewal's answer means for the attempt: nothing while held, else how it must end.
    static func interruption(_ state: PostgresJobStore.LeaseState) -> AttemptInterruption? {
        switch state {
        case .held: nil
        case .stopRequested: .stopRequested
        case .lost: .leaseLost("the claim was refused at renewal, or could not be renewed for a whole lease")
        }
    }

    /// Stops renewing the claim's lease (its attempt ended).
    func release(_ claim: JobClaim) {
        if book.release(claim) {
            controls[claim.jobID] = nil
        } else {
            releasedEarly[claim] = .now
        }
    }

    /// Renews until cancelled.
    func run() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: min(lease / 3, .seconds(5)))
            } catch {
                break
            }
            await renewAll()
        }
        controls.removeAll()
    }

    private func renewAll() async {
        let now = ContinuousClock.now
        releasedEarly = releasedEarly.filter { now - $0.value < lease }
        let claims = book.claims
        guard !claims.isEmpty else { return }
        let sent = ContinuousClock.now
        let ended: [(JobID, PostgresJobStore.LeaseState)]
        do {
            let states = try await store.renewLeases(workerID: workerID, claims: claims, lease: lease)
            ended = book.renewed(claims, states: states, sentAt: sent)
        } catch {
            // Postgres unavailable: keep running while the lease lasts; past it, stop (the job may be another's).
            ended = book.renewalFailed(at: .now)
            logger.warning(
                "lease renewal failed",
                metadata: ["jobs": "\(claims.count)", "given_up": "\(ended.count)", "error": "\(error)"])
        }
        for (jobID, state) in ended {
            guard let control = controls.removeValue(forKey: jobID), let interruption = Self.interruption(state) else {
                continue
            }
            control.interrupt(interruption)
        }
    }
}

/// The claims a worker holds and when each was last renewed: a value whose methods say which claims end.
struct LeaseBook: Sendable {
    private struct Entry: Sendable {
        var claim: JobClaim
        /// When the last successful renewal (or the claim) was sent: the database's lease runs from a moment after.
        var renewedAt: ContinuousClock.Instant
    }

    let lease: Duration
    private var entries: [JobID: Entry] = [:]

    init(lease: Duration) {
        self.lease = lease
    }

    var claims: [JobClaim] { entries.values.map(\.claim) }

    mutating func hold(_ claim: JobClaim, at instant: ContinuousClock.Instant) {
        entries[claim.jobID] = Entry(claim: claim, renewedAt: instant)
    }

    /// Forgets the claim if it is the one held; false otherwise.
    mutating func release(_ claim: JobClaim) -> Bool {
        guard entries[claim.jobID]?.claim == claim else { return false }
        entries[claim.jobID] = nil
        return true
    }

    /// A renewal of `claims`, sent at `sentAt`, answered with the state of each job still held: the claims that end
    /// (stop requested, or lost: absent from the answer).
    mutating func renewed(
        _ claims: [JobClaim], states: [JobID: PostgresJobStore.LeaseState], sentAt: ContinuousClock.Instant
    ) -> [(JobID, PostgresJobStore.LeaseState)] {
        var ended: [(JobID, PostgresJobStore.LeaseState)] = []
        for claim in claims where entries[claim.jobID]?.claim == claim {
            let state = states[claim.jobID] ?? .lost
            if state == .held {
                entries[claim.jobID]?.renewedAt = sentAt
            } else {
                entries[claim.jobID] = nil
                ended.append((claim.jobID, state))
            }
        }
        return ended
    }

    /// A renewal failed at `instant`: the claims not renewed for a whole lease are lost by this worker's own clock.
    mutating func renewalFailed(at instant: ContinuousClock.Instant) -> [(JobID, PostgresJobStore.LeaseState)] {
        let expired = entries.values.filter { instant - $0.renewedAt >= lease }.map(\.claim.jobID)
        for jobID in expired { entries[jobID] = nil }
        return expired.map { ($0, .lost) }
    }
}
