import Domain
import Foundation
import Logging
import Persistence

/// Renews the leases of every job a worker holds in one statement every third of the lease (at most every 5 s, so a
/// stop request is seen promptly), instead of one write per job: a worker monitoring thousands of Kubernetes jobs
/// then costs the database a few statements a second, not thousands. A held job costs an entry here, not a task:
/// its handler is called once, when its lease is refused (the attempt was taken over or finished) or a stop is
/// requested.
actor LeaseKeeper {
    private struct Holder {
        var attempt: Int
        var handler: @Sendable (PostgresJobStore.LeaseState) -> Void
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

    /// Renews the attempt's lease from now on; `handler` hears `.stopRequested` or `.lost` (once, after which the
    /// job is no longer renewed). Callable from synchronous code: the registration is queued on the actor.
    nonisolated func hold(
        jobID: JobID, attempt: Int, _ handler: @escaping @Sendable (PostgresJobStore.LeaseState) -> Void
    ) {
        Task { await self.register(jobID, attempt, handler) }
    }

    private func register(
        _ jobID: JobID, _ attempt: Int, _ handler: @escaping @Sendable (PostgresJobStore.LeaseState) -> Void
    ) {
        if released.remove(Released(jobID: jobID, attempt: attempt)) != nil { return }
        holders[jobID] = Holder(attempt: attempt, handler: handler)
    }

    private struct Released: Hashable {
        var jobID: JobID
        var attempt: Int
    }

    /// Releases that arrived before their registration (the registration is queued): they cancel it.
    private var released: Set<Released> = []

    /// Stops renewing the attempt's lease (it ended).
    func release(jobID: JobID, attempt: Int) {
        if let holder = holders[jobID], holder.attempt == attempt {
            holders[jobID] = nil
        } else {
            released.insert(Released(jobID: jobID, attempt: attempt))
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
            holder.handler(state)
        }
    }
}
