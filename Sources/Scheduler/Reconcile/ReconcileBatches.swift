import Domain
import Kubernetes
import Persistence

/// A plan's actions grouped the way the ``Reconciler`` applies them: in batches, one kind of write at a time.
struct ReconcileBatches: Sendable {
    var handOver: [(id: JobID, attempt: Int)] = []
    var retry: [(id: JobID, attempt: Int)] = []
    var terminations: [Terminating] = []
    var orphans: [AttemptKey] = []
    var interventions: [(AttemptKey, AttemptOutcome.Intervention)] = []
    var removals: [JobID] = []
    var hide: [String] = []
    var show: [String] = []

    init(_ actions: [ReconcileAction]) {
        for action in actions {
            if let terminal = action.terminalRecord {
                terminations.append(terminal)
                continue
            }
            switch action {
            case .handOver(let id, _, let attempt, _): handOver.append((id, attempt))
            case .retryLost(let id, _, let attempt): retry.append((id, attempt))
            case .intervene(let key, let intervention): interventions.append((key, intervention))
            case .deleteOrphan(let key, _): orphans.append(key)
            case .removeResults(let id): removals.append(id)
            case .hideEnvironment(let id): hide.append(id)
            case .showEnvironment(let id): show.append(id)
            case .failPoison, .failLost, .finalizeFromCluster, .timeOut, .finalizeStop, .expireInQueue: break
            }
        }
    }
}

/// A terminal record to write, with what must happen around it.
struct Terminating: Sendable {
    var kind: ReconcileAction.Kind
    var termination: PostgresReconcileStore.Termination
    /// The attempt whose missing step logs are archived first.
    var observed: ObservedAttempt?
    /// Delete the attempt's objects once the record committed.
    var deleteObjects = false
}

extension ReconcileAction {
    /// The terminal record an action that finishes the job writes: its status, outcome, reason and which of the
    /// attempt's uploads become results. Nil for the actions that do not finish a job.
    var terminalRecord: Terminating? {
        switch self {
        case .failPoison(let id, let attempt, let lapses):
            // Its objects, if any, go as orphans once the job is finished.
            Terminating(
                kind: .failPoison,
                termination: .init(
                    jobID: id, attempt: attempt, status: .finished, outcome: .failed,
                    reason: "poison: \(lapses) workers were lost while running this job", results: .logs))
        case .failLost(let id, let attempt):
            Terminating(
                kind: .failLost,
                termination: .init(jobID: id, attempt: attempt, status: .finished, outcome: .failed, reason: "lost"))
        case .finalizeFromCluster(let id, let attempt, let final, let observed):
            Terminating(
                kind: .finalizeFromCluster,
                termination: .init(
                    jobID: id, attempt: attempt, status: final.status, outcome: final.outcome,
                    reason: final.failureReason ?? final.outcome.rawValue, exitCode: final.exitCode,
                    oomKilled: final.oomKilled, stopRequest: final.stopRequest,
                    results: final.verdict.logsOnly ? .logs : .all),
                observed: observed, deleteObjects: observed.isLive)
        case .timeOut(let id, let attempt, let deleteObjects):
            Terminating(
                kind: .timeOut,
                termination: .init(
                    jobID: id, attempt: attempt, status: .finished, outcome: .timedOut,
                    reason: "algorithm exceeded its time limit", stopRequest: 2, results: .all),
                deleteObjects: deleteObjects)
        case .finalizeStop(let id, let attempt, let deleteObjects):
            Terminating(
                kind: .finalizeStop,
                termination: .init(
                    jobID: id, attempt: attempt, status: .finished, outcome: .stopped,
                    reason: "the job was stopped on request", stopRequest: 1, results: .logs),
                deleteObjects: deleteObjects)
        case .expireInQueue(let id):
            Terminating(
                kind: .expireInQueue,
                termination: .init(
                    jobID: id, attempt: 0, status: .expiredInQueue, outcome: .failed, reason: "expired in queue"))
        case .handOver, .retryLost, .intervene, .deleteOrphan, .removeResults, .hideEnvironment, .showEnvironment:
            nil
        }
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
