import Foundation
import Synchronization

/// The running side of a job's steps, as the worker sees them.
///
/// The worker calls ``start(_:ended:)`` once per claimed attempt; the attempt's ending is handed to `ended`, once.
/// Meanwhile the worker reports what ends an attempt from outside (a stop request, a lost lease, the end of the
/// shutdown grace period) through the attempt's ``AttemptControl``, and progress flows back through
/// ``AttemptRun/progress``. In `ended` the worker records the ending (`finish`, or hands the job back).
///
/// An executor that runs an attempt in a task (the local sandbox) implements ``run(_:)``: `start` then runs it and
/// calls `ended` in the calling task. One that follows attempts as values in a state machine (Kubernetes)
/// implements `start` itself: it returns once the attempt is launched and calls `ended` later on a task of its
/// own, so no task waits per attempt.
package protocol Executor: Sendable {
    /// Runs the attempt to its end in the calling task.
    func run(_ attempt: AttemptRun) async -> AttemptEnding
    /// Starts the attempt; `ended` is called exactly once with how it ended (in the calling task, or later).
    func start(_ attempt: AttemptRun, ended: @escaping @Sendable (AttemptEnding) async -> Void) async
    /// Called after the worker recorded the ending (a finished attempt's terminal status committed), for clean-up
    /// that must not happen before it.
    func attemptRecorded(_ claim: JobClaim, ending: AttemptEnding) async
}

extension Executor {
    package func start(_ attempt: AttemptRun, ended: @escaping @Sendable (AttemptEnding) async -> Void) async {
        await ended(await run(attempt))
    }

    package func attemptRecorded(_ claim: JobClaim, ending: AttemptEnding) async {}
}

/// One claimed attempt handed to an executor. A class: it is passed down and held while the attempt runs, and a
/// reference keeps the job and its environment once instead of in every frame that waits.
package final class AttemptRun: Sendable {
    package let job: Job
    package let environment: ComputeEnvironment
    /// Records a status change; throws ``AttemptSuperseded`` once the attempt no longer holds the job.
    package let progress: @Sendable (JobStatus) async throws -> Void
    package let control: AttemptControl

    package init(
        job: Job, environment: ComputeEnvironment, progress: @escaping @Sendable (JobStatus) async throws -> Void,
        control: AttemptControl
    ) {
        self.job = job
        self.environment = environment
        self.progress = progress
        self.control = control
    }
}

/// How an attempt ended, for the worker to record.
package enum AttemptEnding: Sendable, Hashable {
    /// Record this terminal result.
    case finished(ExecutionResult)
    /// Give the job back to the queue without finishing it (shutdown); with Kubernetes its objects keep running
    /// for the worker that adopts the attempt.
    case handBack
    /// The attempt no longer holds the job (taken over, or finished by someone else): write nothing.
    case lostLease(String)
}

/// What ends an attempt from outside its executor.
package enum AttemptInterruption: Sendable, Hashable {
    /// Ocean's stopreq 1 was set: stop in whatever step, keep the logs, record `stopped`.
    case stopRequested
    /// The attempt no longer holds the job: stop without writing.
    case leaseLost(String)
    /// The worker is shutting down and the grace period is over: hand the job back.
    case shutdown
}

/// A progress write was refused because the attempt no longer holds the job (the store's fencing).
package struct AttemptSuperseded: Error, Sendable, CustomStringConvertible {
    package var reason: String
    package init(reason: String) { self.reason = reason }
    package var description: String { reason }
}

/// Carries interruptions to one running attempt: the worker calls ``interrupt(_:)``, the executor installs a
/// handler with ``onInterrupt(_:)``. The first interruption wins (a stop stays a stop). No task is needed to wait.
package final class AttemptControl: Sendable {
    private struct State {
        var interruption: AttemptInterruption?
        var handler: (@Sendable (AttemptInterruption) -> Void)?
    }

    private let state = Mutex(State())

    package init() {}

    package var interruption: AttemptInterruption? { state.withLock { $0.interruption } }

    /// Delivers `interruption` unless one was delivered already.
    package func interrupt(_ interruption: AttemptInterruption) {
        let handler = state.withLock { state -> (@Sendable (AttemptInterruption) -> Void)? in
            guard state.interruption == nil else { return nil }
            state.interruption = interruption
            return state.handler
        }
        handler?(interruption)
    }

    /// Installs the handler; it is called at once if the attempt was already interrupted, and at most once.
    package func onInterrupt(_ handler: @escaping @Sendable (AttemptInterruption) -> Void) {
        let pending = state.withLock { state -> AttemptInterruption? in
            state.handler = handler
            return state.interruption
        }
        if let pending { handler(pending) }
    }
}

/// An executor that runs an attempt in the calling task and is stopped by cancelling that task (the local sandbox).
/// ``run(_:)`` comes for free: the execution runs next to a wait for an interruption, which cancels it.
package protocol TaskExecutor: Executor {
    /// Runs configure → algorithm → publish, calling `progress` on each status change, and returns the truthful end
    /// of it. It must not throw for a failure of the job itself (that is an `ExecutionResult`); it throws only when
    /// the execution could not be carried out at all. Cancelled, it stops the attempt and returns its stopped
    /// result (logs published) or throws `CancellationError`.
    func execute(
        job: Job, environment: ComputeEnvironment, progress: @escaping @Sendable (JobStatus) async throws -> Void
    ) async throws -> ExecutionResult
}

extension TaskExecutor {
    package func run(_ attempt: AttemptRun) async -> AttemptEnding {
        let (interruptions, continuation) = AsyncStream.makeStream(of: AttemptInterruption.self)
        attempt.control.onInterrupt { interruption in
            continuation.yield(interruption)
            continuation.finish()
        }
        return await withTaskGroup(of: TaskAttemptEvent.self) { group in
            group.addTask {
                defer { continuation.finish() }
                do {
                    return .executed(
                        try await self.execute(
                            job: attempt.job, environment: attempt.environment, progress: attempt.progress))
                } catch let error as AttemptSuperseded {
                    return .superseded(error.reason)
                } catch is CancellationError {
                    return .cancelled
                } catch {
                    return .executed(
                        ExecutionResult(
                            status: .finished, outcome: .failed, failureReason: "execution failed: \(error)"))
                }
            }
            group.addTask {
                for await interruption in interruptions { return .interrupted(interruption) }
                return .watcherEnded
            }
            // The first decisive event wins; an interruption cancels the execution, which still returns its
            // (stopped) result with the logs published.
            var decided: AttemptInterruption?
            var ending: AttemptEnding?
            while let event = await group.next() {
                switch event {
                case .executed(var result):
                    switch decided {
                    case nil:
                        ending = .finished(result)
                    case .stopRequested?:
                        result.outcome = .stopped
                        result.stopRequest = 1
                        ending = .finished(result)
                    case .leaseLost(let reason)?:
                        ending = .lostLease(reason)
                    case .shutdown?:
                        ending = .handBack
                    }
                case .superseded(let reason):
                    ending = .lostLease(reason)
                case .interrupted(let interruption):
                    decided = decided ?? interruption
                    group.cancelAll()
                case .cancelled, .watcherEnded:
                    continue
                }
                if ending != nil { group.cancelAll() }
            }
            if let ending { return ending }
            switch decided {
            case .stopRequested?, nil:
                return .finished(
                    ExecutionResult(status: .finished, outcome: .stopped, failureReason: "stopped", stopRequest: 1))
            case .leaseLost(let reason)?:
                return .lostLease(reason)
            case .shutdown?:
                return .handBack
            }
        }
    }
}

/// What can happen to an attempt run by a ``TaskExecutor``.
private enum TaskAttemptEvent: Sendable {
    case executed(ExecutionResult)
    case superseded(String)
    case cancelled
    case interrupted(AttemptInterruption)
    case watcherEnded
}
