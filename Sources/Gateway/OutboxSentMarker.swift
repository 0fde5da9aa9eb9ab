import Logging
import Persistence
import Synchronization

/// Marks confirmed outbox rows as sent in batches: one UPDATE for every row confirmed meanwhile, instead of a second
/// commit per submit. It runs only while there is something to mark. A mark lost to a crash only makes the relay
/// publish the message again (after its minimum age), and the worker's claim drops the duplicate.
final class OutboxSentMarker: Sendable {
    private struct State {
        var pending: [Int] = []
        var flushing = false
    }

    private let state = Mutex(State())
    private let store: PostgresJobStore
    private let logger: Logger

    init(store: PostgresJobStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func mark(_ ids: [Int]) {
        guard !ids.isEmpty else { return }
        let start = state.withLock { state in
            state.pending += ids
            guard !state.flushing else { return false }
            state.flushing = true
            return true
        }
        if start { Task { await self.flush() } }
    }

    private func flush() async {
        while true {
            let ids = state.withLock { state in
                let ids = state.pending
                state.pending = []
                if ids.isEmpty { state.flushing = false }
                return ids
            }
            guard !ids.isEmpty else { return }
            do {
                try await store.markOutboxSent(ids: ids)
            } catch {
                logger.warning(
                    "marking outbox rows sent failed; the relay will publish them again",
                    metadata: ["rows": "\(ids.count)", "error": "\(error)"])
            }
        }
    }
}
