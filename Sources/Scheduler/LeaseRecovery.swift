import Domain
import Logging
import Persistence
import ServiceLifecycle

/// Keeps jobs moving when a worker dies: a job whose lease lapsed (plus a grace period, so a worker that is
/// only slow to renew is not raced) is queued again for another worker, which claims it as a new attempt
/// (DESIGN §2.6). Without it, a job acknowledged by a worker that then crashed would wait forever.
package final class LeaseRecovery: Service, Sendable {
    package struct Configuration: Sendable {
        /// Time between passes. Default 2 s.
        package var interval: Duration
        /// How long after a lease expired its job is handed over. Default 10 s.
        package var grace: Duration

        package init(interval: Duration = .seconds(2), grace: Duration = .seconds(10)) {
            self.interval = interval
            self.grace = grace
        }
    }

    let configuration: Configuration
    let store: PostgresJobStore
    let logger: Logger

    package init(configuration: Configuration = Configuration(), store: PostgresJobStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
    }

    package func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await runOnce()
            } catch {
                logger.warning("lease recovery pass failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: configuration.interval)
        }
    }

    /// One pass; returns the jobs handed to another worker.
    @discardableResult
    package func runOnce() async throws -> [JobID] {
        let jobs = try await store.requeueExpiredLeases(grace: configuration.grace)
        for job in jobs {
            logger.warning("worker lease expired; job queued for another worker", metadata: ["job": "\(job)"])
        }
        return jobs
    }
}
