import Scheduler

/// The scheduler's settings (`C2D_SCHEDULER_*`, `C2D_DISPATCH_*`). Durations are seconds and may be fractional. The
/// planner's lease grace is `C2D_LEASE_GRACE_SECONDS` and its poison attempts `C2D_POISON_ATTEMPTS`, shared with the
/// workers and the poison handler.
package struct SchedulerSettings: Sendable {
    /// The leader lease; a standby takes over at most about this long after the leader died (immediately after a
    /// graceful shutdown, which releases it).
    package var leaderLease: Duration
    /// Interval, full-pass interval, batch size and the planner's graces.
    package var reconciler: Reconciler.Configuration
    /// Batch size, sweep interval, republish delay; a worker counts as gone after `C2D_LEASE_SECONDS` without
    /// refreshing its row.
    package var dispatcher: Dispatcher.Configuration
    /// Most bytes of one step's pod log archived by the scheduler.
    package var logLimitBytes: Int
    /// Items per Kubernetes list page.
    package var listPageSize: Int

    static func load(
        _ env: EnvironmentReader, leaseGrace: Duration, workerLease: Duration, poisonAttempts: Int
    ) throws(ConfigurationError) -> SchedulerSettings {
        var planner = ReconcilePlanner.Configuration(
            leaseGrace: leaseGrace,
            missingObjectGrace: try env.seconds(.schedulerMissingGraceSeconds, in: 0...86_400)!,
            orphanGrace: try env.seconds(.schedulerOrphanGraceSeconds, in: 0...86_400)!,
            timeoutGrace: try env.seconds(.schedulerTimeoutGraceSeconds, in: 0...86_400)!,
            maxAttempts: try env.integer(.schedulerMaxAttempts, in: 1...100)!,
            poisonAttempts: poisonAttempts,
            environmentStaleAfter: try env.seconds(.schedulerEnvironmentStaleSeconds, in: 1...86_400)!)
        // The worker's start time-out, so an attempt whose image never pulls ends the same whoever reads it.
        planner.startTimeout = try env.seconds(.imagePullTimeoutSeconds, in: 1...86_400)!
        let dispatcher = Dispatcher.Configuration(
            batchSize: try env.integer(.dispatchBatchSize, in: 1...10_000)!,
            sweepInterval: try env.seconds(.dispatchSweepSeconds, in: 0.01...3600)!,
            redispatchAfter: try env.seconds(.schedulerRepublishAfterSeconds, in: 1...86_400)!,
            workerStaleAfter: workerLease)
        let reconciler = Reconciler.Configuration(
            interval: try env.seconds(.schedulerReconcileIntervalSeconds, in: 0.01...3600)!,
            fullPassInterval: try env.seconds(.schedulerFullPassSeconds, in: 0...86_400)!,
            batchSize: try env.integer(.schedulerBatchSize, in: 1...100_000)!,
            planner: planner)
        return SchedulerSettings(
            leaderLease: try env.seconds(.schedulerLeaseSeconds, in: 1...3600)!,
            reconciler: reconciler,
            dispatcher: dispatcher,
            logLimitBytes: try env.integer(.schedulerLogLimitBytes, in: 1...1_073_741_824)!,
            listPageSize: try env.integer(.schedulerListPageSize, in: 1...100_000)!)
    }
}
