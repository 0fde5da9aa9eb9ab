import Domain
import Foundation
import Persistence
import Testing

@testable import Worker

@Suite("Claim decisions")
struct ClaimDecisionTests {
    static let job = Job(
        id: JobID(), environment: "env", owner: "o", attempt: 1,
        workflow: Workflow(stages: [
            .init(input: [], algorithm: .init(rawcode: "print(1)", container: .init(entrypoint: "python3 $ALGO")))
        ]))

    @Test func eachClaimResultHasOneDecision() {
        let held = Date().addingTimeInterval(30)
        #expect(ClaimDecision.decide(.claimed(Self.job), workerID: "me", runningHere: false) == .run(Self.job))
        // Another live worker runs it: drop; if it dies, the scheduler hands the job over.
        #expect(
            ClaimDecision.decide(.heldByLiveWorker(until: held, workerID: "other"), workerID: "me", runningHere: false)
                == .drop(reason: "a live worker runs the job"))
        // Our own lease on a job we run: a duplicate message.
        #expect(
            ClaimDecision.decide(.heldByLiveWorker(until: held, workerID: "me"), workerID: "me", runningHere: true)
                == .drop(reason: "a duplicate message for a job this worker runs"))
        // Our own lease on a job we do not run: our claim committed but its reply was lost; run it.
        #expect(
            ClaimDecision.decide(.heldByLiveWorker(until: held, workerID: "me"), workerID: "me", runningHere: false)
                == .runOwnClaim)
        for result in [PostgresJobStore.ClaimResult.notAdmitted, .finished, .notFound] {
            guard case .drop = ClaimDecision.decide(result, workerID: "me", runningHere: false) else {
                Issue.record("\(result) must be dropped")
                continue
            }
        }
    }
}
