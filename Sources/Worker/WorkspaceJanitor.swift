import Logging
import ServiceLifecycle

/// Sweeps what killed workers left behind, every `interval` while the worker runs: a worker killed mid-job leaves its
/// attempt's workspace (and, where the host allows, its output volume and cgroup) behind; the attempt is handed over
/// and runs again elsewhere. The executor checks at start too; this catches workers that die while others run on.
package struct WorkspaceJanitor: Service {
    let sweep: @Sendable () async -> Int
    let interval: Duration
    let logger: Logger

    /// `sweep` removes what no live attempt owns and returns how much (``Runtime/LocalExecutor/removeStaleWorkspaces()``).
    package init(interval: Duration = .seconds(60), logger: Logger, sweep: @escaping @Sendable () async -> Int) {
        self.sweep = sweep
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { return }
                let removed = await sweep()
                if removed > 0 { logger.info("removed stale workspaces", metadata: ["count": "\(removed)"]) }
            }
        }
    }
}
