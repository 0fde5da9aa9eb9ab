import Synchronization

/// Wakes the dispatchers and event relays once new jobs have committed (`c2d_wake`, migration 0017).
///
/// The wake-up is sent after the submit's commit instead of from a trigger inside it: a transaction that notifies
/// commits under a database-wide lock held until its WAL flush, so notifying submits could not share flushes
/// (docs/operations.md, "Where a submit's time goes"). It is fire and forget: the submit has already committed and
/// answers at once, and while one wake-up is on its way the environments of later submits are gathered into the
/// next, so a burst of submits costs a few wake-ups rather than one each. A lost wake-up (the process died, the
/// statement failed) only delays admission until the dispatcher's next sweep.
package final class SubmitWakeups: Sendable {
    private struct State {
        var pending: Set<String> = []
        var sending = false
    }

    private let state = Mutex(State())
    private let client: PostgresClient

    init(client: PostgresClient) {
        self.client = client
    }

    /// Asks for a wake-up of `environments`' dispatchers (and of the event relays); returns at once.
    func wake(_ environments: some Sequence<String>) {
        let start = state.withLock { state in
            state.pending.formUnion(environments)
            guard !state.sending, !state.pending.isEmpty else { return false }
            state.sending = true
            return true
        }
        guard start else { return }
        Task { await self.send() }
    }

    /// Sends wake-ups until no environment is pending.
    private func send() async {
        while true {
            let environments = state.withLock { state -> [String]? in
                guard !state.pending.isEmpty else {
                    state.sending = false
                    return nil
                }
                defer { state.pending.removeAll() }
                return Array(state.pending)
            }
            guard let environments else { return }
            // Best effort, see above; the statement timeout bounds it.
            _ = try? await client.execute("select c2d_wake($1::text[])", [.textArray(environments)])
        }
    }
}
