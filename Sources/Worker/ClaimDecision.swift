import Domain
import Persistence

/// What a worker does with a job message once it tried to claim the job: a pure function of the claim's result, so
/// every branch is table-tested without a broker or a database.
enum ClaimDecision: Sendable, Equatable {
    /// Acknowledge the message and run the attempt.
    case run(Job)
    /// This worker holds the job but does not run it: its claim committed and the reply was lost (the retry found
    /// its own lease). Read the job, acknowledge the message and run it.
    case runOwnClaim
    /// Acknowledge and drop the message: nothing is to be done with it here (finished, unknown, not admitted yet, or
    /// a live worker — possibly this one — runs it; if that worker dies, the scheduler hands the job over).
    case drop(reason: String)

    static func decide(_ result: PostgresJobStore.ClaimResult, workerID: String, runningHere: Bool) -> ClaimDecision {
        switch result {
        case .claimed(let job):
            return .run(job)
        case .heldByLiveWorker(_, let owner) where owner == workerID:
            return runningHere ? .drop(reason: "a duplicate message for a job this worker runs") : .runOwnClaim
        case .heldByLiveWorker:
            return .drop(reason: "a live worker runs the job")
        case .notAdmitted:
            return .drop(reason: "the job is not admitted yet; the dispatcher publishes it when it is")
        case .finished:
            return .drop(reason: "the job has finished")
        case .notFound:
            return .drop(reason: "no such job")
        }
    }
}
