import Domain
import Foundation
import Logging
import Persistence

/// Renews the leases of every job a worker holds in one statement every third of the lease (at most every 5 s, so a
/// stop request is seen promptly), instead of one write per job: a worker monitoring thousands of Kubernetes jobs
/// then costs the database a few statements a second, not thousands. Each held job waits here until its claim is
/// refused (another worker claimed the job, or it finished), a stop is requested, or the worker could not renew for
/// a whole lease: then the job may already be another worker's, so this one must stop touching it at once.
actor LeaseKeeper {
    private struct Holder {
        var waiter: CheckedContinuation<PostgresJobStore.LeaseState, Never>
    }

    private let store: PostgresJobStore
    private let workerID: String
    private let lease: Duration
    private let logger: Logger
    private var book: LeaseBook
    private var holders: [JobID: Holder] = [:]

    init(store: PostgresJobStore, workerID: String, lease: Duration, logger: Logger) {
        self.store = store
        self.workerID = workerID
        self.lease = lease
        self.logger = logger
        self.book = LeaseBook(lease: lease)
    }

    /// Suspends until the claim must end (`.stopRequested` or `.lost`); cancelling the caller ends it with `.held`,
    /// and the job is no longer renewed.
    func hold(_ claim: JobClaim) async -> PostgresJobStore.LeaseState {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(returning: .held)
                    return
                }
                holders[claim.jobID]?.waiter.resume(returning: .held)
                holders[claim.jobID] = Holder(waiter: continuation)
                book.hold(claim, at: .now)
            }
        } onCancel: {
            Task { await self.release(claim) }
        }
    }

    private func release(_ claim: JobClaim) {
        guard book.release(claim) else { return }
        holders.removeValue(forKey: claim.jobID)?.waiter.resume(returning: .held)
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
        for holder in holders.values { holder.waiter.resume(returning: .held) }
        holders.removeAll()
    }

    private func renewAll() async {
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
            holders.removeValue(forKey: jobID)?.waiter.resume(returning: state)
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
