import Synchronization

/// Raised when an operation did not finish within its time limit.
package struct DeadlineExceeded: Error, CustomStringConvertible, Sendable {
    package var operation: String
    package var limit: Duration

    package init(operation: String, limit: Duration) {
        self.operation = operation
        self.limit = limit
    }

    package var description: String { "\(operation) did not finish within \(limit)" }
}

/// Runs `body` and returns its result, or throws `DeadlineExceeded` once `limit` has passed — whether or not
/// `body` reacts to cancellation: every external call in c2d has a time limit, and a call stuck
/// in a C library must not hold its caller. On timeout `body` is cancelled and left to finish on its own.
package func withDeadline<T: Sendable>(
    _ limit: Duration, operation: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = OnceContinuation<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            outcome.set(continuation)
            let work = Task {
                do {
                    outcome.resume(with: .success(try await body()))
                } catch {
                    outcome.resume(with: .failure(error))
                }
            }
            Task {
                try? await Task.sleep(for: limit)
                if outcome.resume(with: .failure(DeadlineExceeded(operation: operation, limit: limit))) {
                    work.cancel()
                }
            }
            outcome.onCancel = { work.cancel() }
        }
    } onCancel: {
        outcome.cancel()
    }
}

/// A continuation resumed by whichever comes first: the result, the deadline, or cancellation.
private final class OnceContinuation<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var pending: Result<T, any Error>?
        var done = false
        var onCancel: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        let pending: Result<T, any Error>? = state.withLock { state in
            if let pending = state.pending {
                state.pending = nil
                return pending
            }
            state.continuation = continuation
            return nil
        }
        if let pending { continuation.resume(with: pending) }
    }

    var onCancel: (@Sendable () -> Void)? {
        get { state.withLock { $0.onCancel } }
        set { state.withLock { $0.onCancel = newValue } }
    }

    /// Returns true if this call was the one that ended the wait.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        let continuation: CheckedContinuation<T, any Error>? = state.withLock { state in
            guard !state.done else { return nil }
            state.done = true
            guard let continuation = state.continuation else {
                state.pending = result
                return nil
            }
            state.continuation = nil
            return continuation
        }
        continuation?.resume(with: result)
        return continuation != nil || state.withLock { $0.pending != nil }
    }

    func cancel() {
        if resume(with: .failure(CancellationError())) {
            state.withLock { $0.onCancel }?()
        }
    }
}
