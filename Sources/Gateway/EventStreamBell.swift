import Logging
import Persistence
import ServiceLifecycle
import Synchronization

/// Wakes the gateway's open event streams when job events commit: one Postgres `LISTEN` on
/// ``PostgresJobStore/eventsChannel`` per gateway, rung into every open stream's ``Wakeup``, so a status change
/// reaches an SSE client within milliseconds instead of at its stream's next poll. The streams keep polling at their
/// interval, which is the fallback while the listener reconnects.
package final class EventStreamBell: Service, Sendable {
    private struct Streams {
        var next = 0
        var wakeups: [Int: Wakeup] = [:]
    }

    let store: PostgresJobStore
    let logger: Logger
    private let streams = Mutex(Streams())

    package init(store: PostgresJobStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.store.withNotifications(channels: [PostgresJobStore.eventsChannel]) { events in
                        for try await _ in events { self.ring() }
                    }
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.warning(
                        "listening for event notifications failed; streams poll meanwhile",
                        metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// A stream's doorbell, rung at each commit of job events until `leave(_:)`.
    func join() -> (id: Int, wakeup: Wakeup) {
        let wakeup = Wakeup()
        let id = streams.withLock { streams in
            streams.next += 1
            streams.wakeups[streams.next] = wakeup
            return streams.next
        }
        return (id, wakeup)
    }

    func leave(_ id: Int) {
        _ = streams.withLock { $0.wakeups.removeValue(forKey: id) }
    }

    private func ring() {
        for wakeup in streams.withLock({ Array($0.wakeups.values) }) { wakeup.ring() }
    }
}
