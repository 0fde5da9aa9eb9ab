import Domain
import Logging
import Persistence
import ServiceLifecycle

/// Refreshes `environments.last_seen` for this scheduler's environments, so the reconciler's duty 12 hides only
/// environments that no running scheduler serves any more; also removes the rows of workers that died without
/// unregistering, long after they stopped counting as live.
package struct EnvironmentHeartbeat: Service {
    let store: PostgresJobStore
    let environments: [ComputeEnvironment]
    let interval: Duration
    let logger: Logger

    /// `interval` is best a fraction of the planner's `environmentStaleAfter`, so a live scheduler never looks stale.
    package init(store: PostgresJobStore, environments: [ComputeEnvironment], interval: Duration, logger: Logger) {
        self.store = store
        self.environments = environments
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { break }
                do {
                    try await store.upsertEnvironments(environments)
                    // Workers that died without unregistering: long past counting as live, so only the row goes.
                    try await store.removeStaleWorkers(olderThan: .seconds(3600))
                } catch {
                    logger.warning("refreshing environments failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
