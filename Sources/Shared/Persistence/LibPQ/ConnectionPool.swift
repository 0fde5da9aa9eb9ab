import Logging

/// Hands out connections: reuses idle ones (most recently used first), opens new ones up to the maximum, and
/// queues callers beyond that until a connection is released or their acquire timeout passes.
///
/// Connections that broke, were cancelled or were left inside a transaction are closed on release rather than
/// reused; when that frees a slot while callers wait, a replacement is opened for them.
actor ConnectionPool {
    private let configuration: PostgresConfiguration
    private let configurationError: PostgresError?
    private let logger: Logger

    private var idle: [PostgresConnection] = []
    /// Connections that exist or are being opened: idle + leased + connecting.
    private var openCount = 0
    private var waiters: [Int: CheckedContinuation<PostgresConnection, any Error>] = [:]
    private var waiterOrder: [Int] = []
    private var nextWaiterID = 0
    private var nextConnectionID = 1
    private var warmedUp = false
    private var closed = false

    init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        do {
            try configuration.validate()
            configurationError = nil
        } catch {
            configurationError = error
        }
    }

    func acquire() async throws -> PostgresConnection {
        if let configurationError { throw configurationError }
        guard !closed else { throw PostgresError.poolClosed }
        warmUpIfNeeded()
        if let connection = idle.popLast() { return connection }
        if openCount < configuration.maximumConnections {
            openCount += 1
            let connection: PostgresConnection
            do {
                connection = try await open()
            } catch {
                openCount -= 1
                throw error
            }
            guard !closed else {
                await discard(connection)
                throw PostgresError.poolClosed
            }
            return connection
        }
        return try await wait()
    }

    /// Gives a connection back: reused if healthy, otherwise closed (and replaced for a waiting caller).
    func release(_ connection: PostgresConnection) async {
        guard !closed, connection.isReusable else {
            if !closed {
                logger.debug("discarding Postgres connection", metadata: ["pq.connection": "\(connection.id)"])
            }
            await discard(connection)
            openReplacementIfWaiting()
            return
        }
        connection.markIdle()
        if let waiter = popWaiter() {
            waiter.resume(returning: connection)
        } else {
            idle.append(connection)
        }
    }

    /// Fails waiting callers, closes idle connections, and makes later acquires throw `.poolClosed`. Leased
    /// connections close when they are released.
    func shutdown() async {
        guard !closed else { return }
        closed = true
        let waiting = waiterOrder.compactMap { waiters[$0] }
        waiters.removeAll()
        waiterOrder.removeAll()
        for waiter in waiting { waiter.resume(throwing: PostgresError.poolClosed) }
        let connections = idle
        idle.removeAll()
        for connection in connections { await discard(connection) }
    }

    // MARK: Internals

    private func open() async throws -> PostgresConnection {
        let id = nextConnectionID
        nextConnectionID += 1
        do {
            return try await PostgresConnection.connect(id: id, configuration: configuration, logger: logger)
        } catch {
            logger.debug("Postgres connect failed", metadata: ["error": "\(error)"])
            throw error
        }
    }

    private func discard(_ connection: PostgresConnection) async {
        openCount -= 1
        await connection.close()
    }

    /// Opens `minimumConnections - 1` more connections in the background on first use (the caller opens one).
    private func warmUpIfNeeded() {
        guard !warmedUp else { return }
        warmedUp = true
        let extra = max(0, configuration.minimumConnections - 1 - openCount)
        for _ in 0..<extra {
            openCount += 1
            Task { await self.openInBackground(failWaiter: false) }
        }
    }

    private func openReplacementIfWaiting() {
        guard !closed, !waiterOrder.isEmpty, openCount < configuration.maximumConnections else { return }
        openCount += 1
        Task { await self.openInBackground(failWaiter: true) }
    }

    private func openInBackground(failWaiter: Bool) async {
        do {
            let connection = try await open()
            if closed {
                await discard(connection)
            } else if let waiter = popWaiter() {
                waiter.resume(returning: connection)
            } else {
                connection.markIdle()
                idle.append(connection)
            }
        } catch {
            openCount -= 1
            // A caller waiting for this replacement learns now that the server is unreachable.
            if failWaiter, let waiter = popWaiter() { waiter.resume(throwing: error) }
        }
    }

    private func wait() async throws -> PostgresConnection {
        let id = nextWaiterID
        nextWaiterID += 1
        let timeout = configuration.acquireTimeout
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.timeOut(waiter: id)
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters[id] = continuation
                waiterOrder.append(id)
            }
        } onCancel: {
            Task { await self.cancel(waiter: id) }
        }
    }

    private func popWaiter() -> CheckedContinuation<PostgresConnection, any Error>? {
        while !waiterOrder.isEmpty {
            let id = waiterOrder.removeFirst()
            if let waiter = waiters.removeValue(forKey: id) { return waiter }
        }
        return nil
    }

    private func remove(waiter id: Int) -> CheckedContinuation<PostgresConnection, any Error>? {
        guard let waiter = waiters.removeValue(forKey: id) else { return nil }
        waiterOrder.removeAll { $0 == id }
        return waiter
    }

    private func timeOut(waiter id: Int) {
        let milliseconds = configuration.acquireTimeout.milliseconds
        remove(waiter: id)?.resume(
            throwing: PostgresError(
                code: .acquireTimeout,
                message: "no Postgres connection became free within \(milliseconds) ms "
                    + "(all \(configuration.maximumConnections) in use)"
            )
        )
    }

    private func cancel(waiter id: Int) {
        remove(waiter: id)?.resume(throwing: CancellationError())
    }
}
