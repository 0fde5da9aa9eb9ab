import Domain
import Foundation
import Logging
import Persistence

/// Renews the leases of every job a worker holds in one statement every third of the lease (at most every 5 s, so a
/// stop request is seen promptly), instead of one write per job: a worker monitoring thousands of Kubernetes jobs
/// then costs the database a few statements a second, not thousands. Each held job waits here until its lease is
/// refused (the attempt was taken over or finished) or a stop is requested.
actor LeaseKeeper {
    private struct Holder {
        var attempt: Int
        var waiter: CheckedContinuation<PostgresJobStore.LeaseState, Never>
    }

    private let store: PostgresJobStore
    private let workerID: String
    private let lease: Duration
    private let logger: Logger
    private var holders: [JobID: Holder] = [:]

    init(store: PostgresJobStore, workerID: String, lease: Duration, logger: Logger) {
        self.store = store
        self.workerID = workerID
        self.lease = lease
        self.logger = logger
    }

    /// Suspends until the attempt must end (`.stopRequested` or `.lost`); cancelling the caller ends it with
    /// `.held`, and the job is no longer renewed.
    func hold(jobID: JobID, attempt: Int) async -> PostgresJobStore.LeaseState {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(returning: .held)
                    return
                }
                holders[jobID]?.waiter.resume(returning: .held)
                holders[jobID] = Holder(attempt: attempt, waiter: continuation)
            }
        } onCancel: {
            Task { await self.release(jobID, attempt: attempt) }
        }
    }

    private func release(_ jobID: JobID, attempt: Int) {
        guard let holder = holders[jobID], holder.attempt == attempt else { return }
        holders[jobID] = nil
        holder.waiter.resume(returning: .held)
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
        let held = holders.map { (jobID: $0.key, attempt: $0.value.attempt) }
        guard !held.isEmpty else { return }
        let states: [JobID: PostgresJobStore.LeaseState]
        do {
            states = try await store.renewLeases(workerID: workerID, jobs: held, lease: lease)
        } catch {
            // Postgres unavailable: keep running; the lease is long enough to ride out a short outage.
            logger.warning("lease renewal failed", metadata: ["jobs": "\(held.count)", "error": "\(error)"])
            return
        }
        for (jobID, attempt) in held {
            let state = states[jobID] ?? .lost
            guard state != .held, let holder = holders[jobID], holder.attempt == attempt else { continue }
            holders[jobID] = nil
            holder.waiter.resume(returning: state)
        }
    }
}
