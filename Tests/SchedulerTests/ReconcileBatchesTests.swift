import Domain
import Foundation
import Kubernetes
import Persistence
import Testing

@testable import Scheduler

@Suite("Reconcile batches: what a terminal action records")
struct ReconcileBatchesTests {
    let job = JobID()

    @Test("each finishing action records Ocean's status, outcome, stopreq and which uploads become results")
    func terminalRecords() throws {
        let cases: [(ReconcileAction, JobStatus, JobOutcome, Int?, PostgresReconcileStore.ResultCopy)] = [
            (.failPoison(jobID: job, attempt: 2, lapses: 5), .finished, .failed, nil, .logs),
            (.failLost(jobID: job, attempt: 3), .finished, .failed, nil, .none),
            (.timeOut(jobID: job, attempt: 1, deleteObjects: true), .finished, .timedOut, 2, .all),
            (.finalizeStop(jobID: job, attempt: 1, deleteObjects: false), .finished, .stopped, 1, .logs),
            (.expireInQueue(jobID: job), .expiredInQueue, .failed, nil, .none),
        ]
        for (action, status, outcome, stopRequest, results) in cases {
            let record = try #require(action.terminalRecord, "\(action)")
            #expect(record.kind == action.kind)
            #expect(record.termination.status == status && record.termination.outcome == outcome)
            #expect(record.termination.stopRequest == stopRequest && record.termination.results == results)
        }
        let poison = try #require(ReconcileAction.failPoison(jobID: job, attempt: 2, lapses: 5).terminalRecord)
        #expect(poison.termination.reason == "poison: 5 workers were lost while running this job")
    }

    @Test("actions that do not finish a job are grouped by the write they need")
    func grouping() {
        let key = AttemptKey(jobID: job, attempt: 1)
        let batches = ReconcileBatches([
            .handOver(jobID: job, environment: "e", attempt: 1, workerID: "w"),
            .retryLost(jobID: job, environment: "e", attempt: 1),
            .deleteOrphan(key, reason: .unknownJob),
            .removeResults(jobID: job),
            .hideEnvironment(id: "old"), .showEnvironment(id: "back"),
            .expireInQueue(jobID: job),
        ])
        #expect(batches.handOver.count == 1 && batches.retry.count == 1 && batches.orphans == [key])
        #expect(batches.removals == [job] && batches.hide == ["old"] && batches.show == ["back"])
        #expect(batches.terminations.map(\.kind) == [.expireInQueue])
    }
}
