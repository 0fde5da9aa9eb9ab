import CLibPQ
import Dispatch
import Foundation
import Logging
import NIOPosix

/// One libpq connection and the OS thread that owns it.
///
/// libpq calls block, and a `PGconn` must not be used from two threads at once, so calls on the connection run on
/// its own single-thread `NIOThreadPool`; async callers suspend on a continuation meanwhile and the Swift
/// cooperative pool never blocks. The exception is the hot path, a statement already prepared on the connection:
/// the caller's task sends it with libpq's non-blocking calls and ``SocketPoller``'s thread collects its results,
/// which saves a thread wake-up per statement. One call at a time either way (``SharedState/Flags/inUse``), each
/// handing the connection to the next through a lock or a continuation. Only this file calls libpq.
final class PostgresConnection: Sendable {
    let id: Int
    private let thread: NIOThreadPool
    /// The `PGconn*` and the prepared-statement cache; touched only on `thread`.
    private let handle: ConnectionHandle
    /// Health flags and the cancel handle, shared between the owner thread and callers under a lock.
    private let shared: SharedState
    private let logger: Logger

    private init(id: Int, thread: NIOThreadPool, handle: ConnectionHandle, shared: SharedState, logger: Logger) {
        self.id = id
        self.thread = thread
        self.handle = handle
        self.shared = shared
        self.logger = logger
    }

    /// Opens a connection with the configuration's libpq defaults and session settings, on a new owner thread.
    static func connect(
        id: Int,
        configuration: PostgresConfiguration,
        logger: Logger
    ) async throws -> PostgresConnection {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        var logger = logger
        logger[metadataKey: "pq.connection"] = "\(id)"
        let connection = PostgresConnection(
            id: id,
            thread: thread,
            handle: ConnectionHandle(),
            shared: SharedState(),
            logger: logger
        )
        do {
            try await connection.onThread { [shared = connection.shared] handle in
                try handle.open(configuration: configuration)
                shared.setCancel(handle.makeCancel())
            }
        } catch {
            try? await thread.shutdownGracefully()
            throw error
        }
        logger.debug("Postgres connection opened")
        return connection
    }

    // MARK: Health, as seen by the pool

    /// False once the connection broke, a cancel request was sent on it (which could hit a later statement), or
    /// it was left inside a transaction block: then the pool closes it instead of reusing it.
    var isReusable: Bool { shared.withLock { !$0.broken && !$0.cancelSent && !$0.inTransaction } }

    /// Called by the pool when the connection goes idle: its first use after that checks, without a round
    /// trip, whether the server closed it meanwhile (e.g. restarted).
    func markIdle() { shared.withLock { $0.checkBeforeUse = true } }

    // MARK: Statements

    /// Runs one statement with bound parameters through the per-connection prepared-statement cache.
    /// Throws ``StaleConnectionError`` (nothing was sent) if the idle connection turns out to be closed.
    func query(_ sql: String, _ parameters: [PostgresValue]) async throws -> QueryResult {
        try await cancellable { [shared] in
            if let result = try await queryWithoutThread(sql, parameters) { return result }
            return try await onThread { handle in
                try handle.run(sql: sql, parameters: parameters, shared: shared)
            }
        }
    }

    /// Sends a statement already prepared on this connection from the calling task, and waits while
    /// ``SocketPoller``'s thread collects its results. Nil, and nothing sent, when the owner thread must run it
    /// instead: the statement is not prepared here yet (or the server dropped it), the connection is inside a
    /// transaction block (whose statements stay on the owner thread, with BEGIN and COMMIT), or another call is
    /// using the connection.
    private func queryWithoutThread(_ sql: String, _ parameters: [PostgresValue]) async throws -> QueryResult? {
        let taken = shared.withLock { flags in
            guard !flags.inUse, !flags.inTransaction else { return false }
            flags.inUse = true
            return true
        }
        guard taken else { return nil }
        defer { shared.withLock { $0.inUse = false } }
        guard let statement = try handle.send(sql: sql, parameters: parameters, shared: shared) else { return nil }
        // Not cancellable as such: a cancelled task's statement is cancelled on the server (see `cancellable`), and
        // its error result still has to be read before the connection can be used again.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            handle.collect(shared: shared, reading: false) { continuation.resume() }
        }
        return try handle.finish(statement, shared: shared)
    }

    /// Runs SQL without parameters and without preparing it (`PQexec`): scripts with several statements, and
    /// transaction control. Not cancelled with the task, so a ROLLBACK still runs in a cancelled task.
    func simpleQuery(_ sql: String) async throws {
        try await onThread { [shared] handle in
            try handle.simple(sql: sql, shared: shared)
        }
    }

    /// Like ``simpleQuery(_:)`` but sends a cancel request to the server if the task is cancelled.
    func script(_ sql: String) async throws {
        try await cancellable { [shared] in
            try await onThread { handle in try handle.simple(sql: sql, shared: shared) }
        }
    }

    /// Runs `COPY … FROM STDIN` and streams `data`, which must already be in COPY's text format, on the owner
    /// thread; returns the number of rows copied. Cancelled with the task like ``query(_:_:)``.
    func copyIn(_ sql: String, data: [UInt8]) async throws -> Int {
        try await cancellable { [shared] in
            try await onThread { handle in try handle.copyIn(sql: sql, data: data, shared: shared) }
        }
    }

    // MARK: Notifications (LISTEN/NOTIFY)

    /// Subscribes this connection to `channels` (`LISTEN`); the names are quoted as identifiers.
    func listen(_ channels: [String]) async throws {
        let sql = channels.map { "LISTEN \(PostgresIdentifier.quoted($0))" }.joined(separator: "; ")
        try await onThread { [shared] handle in
            try handle.simple(sql: sql, shared: shared)
        }
    }

    /// Waits up to `timeout` for notifications on the channels this connection listens to and returns those that
    /// arrived (possibly none). The owner thread blocks in `poll` meanwhile, which wakes the moment the server sends
    /// something, so a notification is handed on as soon as it arrives. Throws `.connectionLost` when the
    /// connection breaks (notifications sent meanwhile are lost: listen again and rescan).
    func notifications(timeout: Duration) async throws -> [PostgresNotification] {
        try await onThread { [shared] handle in
            try handle.waitForNotifications(timeout: timeout, shared: shared)
        }
    }

    /// Closes the connection (`PQfinish`) and stops its thread.
    func close() async {
        shared.freeCancel()
        _ = try? await onThread { handle in handle.finish() }
        try? await thread.shutdownGracefully()
        logger.debug("Postgres connection closed")
    }

    // MARK: Running on the owner thread

    private func onThread<T: Sendable>(
        _ body: @escaping @Sendable (ConnectionHandle) throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            thread.submit { [handle, shared] state in
                guard case .active = state else {
                    continuation.resume(throwing: PostgresError.poolClosed)
                    return
                }
                let taken = shared.withLock { flags in
                    guard !flags.inUse else { return false }
                    flags.inUse = true
                    return true
                }
                guard taken else {
                    continuation.resume(throwing: PostgresError.overlappingCalls)
                    return
                }
                let result = Result { try body(handle) }
                // Free before resuming: the resumed caller's next call may come at once, from another thread.
                shared.withLock { $0.inUse = false }
                continuation.resume(with: result)
            }
        }
    }

    /// Runs `operation`; if the task is cancelled meanwhile, asks the server to cancel the running statement
    /// (`PQcancel`, from a dispatch queue, since it opens a connection of its own), and reports the resulting
    /// "canceling statement due to user request" as `CancellationError`.
    private func cancellable<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        try Task.checkCancellation()
        do {
            return try await withTaskCancellationHandler {
                try await operation()
            } onCancel: { [shared] in
                DispatchQueue.global().async { shared.sendCancel() }
            }
        } catch let error as PostgresError where error.sqlState == "57014" && shared.withLock({ $0.cancelSent }) {
            throw CancellationError()
        }
    }
}

/// Thrown when a connection taken from the idle list turns out to be closed before anything was sent on it, so
/// the client can safely retry on another connection.
struct StaleConnectionError: Error {
    var underlying: PostgresError
}

/// Rows and the affected-row count of one statement.
struct QueryResult: Sendable {
    var rows: [PostgresRow]
    var affectedRows: Int
}

// MARK: - State shared across threads

/// Health flags plus the `PGcancel*`, guarded by a lock: the owner thread updates the flags, the pool reads them,
/// and a cancelling task uses the cancel handle from another thread (`PQcancel` is documented as thread-safe).
private final class SharedState: @unchecked Sendable {
    struct Flags {
        var broken = false
        var cancelSent = false
        var inTransaction = false
        var checkBeforeUse = false
        /// A call is using the connection: on the owner thread, or sent from a task and awaiting its results.
        var inUse = false
    }

    private let lock = NSLock()
    private var flags = Flags()
    private var cancel: OpaquePointer?  // PGcancel*, freed by freeCancel()

    func withLock<T>(_ body: (inout Flags) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&flags)
    }

    func setCancel(_ pointer: OpaquePointer?) {
        lock.lock()
        defer { lock.unlock() }
        cancel = pointer
    }

    func sendCancel() {
        lock.lock()
        defer { lock.unlock() }
        guard let cancel, !flags.broken else { return }
        flags.cancelSent = true
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(cancel, &buffer, Int32(buffer.count))
    }

    func freeCancel() {
        lock.lock()
        defer { lock.unlock() }
        if let cancel { PQfreeCancel(cancel) }
        cancel = nil
    }
}

// MARK: - The PGconn and what runs on its thread

/// Owns the `PGconn*` and the prepared-statement cache.
///
/// `@unchecked Sendable` because the box is handed between threads: the connection's own thread, a task sending a
/// prepared statement, and ``SocketPoller``'s thread collecting its results. The invariant that makes this safe is
/// that one call uses it at a time (``SharedState/Flags/inUse``), and each hands it on through a lock or a
/// continuation, so nothing here is touched by two threads at once.
private final class ConnectionHandle: @unchecked Sendable {
    private var connection: OpaquePointer?  // PGconn*, PQfinish'ed by finish()
    /// Statement name by SQL text plus parameter type OIDs (the types are fixed when a statement is prepared).
    private var statements: [String: String] = [:]
    private var nextStatementNumber = 1
    /// Prepared statements the server would no longer run (a schema change altered their result type); deallocated
    /// on the owner thread before the next one is prepared.
    private var unusableStatements: [String] = []
    /// The results of a statement sent by ``send(sql:parameters:shared:)``, as ``collect(shared:reading:then:)``
    /// reads them, and what ended the collecting if the connection failed; taken by ``finish(_:shared:)``.
    private var collected: [OpaquePointer] = []
    private var collectFailure: PostgresError?
    /// A bound on the cache, far above the number of distinct statements the application has.
    private static let maximumCachedStatements = 1000

    deinit { finish() }

    func open(configuration: PostgresConfiguration) throws {
        // Our defaults come first and the connection string (expanded from `dbname`) after them, so that its
        // settings win; client_encoding comes last because row decoding relies on UTF-8.
        var pairs = configuration.libpqDefaults
        pairs.append(("dbname", configuration.connectionString))
        pairs.append(("client_encoding", "UTF8"))
        let keywords = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            keywords.forEach { free($0) }
            values.forEach { free($0) }
        }
        let connection = withNullTerminated(keywords) { keywords in
            withNullTerminated(values) { values in PQconnectdbParams(keywords, values, 1) }
        }
        guard let connection else {
            throw PostgresError(code: .connectionFailed, message: "libpq could not allocate a connection")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.errorMessage(connection)
            PQfinish(connection)
            throw PostgresError(code: .connectionFailed, sqlState: "08001", message: message)
        }
        self.connection = connection
        // libpq prints notices (e.g. "relation already exists, skipping") to stderr by default; drop them.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)

        // Session settings the decoders rely on, plus the statement timeout.
        let milliseconds = configuration.statementTimeout.milliseconds
        let setup = """
            SET statement_timeout = \(milliseconds); SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
            SET bytea_output = 'hex'; SET extra_float_digits = 3
            """
        do {
            try simple(sql: setup, shared: nil)
        } catch {
            finish()
            if var error = error as? PostgresError {
                error.code = .connectionFailed
                throw error
            }
            throw error
        }
    }

    func makeCancel() -> OpaquePointer? {
        connection.flatMap { PQgetCancel($0) }
    }

    func finish() {
        if let connection { PQfinish(connection) }
        connection = nil
    }

    /// The live `PGconn*`. On the first use after the connection sat idle in the pool, first reads whatever
    /// arrived meanwhile without blocking: a server that restarted has closed the socket, and then this throws
    /// ``StaleConnectionError`` before anything was sent.
    private func requireConnection(_ shared: SharedState?) throws -> OpaquePointer {
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            shared?.withLock { $0.broken = true }
            throw PostgresError(code: .connectionLost, message: "the connection is closed")
        }
        let check = shared?.withLock { flags in
            defer { flags.checkBeforeUse = false }
            return flags.checkBeforeUse
        }
        // Twice: a server that shut down sent a FATAL message and then closed the socket, and the first read may
        // stop after the message; the second then sees end-of-file. Each read is one non-blocking recv().
        if check == true,
            PQconsumeInput(connection) == 0 || PQconsumeInput(connection) == 0
                || PQstatus(connection) != CONNECTION_OK
        {
            shared?.withLock { $0.broken = true }
            throw StaleConnectionError(
                underlying: PostgresError(code: .connectionLost, message: Self.errorMessage(connection))
            )
        }
        return connection
    }

    /// PQexecPrepared through the statement cache, preparing on first use. A cached statement the server no
    /// longer accepts (26000 after DEALLOCATE/DISCARD, or 0A000 "cached plan must not change result type" after
    /// a schema change) is dropped and prepared again once — when outside a transaction block, since inside one
    /// the error has already aborted the transaction.
    func run(sql: String, parameters: [PostgresValue], shared: SharedState) throws -> QueryResult {
        let connection = try requireConnection(shared)
        let types = parameters.map(\.typeOID)
        let key = Self.cacheKey(sql, types)

        var retried = false
        while true {
            let name = try prepared(key: key, sql: sql, types: types, connection: connection, shared: shared)
            let result = Self.withParameterValues(parameters) { count, values in
                PQexecPrepared(connection, name, count, values, nil, nil, 0)
            }
            defer { PQclear(result) }
            let status = result.map { PQresultStatus($0) } ?? PGRES_FATAL_ERROR
            switch status {
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
                updateTransactionState(connection, shared)
                return Self.decode(result!)
            default:
                let error = Self.error(from: result, connection: connection, shared: shared)
                updateTransactionState(connection, shared)
                guard !retried, forgetIfInvalidated(key: key, name: name, by: error),
                    PQtransactionStatus(connection) == PQTRANS_IDLE
                else { throw error }
                retried = true
            }
        }
    }

    /// The statement cache's key: the SQL text plus the parameters' type OIDs.
    private static func cacheKey(_ sql: String, _ types: [UInt32]) -> String {
        types.isEmpty ? sql : sql + "\u{0}" + types.map(String.init).joined(separator: ",")
    }

    /// Calls `body` with the parameters' text encodings as the C array libpq takes (NULL for SQL NULL), and their
    /// count.
    private static func withParameterValues<R>(
        _ parameters: [PostgresValue], _ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> R
    ) -> R {
        let values = parameters.map { $0.textEncoding.map { strdup($0) } ?? nil }
        defer { values.forEach { free($0) } }
        return values.withUnsafeBufferPointer { values in
            values.withMemoryRebound(to: UnsafePointer<CChar>?.self) { body(Int32($0.count), $0.baseAddress) }
        }
    }

    /// Whether `error` says the server no longer accepts the cached statement `name` (26000 after DEALLOCATE or
    /// DISCARD, 0A000 "cached plan must not change result type" after a schema change). If so, the statement leaves
    /// the cache, to be prepared again; after a 0A000 the old one is deallocated before the next prepare.
    private func forgetIfInvalidated(key: String, name: String, by error: PostgresError) -> Bool {
        let changedResult = error.sqlState == "0A000" && error.message.contains("cached plan")
        guard error.sqlState == "26000" || changedResult else { return false }
        statements[key] = nil
        if changedResult { unusableStatements.append(name) }
        return true
    }

    private func prepared(
        key: String,
        sql: String,
        types: [UInt32],
        connection: OpaquePointer,
        shared: SharedState
    ) throws -> String {
        if let name = statements[key] { return name }
        if !unusableStatements.isEmpty, PQtransactionStatus(connection) == PQTRANS_IDLE {
            for name in unusableStatements { try? simple(sql: "DEALLOCATE \(name)", shared: shared) }
            unusableStatements.removeAll()
        }
        if statements.count >= Self.maximumCachedStatements, PQtransactionStatus(connection) == PQTRANS_IDLE {
            try simple(sql: "DEALLOCATE ALL", shared: shared)
            statements.removeAll()
        }
        let name = "s\(nextStatementNumber)"
        nextStatementNumber += 1
        let result = PQprepare(connection, name, sql, Int32(types.count), types.isEmpty ? nil : types)
        defer { PQclear(result) }
        guard let result, PQresultStatus(result) == PGRES_COMMAND_OK else {
            let error = Self.error(from: result, connection: connection, shared: shared)
            updateTransactionState(connection, shared)
            throw error
        }
        statements[key] = name
        return name
    }

    // MARK: Prepared statements sent from a task

    /// A statement ``send(sql:parameters:shared:)`` sent: its cache key and prepared name.
    struct SentStatement {
        var key: String
        var name: String
    }

    /// Sends `sql` as the statement already prepared for it on this connection, in libpq's non-blocking mode, from
    /// the calling thread. Nil, and nothing sent, when it is not prepared here yet. Throws ``StaleConnectionError``
    /// like ``run(sql:parameters:shared:)``.
    func send(sql: String, parameters: [PostgresValue], shared: SharedState) throws -> SentStatement? {
        let key = Self.cacheKey(sql, parameters.map(\.typeOID))
        guard let name = statements[key] else { return nil }
        let connection = try requireConnection(shared)
        // Non-blocking, the call only queues the message (libpq's buffer grows as needed); `collect` writes it out.
        guard PQsetnonblocking(connection, 1) == 0 else {
            throw Self.error(from: nil, connection: connection, shared: shared)
        }
        let queued = Self.withParameterValues(parameters) { count, values in
            PQsendQueryPrepared(connection, name, count, values, nil, nil, 0)
        }
        guard queued == 1 else {
            let error = Self.error(from: nil, connection: connection, shared: shared)
            PQsetnonblocking(connection, 0)
            updateTransactionState(connection, shared)
            throw error
        }
        return SentStatement(key: key, name: name)
    }

    /// Writes out what is left of the sent statement and reads what has arrived (`reading`), keeping each complete
    /// result; calls `done` once the last result is in or the connection failed, and otherwise waits on
    /// ``SocketPoller`` for the socket and carries on from its thread.
    func collect(shared: SharedState, reading: Bool, then done: @escaping @Sendable () -> Void) {
        guard let connection else {
            collectFailure = PostgresError(code: .connectionLost, message: "the connection is closed")
            return done()
        }
        func fail() {
            shared.withLock { $0.broken = true }
            collectFailure = PostgresError(code: .connectionLost, message: Self.errorMessage(connection))
            done()
        }
        if reading, PQconsumeInput(connection) == 0 { return fail() }
        let readiness: SocketPoller.Readiness
        switch PQflush(connection) {
        case 0:
            while PQisBusy(connection) == 0 {
                guard let result = PQgetResult(connection) else { return done() }
                collected.append(result)
                let status = PQresultStatus(result)
                if status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH {
                    // A COPY sent as a statement (``copyIn(sql:data:shared:)`` is the way): libpq would return this
                    // result forever, and the connection stays in the COPY, so it is not used again.
                    shared.withLock { $0.broken = true }
                    collectFailure = PostgresError(
                        code: .invalidArgument, message: "COPY runs through copyIn, not as a statement")
                    return done()
                }
            }
            readiness = .readable
        case 1:
            // More to write: wait until the socket takes more, or the server sent something to read first.
            readiness = .writableOrReadable
        default:
            return fail()
        }
        do {
            try SocketPoller.shared.whenReady(PQsocket(connection), for: readiness) { [self] in
                collect(shared: shared, reading: true, then: done)
            }
        } catch {
            shared.withLock { $0.broken = true }
            collectFailure = error
            done()
        }
    }

    /// The outcome of a statement ``collect(shared:reading:then:)`` has finished collecting, as
    /// ``run(sql:parameters:shared:)`` reports it; nil when the server no longer accepts the cached statement and
    /// it must be prepared again, outside a transaction block (on the owner thread).
    func finish(_ statement: SentStatement, shared: SharedState) throws -> QueryResult? {
        let results = collected
        collected = []
        defer { results.forEach { PQclear($0) } }
        guard let connection else {
            throw PostgresError(code: .connectionLost, message: "the connection is closed")
        }
        PQsetnonblocking(connection, 0)
        updateTransactionState(connection, shared)
        if let failure = collectFailure {
            collectFailure = nil
            throw failure
        }
        // One statement of the extended protocol: one result (an error result when it failed).
        guard let result = results.first else {
            throw Self.error(from: nil, connection: connection, shared: shared)
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return Self.decode(result)
        default:
            let error = Self.error(from: result, connection: connection, shared: shared)
            guard forgetIfInvalidated(key: statement.key, name: statement.name, by: error),
                PQtransactionStatus(connection) == PQTRANS_IDLE
            else { throw error }
            return nil
        }
    }

    /// PQexec: no parameters, any number of statements; the result of the last one is checked.
    func simple(sql: String, shared: SharedState?) throws {
        let connection = try requireConnection(shared)
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        let status = result.map { PQresultStatus($0) } ?? PGRES_FATAL_ERROR
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            let error = Self.error(from: result, connection: connection, shared: shared)
            if let shared { updateTransactionState(connection, shared) }
            throw error
        }
        if let shared { updateTransactionState(connection, shared) }
        // COMMIT of a transaction that an earlier error aborted succeeds with the tag ROLLBACK.
        if sql == "COMMIT", let result, String(cString: PQcmdStatus(result)) == "ROLLBACK" {
            throw PostgresError(
                code: .server,
                sqlState: "25P02",
                message: "the transaction was aborted by an earlier error and has been rolled back"
            )
        }
    }

    /// Notifications already read, else those arriving within `timeout` (one `poll` on the socket).
    func waitForNotifications(timeout: Duration, shared: SharedState) throws -> [PostgresNotification] {
        let connection = try requireConnection(shared)
        func consume() throws {
            guard PQconsumeInput(connection) == 1, PQstatus(connection) == CONNECTION_OK else {
                shared.withLock { $0.broken = true }
                throw PostgresError(code: .connectionLost, message: Self.errorMessage(connection))
            }
        }
        func drain() -> [PostgresNotification] {
            var notifications: [PostgresNotification] = []
            while let notify = PQnotifies(connection) {
                notifications.append(
                    PostgresNotification(
                        channel: String(cString: notify.pointee.relname),
                        payload: String(cString: notify.pointee.extra),
                        processID: Int(notify.pointee.be_pid)))
                PQfreemem(notify)
            }
            return notifications
        }
        try consume()
        let ready = drain()
        if !ready.isEmpty { return ready }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: max(0, timeout.milliseconds))
        if poll(&descriptor, 1, milliseconds) < 0, errno != EINTR {
            shared.withLock { $0.broken = true }
            throw PostgresError(code: .connectionLost, message: "waiting for notifications failed: errno \(errno)")
        }
        try consume()
        return drain()
    }

    /// Bytes handed to `PQputCopyData` per call: large enough that the call overhead vanishes, small enough that
    /// libpq's output buffer does not have to grow to the size of a whole batch.
    private static let copyChunkSize = 256 * 1024

    /// COPY FROM STDIN: PQexec starts it, PQputCopyData streams the rows, PQputCopyEnd finishes it, and PQgetResult
    /// returns its outcome. The server treats the exchange as one statement, so `statement_timeout` bounds it. A
    /// server error in the middle (e.g. a unique violation) is reported only after the end: the server discards
    /// the rest of the data, and the COPY's final result carries the error.
    func copyIn(sql: String, data: [UInt8], shared: SharedState) throws -> Int {
        let connection = try requireConnection(shared)
        let start = PQexec(connection, sql)
        guard let start, PQresultStatus(start) == PGRES_COPY_IN else {
            defer { PQclear(start) }
            let error = Self.error(from: start, connection: connection, shared: shared)
            updateTransactionState(connection, shared)
            if start.map({ PQresultStatus($0) == PGRES_COMMAND_OK || PQresultStatus($0) == PGRES_TUPLES_OK }) == true {
                throw PostgresError(code: .invalidArgument, message: "the statement is not a COPY FROM STDIN")
            }
            throw error
        }
        PQclear(start)

        var sent = data.withUnsafeBytes { bytes -> Bool in
            guard var base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self) else { return true }
            var remaining = bytes.count
            while remaining > 0 {
                let length = min(remaining, Self.copyChunkSize)
                // Blocking mode: 1 means queued (and flushed as needed), -1 means the connection failed.
                guard PQputCopyData(connection, base, Int32(length)) == 1 else { return false }
                base += length
                remaining -= length
            }
            return true
        }
        if sent { sent = PQputCopyEnd(connection, nil) == 1 }

        var copied = 0
        var failure: PostgresError?
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_COMMAND_OK:
                copied = Int(String(cString: PQcmdTuples(result))) ?? 0
            case PGRES_COPY_IN:
                // Still in COPY state, so sending failed part-way; PQgetResult would return this forever. Abort the
                // COPY, and if even that cannot be sent, the connection is unusable.
                failure =
                    failure ?? PostgresError(code: .connectionLost, message: Self.errorMessage(connection))
                if PQputCopyEnd(connection, "c2d: sending COPY data failed") != 1 {
                    shared.withLock { $0.broken = true }
                    updateTransactionState(connection, shared)
                    throw failure!
                }
            default:
                failure = failure ?? Self.error(from: result, connection: connection, shared: shared)
            }
        }
        updateTransactionState(connection, shared)
        if let failure { throw failure }
        if !sent {
            shared.withLock { $0.broken = true }
            throw PostgresError(code: .connectionLost, message: Self.errorMessage(connection))
        }
        return copied
    }

    private func updateTransactionState(_ connection: OpaquePointer, _ shared: SharedState) {
        let status = PQtransactionStatus(connection)
        let broken = PQstatus(connection) != CONNECTION_OK
        shared.withLock { flags in
            flags.inTransaction = status != PQTRANS_IDLE
            if broken { flags.broken = true }
        }
    }

    // MARK: Results and errors

    private static func decode(_ result: OpaquePointer) -> QueryResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let names = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        let columns = PostgresRow.Columns(names: names)
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) != 0 {
                    values.append(nil)
                } else {
                    values.append(String(cString: PQgetvalue(result, row, column)))
                }
            }
            rows.append(PostgresRow(columns: columns, values: values))
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return QueryResult(rows: rows, affectedRows: affected)
    }

    /// The error for a failed result (or a missing one), classified: if libpq now reports the connection as bad,
    /// or the server said it is terminating the session, it is `.connectionLost`.
    private static func error(
        from result: OpaquePointer?,
        connection: OpaquePointer,
        shared: SharedState?
    ) -> PostgresError {
        func field(_ code: Unicode.Scalar) -> String? {
            guard let result, let value = PQresultErrorField(result, Int32(UInt8(ascii: code))) else { return nil }
            return String(cString: value)
        }
        let sqlState = field("C")
        let terminated = sqlState.map { $0.hasPrefix("08") || $0.hasPrefix("57P") } ?? false
        let broken = PQstatus(connection) != CONNECTION_OK || terminated
        if broken { shared?.withLock { $0.broken = true } }
        let primary =
            field("M") ?? result.map { String(cString: PQresultErrorMessage($0)) }.flatMap {
                $0.isEmpty ? nil : $0
            } ?? errorMessage(connection)
        return PostgresError.fromServer(
            sqlState: sqlState,
            primary: primary,
            detail: field("D"),
            constraint: field("n"),
            connectionBroken: broken
        )
    }

    private static func errorMessage(_ connection: OpaquePointer) -> String {
        guard let message = PQerrorMessage(connection) else { return "unknown libpq error" }
        let text = String(cString: message).trimmingTrailingNewlines()
        return text.isEmpty ? "unknown libpq error" : text
    }
}

/// Calls `body` with a NULL-terminated C array of the given pointers.
private func withNullTerminated<R>(
    _ pointers: [UnsafeMutablePointer<CChar>?],
    _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R
) -> R {
    let terminated = pointers.map { UnsafePointer($0) } + [nil]
    return terminated.withUnsafeBufferPointer { body($0.baseAddress!) }
}
