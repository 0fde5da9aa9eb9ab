import Domain
import Foundation

/// The worker's settings, with defaults for one machine.
package struct WorkerConfiguration: Sendable {
    /// This worker's identity in claims and logs. Default: host name, process id and a random suffix.
    package var workerID: String
    /// The environments whose queues this worker consumes.
    package var environments: [ComputeEnvironment]
    /// Jobs this worker runs (or, on Kubernetes, monitors) at once; registered for the dispatcher. No default here:
    /// `C2D_WORKER_SLOTS`'s default depends on the executor (the machine's cores locally, 10,000 on Kubernetes).
    package var slots: Int
    /// Most deliveries a consumer is sent before its claims are acknowledged; at most the free slots. Default 64.
    package var maximumPrefetch: Int
    /// What runs the jobs (`local` or `kubernetes`), as the worker registers itself. Default `local`.
    package var executorKind: String
    /// How long a claim holds a job without renewal; renewed every third of it. Default 30 s.
    package var leaseDuration: Duration
    /// How long in-flight jobs may keep running after shutdown begins before they are handed back. Default 20 s.
    package var shutdownGracePeriod: Duration
    /// Fault injection for tests of at-least-once delivery: exit the process right after a claim commits, before
    /// the job is launched and its message acknowledged. Never set in production. Default false.
    package var exitAfterClaimForTesting: Bool

    package init(
        workerID: String = WorkerConfiguration.defaultWorkerID(), environments: [ComputeEnvironment] = [.oceanCompute],
        slots: Int, maximumPrefetch: Int = 64, executorKind: String = "local",
        leaseDuration: Duration = .seconds(30), shutdownGracePeriod: Duration = .seconds(20),
        exitAfterClaimForTesting: Bool = false
    ) {
        self.workerID = workerID
        self.environments = environments
        self.slots = slots
        self.maximumPrefetch = maximumPrefetch
        self.executorKind = executorKind
        self.leaseDuration = leaseDuration
        self.shutdownGracePeriod = shutdownGracePeriod
        self.exitAfterClaimForTesting = exitAfterClaimForTesting
    }

    package static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max) % 100_000)"
    }
}
