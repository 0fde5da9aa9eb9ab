import Domain
import Foundation
import Logging
import NIOPosix
import Persistence
import ServiceLifecycle

/// Removes local workspaces that no running attempt owns: a worker killed mid-job leaves its attempt's
/// `<jobID>-<attempt>` directory behind (the attempt is handed over and runs again as a new attempt, elsewhere).
/// Runs when the worker starts and then every `interval` (default a minute: a dead worker's job is handed over
/// about a lease after its death, and only then is its workspace stale); several workers sharing one work
/// directory agree, since a workspace is kept exactly while its job is unfinished at that attempt.
package struct WorkspaceJanitor: Service {
    let root: URL
    let store: PostgresJobStore
    let interval: Duration
    let logger: Logger

    package init(root: URL, store: PostgresJobStore, interval: Duration = .seconds(60), logger: Logger) {
        self.root = root
        self.store = store
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let removed = try await sweep()
                    if removed > 0 { logger.info("removed stale workspaces", metadata: ["count": "\(removed)"]) }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("sweeping stale workspaces failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Removes the workspaces whose job is finished, unknown or on another attempt; returns how many.
    @discardableResult
    package func sweep() async throws -> Int {
        let root = self.root
        let names = try await NIOThreadPool.singleton.runIfActive {
            (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        }
        let workspaces: [(name: String, jobID: JobID, attempt: Int)] = names.compactMap { name in
            guard let dash = name.lastIndex(of: "-"), let attempt = Int(name[name.index(after: dash)...]),
                let jobID = JobID(String(name[..<dash]))
            else { return nil }
            return (name, jobID, attempt)
        }
        guard !workspaces.isEmpty else { return 0 }
        let current = try await store.currentAttempts(of: workspaces.map(\.jobID))
        let stale = workspaces.filter { current[$0.jobID] != $0.attempt }.map(\.name)
        try await NIOThreadPool.singleton.runIfActive {
            for name in stale { try? FileManager.default.removeItem(at: root.appendingPathComponent(name)) }
        }
        return stale.count
    }
}
