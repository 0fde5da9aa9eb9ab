import NIOConcurrencyHelpers
import NIOCore

/// Deliveries from one queue, surviving reconnects: an `AsyncSequence` of ``AMQPDelivery`` with manual
/// acknowledgement and a `basic.qos` prefetch. Made by ``AMQPClient/consume(queue:prefetch:)``.
///
/// Iterate it once. The sequence ends (returns nil) when the client shuts down, when the iterating task is cancelled,
/// when the loop is left (the iterator is dropped), or on ``cancel()``; then the client sends `basic.cancel` if it is
/// connected, and the broker requeues what was delivered and not settled. It throws when the broker refuses the
/// consumer for good (e.g. 404: the queue does not exist). Across a reconnect, deliveries from the old connection that
/// were buffered but not yet handed out are dropped (the broker redelivers them).
package struct AMQPConsumer: AsyncSequence, Sendable {
    package typealias Element = AMQPDelivery

    let buffer: ConsumerBuffer

    /// The queue consumed from.
    package var queue: String { buffer.queue }

    package func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(buffer: buffer)
    }

    /// Stops the consumer; a pending `next()` returns nil.
    package func cancel() {
        buffer.cancel()
    }

    /// Asks the broker to stop sending deliveries (`basic.cancel`) while the channel stays open: deliveries the broker
    /// sent before it processed the cancel still arrive here and can be settled. Use it to take no more work than
    /// the consumer can start, so another consumer gets it instead. Idempotent; a paused consumer stays paused
    /// across reconnects.
    package func pause() {
        buffer.setSubscription(paused: true, prefetch: nil)
    }

    /// Consumes again after ``pause()``, with a new prefetch if given (`basic.qos`, then `basic.consume`).
    package func resume(prefetch: Int? = nil) {
        buffer.setSubscription(paused: false, prefetch: prefetch)
    }

    package struct AsyncIterator: AsyncIteratorProtocol {
        /// Cancels the consumer when the last copy of the iterator goes away (e.g. `break` out of `for try await`).
        private final class Lifetime: Sendable {
            let buffer: ConsumerBuffer
            init(buffer: ConsumerBuffer) { self.buffer = buffer }
            deinit { buffer.cancel() }
        }

        private let lifetime: Lifetime

        init(buffer: ConsumerBuffer) {
            self.lifetime = Lifetime(buffer: buffer)
        }

        package mutating func next() async throws -> AMQPDelivery? {
            try await lifetime.buffer.next()
        }
    }
}

/// Hands deliveries from the connection thread to the consuming task, and carries the consumer's identity across
/// connections. Unbounded by itself, but the broker never has more than `prefetch` unacknowledged deliveries out per
/// consumer, which bounds it (twice that briefly, across a reconnect).
final class ConsumerBuffer: Sendable {
    private struct Buffered {
        var delivery: AMQPDelivery
        var connectionID: Int
    }

    private struct State {
        var buffered = CircularBuffer<Buffered>()
        var waiters = CircularBuffer<CheckedContinuation<AMQPDelivery?, any Error>>()
        /// Set once: nil result means a normal end.
        var end: Result<Void, AMQPError>?
        var onCancel: (@Sendable (Int) -> Void)?
        var subscription: Subscription
    }

    /// What the consumer asks of the broker; the connection thread applies it (``setSubscription(paused:prefetch:)``).
    struct Subscription: Sendable, Hashable {
        var paused: Bool
        var prefetch: Int
    }

    let id: Int
    let queue: String
    /// `basic.consume` arguments, e.g. `x-stream-offset` for a stream queue.
    let arguments: [String: AMQPArgument]
    private let state: NIOLockedValueBox<State>
    /// Tells the client that ``subscription`` changed.
    private let onChange: @Sendable (Int) -> Void

    init(
        id: Int, queue: String, prefetch: Int, arguments: [String: AMQPArgument] = [:],
        onCancel: @escaping @Sendable (Int) -> Void, onChange: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.id = id
        self.queue = queue
        self.arguments = arguments
        self.onChange = onChange
        self.state = NIOLockedValueBox(
            State(onCancel: onCancel, subscription: Subscription(paused: false, prefetch: max(1, prefetch))))
    }

    var isFinished: Bool { state.withLockedValue { $0.end != nil } }

    var subscription: Subscription { state.withLockedValue { $0.subscription } }

    func setSubscription(paused: Bool, prefetch: Int?) {
        let changed = state.withLockedValue { state -> Bool in
            guard state.end == nil else { return false }
            var wanted = state.subscription
            wanted.paused = paused
            if let prefetch { wanted.prefetch = max(1, prefetch) }
            // A new prefetch only matters when (re)subscribing, so it is applied by the next resume.
            defer { state.subscription = wanted }
            return wanted.paused != state.subscription.paused
        }
        if changed { onChange(id) }
    }

    func next() async throws -> AMQPDelivery? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AMQPDelivery?, any Error>) in
                let ready: Result<AMQPDelivery?, AMQPError>? = state.withLockedValue { state in
                    if let first = state.buffered.popFirst() { return .success(first.delivery) }
                    switch state.end {
                    case .some(.success): return .success(nil)
                    case .some(.failure(let error)): return .failure(error)
                    case nil:
                        state.waiters.append(continuation)
                        return nil
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            self.cancel()
        }
    }

    /// Called on the connection thread for each delivery.
    func push(_ delivery: AMQPDelivery, connectionID: Int) {
        let waiter: CheckedContinuation<AMQPDelivery?, any Error>? = state.withLockedValue { state in
            guard state.end == nil else { return nil }
            if let waiter = state.waiters.popFirst() { return waiter }
            state.buffered.append(Buffered(delivery: delivery, connectionID: connectionID))
            return nil
        }
        waiter?.resume(returning: delivery)
    }

    /// Drops buffered deliveries that came over a connection (or one of its channels) that is gone: they can no longer
    /// be settled, and the broker redelivers them.
    func dropDeliveries(connectionID: Int, channel: UInt16? = nil) {
        state.withLockedValue { state in
            state.buffered.removeAll { buffered in
                buffered.connectionID == connectionID && (channel == nil || buffered.delivery.channel == channel)
            }
        }
    }

    /// Ends the sequence, normally (nil) or with an error; buffered deliveries are dropped.
    func finish(throwing error: AMQPError? = nil) {
        let waiters = state.withLockedValue { state -> CircularBuffer<CheckedContinuation<AMQPDelivery?, any Error>> in
            guard state.end == nil else { return [] }
            state.end = error.map { .failure($0) } ?? .success(())
            state.buffered.removeAll()
            state.onCancel = nil
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters {
            if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
        }
    }

    /// Ends the sequence at the consumer's request and tells the client to cancel it on the broker.
    func cancel() {
        let onCancel = state.withLockedValue { $0.end == nil ? $0.onCancel : nil }
        finish()
        onCancel?(id)
    }
}
