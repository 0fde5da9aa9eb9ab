import Logging
import Persistence

/// How `c2d bench clean` tells a running bench's environment from a killed one's: the bench holds a lock named after
/// its environment (``PostgresJobStore/holdBenchEnvironment(_:)``) on a connection of its own, from before it makes
/// the environment until it has removed it.
struct BenchEnvironmentLock: Sendable {
    private let client: PostgresClient

    /// Takes the lock of `environmentID`, which no environment has yet, on a new connection.
    static func take(_ environmentID: String, postgres: PostgresConfiguration) async throws -> BenchEnvironmentLock {
        var configuration = postgres
        configuration.minimumConnections = 1
        configuration.maximumConnections = 1
        var logger = Logger(label: "c2d.bench")
        logger.logLevel = .warning
        let client = PostgresClient(configuration: configuration, logger: logger)
        let taken: Bool
        do {
            taken = try await PostgresJobStore(client: client).holdBenchEnvironment(environmentID)
        } catch {
            await client.shutdown()
            throw error
        }
        guard taken else {
            await client.shutdown()
            throw BenchError(
                code: .environmentLocked,
                message: "another running bench holds the lock that \(environmentID) hashes to; run the bench again")
        }
        return BenchEnvironmentLock(client: client)
    }

    /// Lets the lock go, once the bench has removed its environment. A bench that exits without calling this lets
    /// it go all the same, with its connection.
    func release() async {
        await client.shutdown()
    }
}
