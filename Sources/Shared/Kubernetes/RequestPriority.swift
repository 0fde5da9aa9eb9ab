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

/// The client's rate limit with priorities: one ``TokenBucket``, and callers that must wait queue per
/// ``RequestPriority``; each token that comes due goes to the oldest caller of the highest priority. One timer task
/// serves every waiter.
actor PriorityRateLimiter {
    private var bucket: TokenBucket
    private var waiting: [[Waiter]] = Array(repeating: [], count: RequestPriority.allCases.count)
    private var heads: [Int] = Array(repeating: 0, count: RequestPriority.allCases.count)
    private var pumping = false
    private var nextID: UInt64 = 0

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    init(_ bucket: TokenBucket) { self.bucket = bucket }

    /// Waits for a token; cancelling the caller ends the wait with `CancellationError`.
    func acquire(_ priority: RequestPriority) async throws {
        if waitingCount == 0, bucket.tryTake(at: .now) { return }
        nextID += 1
        let id = nextID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiting[priority.rawValue].append(Waiter(id: id, continuation: continuation))
                startPumping()
            }
        } onCancel: {
            Task { await self.cancel(id, priority) }
        }
    }

    private var waitingCount: Int {
        var count = 0
        for index in waiting.indices { count += waiting[index].count - heads[index] }
        return count
    }

    private func cancel(_ id: UInt64, _ priority: RequestPriority) {
        let queue = priority.rawValue
        guard let index = waiting[queue][heads[queue]...].firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiting[queue].remove(at: index)
        waiter.continuation.resume(throwing: CancellationError())
    }

    private func startPumping() {
        guard !pumping else { return }
        pumping = true
        Task { await self.pump() }
    }

    /// Hands out tokens as they come due, highest priority first, until nobody waits.
    private func pump() async {
        while true {
            guard let queue = waiting.indices.first(where: { waiting[$0].count > heads[$0] }) else { break }
            let wait = bucket.untilNextToken(at: .now)
            if wait > .zero {
                try? await Task.sleep(for: wait)
                continue
            }
            guard bucket.tryTake(at: .now) else { continue }
            let waiter = waiting[queue][heads[queue]]
            heads[queue] += 1
            if heads[queue] > 64 && heads[queue] * 2 > waiting[queue].count {
                waiting[queue].removeFirst(heads[queue])
                heads[queue] = 0
            }
            waiter.continuation.resume()
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
    private var waiting: [CircularBuffer<Waiter>] = Array(repeating: [], count: RequestPriority.allCases.count)
    private var nextID: UInt64 = 0

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    init(limit: Int) { self.limit = max(1, limit) }

    /// Waits for a permit; cancelling the caller ends the wait with `CancellationError`. Give it back with
    /// ``release()``.
    func acquire(_ priority: RequestPriority) async throws {
        if inUse < limit, waiting.allSatisfy(\.isEmpty) {
            inUse += 1
            return
        }
        nextID += 1
        let id = nextID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiting[priority.rawValue].append(Waiter(id: id, continuation: continuation))
            }
        } onCancel: {
            Task { await self.cancel(id, priority) }
        }
    }

    /// Passes the permit to the first waiter of the highest priority, or puts it back.
    func release() {
        if let queue = waiting.indices.first(where: { !waiting[$0].isEmpty }) {
            waiting[queue].removeFirst().continuation.resume()
        } else {
            inUse -= 1
        }
    }

    private func cancel(_ id: UInt64, _ priority: RequestPriority) {
        let queue = priority.rawValue
        guard let index = waiting[queue].firstIndex(where: { $0.id == id }) else { return }
        waiting[queue].remove(at: index).continuation.resume(throwing: CancellationError())
    }
}
