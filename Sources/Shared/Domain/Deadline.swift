/// Raised when an operation did not finish within its time limit.
public struct DeadlineExceeded: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var limit: Duration

    public init(operation: String, limit: Duration) {
        self.operation = operation
        self.limit = limit
    }

    public var description: String { "\(operation) did not finish within \(limit)" }
}

/// Runs `body`, cancelling it and throwing `DeadlineExceeded` if it takes longer than `limit`: every external
/// call in c2d has a time limit (DESIGN §6.3).
public func withDeadline<T: Sendable>(
    _ limit: Duration, operation: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw DeadlineExceeded(operation: operation, limit: limit)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
