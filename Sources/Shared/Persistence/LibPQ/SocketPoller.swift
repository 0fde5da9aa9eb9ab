import CLibPQ  // for <sys/epoll.h> only
import Foundation
import Synchronization

/// One thread that waits, with `epoll`, on the sockets of every Postgres connection whose statement is in flight,
/// and runs a connection's handler when its socket becomes ready.
///
/// A statement used to cost the client three thread wake-ups: the connection's own thread to send it, the same
/// thread again when the answer arrived (it slept in `poll`), and a thread of the Swift pool to go on. In `c2d bench
/// db` the scheduler's work for those switches was about a third of the client's CPU. Now the caller's task sends the
/// statement itself (libpq's non-blocking mode), and this one thread waits for every connection's answer: one
/// wake-up fewer per statement, and answers that arrive together cost a single wake-up.
///
/// Registrations are one-shot (`EPOLLONESHOT`): a ready socket is reported once, and its handler, which runs on
/// this thread, registers again when it needs more. Like NIO's singleton event loop group, the thread lives as long
/// as the process.
final class SocketPoller: Sendable {
    static let shared = SocketPoller()

    /// What a handler waits for.
    enum Readiness: Sendable {
        /// Data to read (or end of file, or an error).
        case readable
        /// Room to write, or data to read: while a client writes, the server may be writing too, and waits for it to
        /// read (libpq's rule for `PQflush`).
        case writableOrReadable
    }

    /// A handler learns what is ready from its own next read or write: a hang-up or an error shows there too.
    typealias Handler = @Sendable () -> Void

    private let epoll: Int32
    private let handlers = Mutex<[Int32: Handler]>([:])

    private init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        // Without an epoll instance nothing could ever be waited for; it fails only when out of descriptors at start.
        precondition(epoll >= 0, "epoll_create1 failed: errno \(errno)")
        let thread = Thread { [self] in run() }
        thread.name = "c2d-postgres-poller"
        thread.start()
    }

    /// Runs `handler` once, on the poller's thread, when `descriptor` becomes ready (or fails). Throws when the
    /// descriptor cannot be watched; the handler then never runs.
    func whenReady(_ descriptor: Int32, for readiness: Readiness, handler: @escaping Handler) throws(PostgresError) {
        handlers.withLock { $0[descriptor] = handler }
        let wanted = readiness == .readable ? EPOLLIN.rawValue : EPOLLIN.rawValue | EPOLLOUT.rawValue
        var event = epoll_event()
        event.events = wanted | EPOLLONESHOT.rawValue
        event.data.fd = descriptor
        // The descriptor stays in the set after it fired (disabled, being one-shot), so usually it is re-armed; a
        // connection's first statement adds it. A closed socket leaves the set by itself.
        if epoll_ctl(epoll, EPOLL_CTL_MOD, descriptor, &event) == 0 { return }
        if errno == ENOENT, epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event) == 0 { return }
        let code = errno
        handlers.withLock { _ = $0.removeValue(forKey: descriptor) }
        throw PostgresError(code: .connectionLost, message: "cannot wait for the socket (epoll_ctl: errno \(code))")
    }

    private func run() {
        let capacity: Int32 = 64
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(capacity))
        defer { events.deallocate() }
        while true {
            let count = epoll_wait(epoll, events, capacity, -1)
            guard count > 0 else { continue }  // EINTR
            for index in 0..<Int(count) {
                let event = events[index]
                let handler = handlers.withLock { $0.removeValue(forKey: event.data.fd) }
                handler?()
            }
        }
    }
}
