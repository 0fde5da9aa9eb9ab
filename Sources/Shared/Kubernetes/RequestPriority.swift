import NIOCore

/// Which requests go first when the client-side rate limit makes them wait: finishing work (stopping, deleting what
/// ended) before watching and listing, and both before starting new work. So one job's next step never queues
/// behind every other job's launch, and a burst of submissions cannot delay a stop.
package enum RequestPriority: Int, Sendable, Hashable, Comparable, CaseIterable {
    /// Deletes and patches: stops, time-outs, clean-up of finished attempts.
    case finishing = 0
    /// Gets, lists and watches: what the informers and adoption read.
    case observing = 1
    /// Creates: launching new attempts.
    case starting = 2

    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Callers waiting per ``RequestPriority``, oldest first within a priority; the rate limiter and the permits each
/// keep one.
struct PriorityWaiters {
    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private var queues: [CircularBuffer<Waiter>] = Array(repeating: [], count: RequestPriority.allCases.count)
    private var nextID: UInt64 = 0

    var isEmpty: Bool { queues.allSatisfy(\.isEmpty) }

    /// An id for the next caller to queue, which ``remove(_:_:)`` takes to cancel it.
    mutating func makeID() -> UInt64 {
        nextID += 1
        return nextID
    }

    mutating func append(
        _ id: UInt64, _ priority: RequestPriority, _ continuation: CheckedContinuation<Void, any Error>
    ) {
        queues[priority.rawValue].append(Waiter(id: id, continuation: continuation))
    }

    /// Takes out the oldest caller of the highest priority.
    mutating func removeFirst() -> CheckedContinuation<Void, any Error>? {
        guard let queue = queues.indices.first(where: { !queues[$0].isEmpty }) else { return nil }
        return queues[queue].removeFirst().continuation
    }

    /// Takes out the caller `id` if it still waits.
    mutating func remove(_ id: UInt64, _ priority: RequestPriority) -> CheckedContinuation<Void, any Error>? {
        let queue = priority.rawValue
        guard let index = queues[queue].firstIndex(where: { $0.id == id }) else { return nil }
        return queues[queue].remove(at: index).continuation
    }
}

/// The client's rate limit with priorities: one ``TokenBucket``, and callers that must wait queue per
/// ``RequestPriority``; each token that comes due goes to the oldest caller of the highest priority. One timer task
/// serves every waiter.
actor PriorityRateLimiter {
    private var bucket: TokenBucket
    private var waiters = PriorityWaiters()
    private var pumping = false

    init(_ bucket: TokenBucket) { self.bucket = bucket }

    /// Waits for a token; cancelling the caller ends the wait with `CancellationError`.
    func acquire(_ priority: RequestPriority) async throws {
        if waiters.isEmpty, bucket.tryTake(at: .now) { return }
        let id = waiters.makeID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters.append(id, priority, continuation)
                startPumping()
            }
        } onCancel: {
            Task { await self.cancel(id, priority) }
        }
    }

    private func cancel(_ id: UInt64, _ priority: RequestPriority) {
        waiters.remove(id, priority)?.resume(throwing: CancellationError())
    }

    private func startPumping() {
        guard !pumping else { return }
        pumping = true
        Task { await self.pump() }
    }

    /// Hands out tokens as they come due, highest priority first, until nobody waits.
    private func pump() async {
        while !waiters.isEmpty {
            let wait = bucket.untilNextToken(at: .now)
            if wait > .zero {
                try? await Task.sleep(for: wait)
                continue
            }
            guard bucket.tryTake(at: .now) else { continue }
            waiters.removeFirst()?.resume()
        }
        pumping = false
    }
}

/// At most `limit` short requests in flight at once, handed out highest priority first. Without it, a worker that
/// claimed thousands of jobs had thousands of creates queued in the HTTP client's connection pool, first come first
/// served, and every request alike (the deletes that finish jobs too) waited there until the pool timed it out.
/// Watches and log follows hold a connection for their whole life and do not take a permit.
actor PriorityPermits {
    private let limit: Int
    private var inUse = 0
    private var waiters = PriorityWaiters()

    init(limit: Int) { self.limit = max(1, limit) }

    /// Waits for a permit; cancelling the caller ends the wait with `CancellationError`. Give it back with
    /// ``release()``.
    func acquire(_ priority: RequestPriority) async throws {
        if inUse < limit, waiters.isEmpty {
            inUse += 1
            return
        }
        let id = waiters.makeID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters.append(id, priority, continuation)
            }
        } onCancel: {
            Task { await self.cancel(id, priority) }
        }
    }

    /// Passes the permit to the first waiter of the highest priority, or puts it back.
    func release() {
        if let next = waiters.removeFirst() {
            next.resume()
        } else {
            inUse -= 1
        }
    }

    private func cancel(_ id: UInt64, _ priority: RequestPriority) {
        waiters.remove(id, priority)?.resume(throwing: CancellationError())
    }
}
