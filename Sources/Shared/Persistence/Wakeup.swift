import Synchronization

/// A doorbell between a notification listener (``PostgresJobStore/withNotifications(channels:_:)``) and a polling
/// loop: `ring()` from anywhere, and `wait(upTo:)` returns at the first ring since the last wait, or after the
/// timeout, whichever comes first. Rings while nobody waits are kept as one.
package final class Wakeup: Sendable {
    private struct State {
        var rung = false
        var waiter: (id: Int, continuation: CheckedContinuation<Void, Never>)?
        var nextID = 0
        /// A wait ended (timed out or cancelled) before its continuation was registered.
        var ended: Int?
    }

    private let state = Mutex(State())

    package init() {}

    package func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter.continuation
        }
        waiter?.resume()
    }

    /// Returns at a ring, after `timeout`, or when the task is cancelled.
    package func wait(upTo timeout: Duration) async {
        let id = state.withLock { state -> Int? in
            if state.rung {
                state.rung = false
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.resume(id)
            }
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.rung || state.ended == id {
                                state.rung = false
                                return true
                            }
                            state.waiter = (id, continuation)
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.resume(id)
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Ends the wait `id`: now if it is waiting, else as soon as it registers.
    private func resume(_ id: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter, waiter.id == id else {
                state.ended = id
                return nil
            }
            state.waiter = nil
            return waiter.continuation
        }
        waiter?.resume()
    }
}
