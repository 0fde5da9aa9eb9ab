import Foundation
import Synchronization
import UnixSignals

/// What a bench does when its operator presses Ctrl-C or a supervisor sends SIGTERM: its work is cancelled and its
/// clean-up still runs. Before, a bench ended by a signal left its environment and every job it had written in the
/// database (one such leftover held 183,000 jobs and a `jobs` table bloated to 2.3 GB, and halved the figures of
/// every bench run after it, docs/operations.md, "Where a submit's time goes").
enum BenchInterruption {
    /// Runs `body`; the first SIGINT or SIGTERM while it runs cancels it, and a second one (also during the clean-up
    /// that follows) exits at once, without clean-up. Returns what `body` returns; throws what it throws, or a ``BenchError`` with code `interrupted` when a
    /// signal cancelled it.
    static func cancellingOnSignals<T: Sendable>(
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        // The handlers are in place once the sequence exists, before any work starts.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let work = Task { try await body() }
        let interruption = Mutex<UnixSignal?>(nil)
        let watcher = Task {
            for await signal in signals {
                guard interruption.withLock({ $0 }) == nil else {
                    Self.report("\(signal) again: exiting without cleaning up")
                    exit(130)
                }
                interruption.withLock { $0 = signal }
                Self.report("\(signal): stopping, then cleaning up (send it again to exit at once)")
                work.cancel()
            }
        }
        defer {
            watcher.cancel()
            // The sequence leaves both signals ignored; from here (the clean-up) on, a signal ends the process again.
            signal(SIGINT, SIG_DFL)
            signal(SIGTERM, SIG_DFL)
        }
        do {
            return try await withTaskCancellationHandler {
                try await work.value
            } onCancel: {
                work.cancel()
            }
        } catch {
            guard let signal = interruption.withLock({ $0 }) else { throw error }
            let cause = error is CancellationError ? "" : " (\(error))"
            throw BenchError(code: .interrupted, message: "stopped by \(signal)\(cause)")
        }
    }

    /// Runs `cleanUp` in a task of its own, so that it still reaches the database from inside `body` of
    /// ``cancellingOnSignals(_:)``, whose task a signal cancelled (a cancelled task's statements are refused before
    /// they are sent). After ``cancellingOnSignals(_:)`` returns, the caller's task is not cancelled and needs none.
    static func cleaningUp<T: Sendable, Failure: Error>(
        _ cleanUp: @escaping @Sendable () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        try await Task { () async -> Result<T, Failure> in
            do throws(Failure) {
                return .success(try await cleanUp())
            } catch {
                return .failure(error)
            }
        }.value.get()
    }

    private static func report(_ message: String) {
        FileHandle.standardError.write(Data("c2d bench: \(message)\n".utf8))
    }
}
