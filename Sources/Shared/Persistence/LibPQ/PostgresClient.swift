import Logging

/// A pooled Postgres client over libpq.
///
/// Each statement runs on a connection from the pool, with bound parameters and a per-connection cache of prepared
/// statements. After a server restart or a network failure, the statements in flight fail with
/// ``PostgresError/Code/connectionLost`` (``PostgresError/isTransient``); the broken connections are dropped and
/// later calls open fresh ones, so the client never needs to be recreated.
package final class PostgresClient: Sendable {
    private let pool: ConnectionPool
    let configuration: PostgresConfiguration
    let logger: Logger
    private let maximumConnections: Int

    package init(configuration: PostgresConfiguration, logger: Logger) {
        self.pool = ConnectionPool(configuration: configuration, logger: logger)
        self.configuration = configuration
        self.logger = logger
        self.maximumConnections = configuration.maximumConnections
    }

    /// Runs one statement with bound parameters (`$1`, `$2` …) and returns all rows.
    package func query(_ sql: String, _ parameters: [PostgresValue] = []) async throws -> [PostgresRow] {
        try await withConnection { connection in
            try await connection.query(sql, parameters).rows
        }
    }

    /// Runs one statement with bound parameters and returns the number of rows it affected.
    @discardableResult
    package func execute(_ sql: String, _ parameters: [PostgresValue] = []) async throws -> Int {
        try await withConnection { connection in
            try await connection.query(sql, parameters).affectedRows
        }
    }

    /// Runs SQL without parameters, possibly several statements (`PQexec`); for migrations and setup scripts.
    /// Without an explicit transaction in the script, libpq runs all its statements in one implicit transaction.
    package func executeScript(_ sql: String) async throws {
        try await withConnection { connection in
            try await connection.script(sql)
        }
    }

    /// Runs `body` between BEGIN and COMMIT on one connection. If `body` throws, or the task is cancelled, the
    /// transaction is rolled back and the error rethrown. The connection goes back to the pool afterwards, or is
    /// closed if it broke.
    @discardableResult
    package func withTransaction<T: Sendable>(
        _ body: (PostgresTransaction) async throws -> T
    ) async throws -> T {
        try await withConnection { connection in
            try await connection.script("BEGIN")
            let transaction = PostgresTransaction(connection: connection)
            let value: T
            do {
                value = try await body(transaction)
                try Task.checkCancellation()
            } catch {
                do {
                    try await connection.simpleQuery("ROLLBACK")
                } catch {
                    logger.debug("ROLLBACK failed; the connection will be discarded", metadata: ["error": "\(error)"])
                }
                throw error
            }
            try await connection.simpleQuery("COMMIT")
            return value
        }
    }

    /// Runs `body` on one connection outside any transaction block: each statement commits on its own. For what
    /// cannot run in a transaction (`DROP INDEX CONCURRENTLY`) and needs session state between statements (a session
    /// advisory lock). The connection goes back to the pool afterwards.
    package func withSession<T: Sendable>(_ body: (PostgresTransaction) async throws -> T) async throws -> T {
        try await withConnection { connection in
            try await body(PostgresTransaction(connection: connection))
        }
    }

    /// Closes idle connections, fails waiting callers, and makes every later call throw
    /// ``PostgresError/Code/poolClosed``. Connections in use close when their call finishes.
    package func shutdown() async {
        await pool.shutdown()
    }

    /// Leases a connection for `body`. If the connection turns out to have been closed while idle (detected
    /// before anything is sent), `body` runs again on another one.
    private func withConnection<T: Sendable>(
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try Task.checkCancellation()
        var attempt = 0
        while true {
            let connection = try await pool.acquire()
            do {
                let value = try await body(connection)
                await pool.release(connection)
                return value
            } catch let error as StaleConnectionError {
                await pool.release(connection)
                attempt += 1
                logger.debug("Postgres connection was closed while idle", metadata: ["error": "\(error.underlying)"])
                if attempt > maximumConnections { throw error.underlying }
            } catch {
                await pool.release(connection)
                throw error
            }
        }
    }
}

/// A transaction in progress, bound to one connection; valid only inside the
/// ``PostgresClient/withTransaction(_:)`` body that received it.
package struct PostgresTransaction: Sendable {
    let connection: PostgresConnection

    /// Runs one statement with bound parameters and returns all rows.
    package func query(_ sql: String, _ parameters: [PostgresValue] = []) async throws -> [PostgresRow] {
        try await unwrapStale { try await connection.query(sql, parameters).rows }
    }

    /// Runs one statement with bound parameters and returns the number of rows it affected.
    @discardableResult
    package func execute(_ sql: String, _ parameters: [PostgresValue] = []) async throws -> Int {
        try await unwrapStale { try await connection.query(sql, parameters).affectedRows }
    }

    /// Runs SQL without parameters, possibly several statements.
    package func executeScript(_ sql: String) async throws {
        try await connection.script(sql)
    }

    /// Inside a transaction there is nothing to retry: a stale connection is simply lost.
    private func unwrapStale<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as StaleConnectionError {
            throw error.underlying
        }
    }
}
