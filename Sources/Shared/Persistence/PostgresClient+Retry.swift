import Logging

extension PostgresClient {
    /// Transaction isolation levels, for `withRetryingTransaction`.
    package enum IsolationLevel: String, Sendable {
        case readCommitted = "READ COMMITTED"
        case repeatableRead = "REPEATABLE READ"
        case serializable = "SERIALIZABLE"
    }

    /// Runs `body` in a transaction at `isolation` and runs it again, whole, when Postgres aborts it with a
    /// serialization failure or a deadlock (40001, 40P01): under SERIALIZABLE that is the expected way to lose a
    /// race, not an error. Backs off with jitter between attempts; after `maxAttempts` the failure is thrown.
    package func withRetryingTransaction<T: Sendable>(
        isolation: IsolationLevel = .serializable, maxAttempts: Int = 5,
        _ body: (PostgresTransaction) async throws -> T
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await withTransaction { transaction in
                    try await transaction.executeScript("SET TRANSACTION ISOLATION LEVEL \(isolation.rawValue)")
                    return try await body(transaction)
                }
            } catch let error as PostgresError where error.isSerializationFailure && attempt < maxAttempts {
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 << attempt))))
            }
        }
    }
}
