import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A publish waiting to be sent or confirmed. `complete` runs exactly once, on the connection thread or (when the
/// request is refused before it reaches the thread) on the caller's.
struct PublishRequest: Sendable {
    var message: AMQPMessage
    var exchange: String
    var routingKey: String
    var mandatory: Bool
    var complete: @Sendable (AMQPError?) -> Void
}

/// The thread-safe face of one rabbitmq-c connection: a mailbox of commands for the owner thread (see
/// ``ConnectionPump``), a wake-up pipe that interrupts the thread's `poll()`, and the reason it closed.
final class RabbitMQConnection: DeliverySettler, Sendable {
    enum Command: Sendable {
        case publish([PublishRequest])
        case settle(channel: UInt16, deliveryTag: UInt64, Settlement)
        case declare(AMQPTopology, CheckedContinuation<Void, any Error>)
        case deleteQueue(String, CheckedContinuation<Void, any Error>)
        case deleteExchange(String, CheckedContinuation<Void, any Error>)
        case inspectQueue(String, CheckedContinuation<AMQPQueueStatus, any Error>)
        case startConsumer(ConsumerBuffer)
        case cancelConsumer(id: Int)
        /// Pause or resume the consumer, as its buffer's ``ConsumerBuffer/subscription`` now says.
        case updateConsumer(id: Int)
        /// Stop taking publishes, wait (up to the RPC timeout) for outstanding confirms, then connection.close 200.
        case close
    }

    private struct Mailbox {
        var commands: [Command] = []
        /// A byte is in the pipe (or about to be) that the owner thread has not drained yet.
        var wakePending = false
        var closedReason: AMQPError?
        var closeWaiters: [CheckedContinuation<AMQPError, Never>] = []
    }

    let id: Int
    /// Read end of the wake-up pipe; polled by the owner thread.
    let wakeReadFD: Int32
    private let wakeWriteFD: Int32
    private let mailbox = NIOLockedValueBox(Mailbox())

    init(id: Int) throws(AMQPError) {
        self.id = id
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw AMQPError(code: .connectionFailed, message: "cannot create a wake-up pipe (errno \(errno))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeReadFD = fds[0]
        wakeWriteFD = fds[1]
    }

    // MARK: Caller side

    var isOpen: Bool { mailbox.withLockedValue { $0.closedReason == nil } }

    /// Queues a command for the owner thread; returns why not when the connection is already closed.
    func submit(_ command: Command) -> AMQPError? {
        mailbox.withLockedValue { mailbox in
            if let reason = mailbox.closedReason { return reason }
            mailbox.commands.append(command)
            if !mailbox.wakePending {
                mailbox.wakePending = true
                // Under the lock, so the pipe cannot have been closed (and its number reused) meanwhile.
                var byte: UInt8 = 1
                _ = write(wakeWriteFD, &byte, 1)
            }
            return nil
        }
    }

    /// Suspends until the connection is closed; returns why.
    func waitUntilClosed() async -> AMQPError {
        await withCheckedContinuation { (continuation: CheckedContinuation<AMQPError, Never>) in
            let reason: AMQPError? = mailbox.withLockedValue { mailbox in
                if let reason = mailbox.closedReason { return reason }
                mailbox.closeWaiters.append(continuation)
                return nil
            }
            if let reason { continuation.resume(returning: reason) }
        }
    }

    /// Asks for a clean close; returns at once (see ``waitUntilClosed()``).
    func requestClose() {
        _ = submit(.close)
    }

    /// Queues the settlement for the owner thread and returns without waiting for it to be written (see
    /// ``AMQPDelivery/ack()``). Throws only when the connection is already closed.
    func settle(channel: UInt16, deliveryTag: UInt64, as settlement: Settlement) throws(AMQPError) {
        if let reason = submit(.settle(channel: channel, deliveryTag: deliveryTag, settlement)) {
            throw Self.settleError(reason)
        }
    }

    func declare(_ topology: AMQPTopology) async throws {
        try await request { .declare(topology, $0) }
    }

    func deleteQueue(_ name: String) async throws {
        try await request { .deleteQueue(name, $0) }
    }

    func deleteExchange(_ name: String) async throws {
        try await request { .deleteExchange(name, $0) }
    }

    private func request(_ command: (CheckedContinuation<Void, any Error>) -> Command) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            if let reason = submit(command(continuation)) {
                continuation.resume(throwing: Self.notSent(reason))
            }
        }
    }

    // MARK: Owner-thread side

    /// Takes the queued commands. Drains the pipe first, so a command queued after the drain always leaves a byte
    /// behind for the next `poll()`.
    func takeCommands() -> [Command] {
        var scratch = [UInt8](repeating: 0, count: 64)
        while read(wakeReadFD, &scratch, scratch.count) > 0 {}
        return mailbox.withLockedValue { mailbox in
            mailbox.wakePending = false
            defer { mailbox.commands.removeAll() }
            return mailbox.commands
        }
    }

    /// Marks the connection closed, closes the pipe, wakes everyone waiting for the close, and returns the commands
    /// that were queued but never taken.
    func markClosed(reason: AMQPError) -> [Command] {
        let (leftover, waiters) = mailbox.withLockedValue { mailbox in
            guard mailbox.closedReason == nil else { return ([Command](), [CheckedContinuation<AMQPError, Never>]()) }
            mailbox.closedReason = reason
            close(wakeReadFD)
            close(wakeWriteFD)
            defer {
                mailbox.commands.removeAll()
                mailbox.closeWaiters.removeAll()
            }
            return (mailbox.commands, mailbox.closeWaiters)
        }
        for waiter in waiters { waiter.resume(returning: reason) }
        return leftover
    }

    /// For work that never reached the broker.
    static func notSent(_ reason: AMQPError) -> AMQPError {
        AMQPError(code: .notConnected, message: "not sent, the connection is closed (\(reason.message))")
    }

    /// Settling a delivery from a dead connection: the broker has already requeued it.
    static func settleError(_ reason: AMQPError) -> AMQPError {
        AMQPError(
            code: .connectionClosed,
            message:
                "the connection that delivered the message is closed; the broker redelivers it (\(reason.message))",
            replyCode: reason.replyCode
        )
    }
}
