import Foundation

/// The one reading of an attempt's cluster state (docs/architecture.md, "Statuses and outcomes"): from the observed
/// containers to the job's progress, its terminal status, outcome, exit code, OOM flag and reason, and what must be
/// done to the cluster. Pure; the worker (while it monitors the attempt) and the scheduler (after its worker died)
/// both decide with it, so a job ends the same whoever finalizes it.
///
/// Rules, in order of precedence:
/// 1. A stop request ends the attempt as `finished`/`stopped` (stopreq 1) with its logs only; its objects are
///    deleted (the publish step then uploads the logs on SIGTERM). An attempt that had ended by itself, its pods
///    untouched, keeps its own end.
/// 2. configure: exit 0 → status 30; exit 32 → 32; OOM → 31 "ran out of memory"; any other exit → 31, the
///    reason being the termination message configure writes; an image that does not pull within the time-out → 11;
///    a container that cannot be created → 22. The algorithm never runs.
/// 3. algorithm: an image that does not pull → 11; a container that cannot start (`ContainerCannotRun`,
///    `StartError`, or a create error past the time-out) → 41; it ran past its time limit → `finished`/`timed_out`,
///    stopreq 2; OOM → `finished`/`failed` with `oom_killed`; exit 0 → `finished`/`succeeded`; exit N →
///    `finished`/`failed` with exit code N (Ocean's codes: a failing algorithm is status 70 with a failure, never
///    41 — 41 is a container that could not start); its pod gone or evicted before it ended → `failed`.
/// 4. publish: exit 0 keeps rule 3's result; exit 42 → 42 (outputs over the disk limit; logs are uploaded); any
///    other exit, or its pod gone before it ended → 62 "publishing results failed", exit code and OOM of the
///    algorithm kept.
///
/// The attempt is *settled* (ready to be recorded) once its verdict is known and the io pod will upload nothing
/// more: publish terminated, or the io pod is over.
package enum AttemptOutcome {
    /// What the rules need besides the observation.
    package struct Context: Sendable, Hashable {
        package var now: Date
        /// Ocean's stopreq 1 was set on the job.
        package var stopRequested: Bool
        /// The algorithm's time limit in seconds (the workflow's `maxtime` capped by the environment).
        package var algorithmTimeLimit: Int
        /// How long an image may fail to pull, or a container fail to be created, before the attempt ends.
        package var startTimeout: TimeInterval

        package init(
            now: Date, stopRequested: Bool = false, algorithmTimeLimit: Int = 3600, startTimeout: TimeInterval = 300
        ) {
            self.now = now
            self.stopRequested = stopRequested
            self.algorithmTimeLimit = algorithmTimeLimit
            self.startTimeout = startTimeout
        }
    }

    /// How a decided attempt ends.
    package struct Verdict: Sendable, Hashable {
        package var status: JobStatus
        package var outcome: JobOutcome
        package var failureReason: String?
        package var exitCode: Int?
        package var oomKilled: Bool
        package var stopRequest: Int?
        /// Only logs are kept (a stop): outputs the publish step may have uploaded are left out of the results.
        package var logsOnly: Bool

        package init(
            status: JobStatus, outcome: JobOutcome, failureReason: String? = nil, exitCode: Int? = nil,
            oomKilled: Bool = false, stopRequest: Int? = nil, logsOnly: Bool = false
        ) {
            self.status = status
            self.outcome = outcome
            self.failureReason = failureReason
            self.exitCode = exitCode
            self.oomKilled = oomKilled
            self.stopRequest = stopRequest
            self.logsOnly = logsOnly
        }

        /// The result to record, with `results` in Ocean's order.
        package func result(with results: [ResultFile]) -> ExecutionResult {
            let kept =
                logsOnly
                ? results.filter { $0.kind != .output }.enumerated().map { index, file in
                    var file = file
                    file.index = index
                    return file
                } : results
            return ExecutionResult(
                status: status, outcome: outcome, failureReason: failureReason, exitCode: exitCode,
                oomKilled: oomKilled, stopRequest: stopRequest, results: kept)
        }
    }

    /// What to do to the cluster.
    package enum Intervention: Sendable, Hashable {
        /// Nothing: the attempt runs, or ends by itself.
        case none
        /// Delete the whole attempt (stop, a start that will never happen): its pods stop, publish uploads the logs.
        case deleteAttempt
        /// Delete the algorithm pod (its time is up): its sidecar marks the end, publish uploads what is there.
        case deleteAlgorithmPod
    }

    package struct Assessment: Sendable, Hashable {
        /// The furthest progress status the attempt reached (20, 30, 40 or 60); record it if the job is behind.
        package var progress: JobStatus
        /// Set once the end is decided (it may still be waiting for the logs).
        package var verdict: Verdict?
        /// The verdict may be recorded now: nothing more will be uploaded.
        package var settled: Bool
        package var intervention: Intervention
        /// When the assessment may change without any new observation (a time limit or a start time-out), so the
        /// caller knows when to look again.
        package var reassessAt: Date?
    }

    /// Image pull problems a container may recover from, until the time-out.
    package static let imagePullReasons: Set<String> = [
        "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable",
    ]

    /// Problems creating a container (bad configuration, runtime refusal).
    package static let createReasons: Set<String> = [
        "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreStartHookError",
    ]

    /// Terminated reasons that mean the container never started its process.
    package static let cannotRunReasons: Set<String> = ["ContainerCannotRun", "StartError"]

    package static func assess(_ observed: AttemptObservation, _ context: Context) -> Assessment {
        var reading = Reading(observed: observed, context: context)
        return reading.run()
    }
}

/// One assessment's working data.
private struct Reading {
    typealias Verdict = AttemptOutcome.Verdict

    let observed: AttemptObservation
    let context: AttemptOutcome.Context
    var reassessAt: Date?

    init(observed: AttemptObservation, context: AttemptOutcome.Context) {
        self.observed = observed
        self.context = context
    }

    /// The io pod will upload nothing more.
    var ioDone: Bool {
        observed.publish.termination != nil || observed.ioPod.isOver
            || (observed.ioPod.presence == .notSeen && observed.root == .gone)
    }

    /// The algorithm pod runs nothing more.
    var algorithmDone: Bool {
        observed.algorithm.termination != nil || observed.algorithmPod.isOver
            || (observed.algorithmPod.presence == .notSeen && observed.root == .gone)
    }

    var progress: JobStatus {
        // Publish runs from the start of the io pod's main phase, waiting for the algorithm: it is publishing only
        // once the algorithm ended.
        if observed.algorithm.termination != nil || (observed.algorithm.hasStarted && algorithmDone) {
            return .publishingResults
        }
        if observed.algorithm.hasStarted { return .runningAlgorithm }
        if observed.configure.termination?.exitCode == 0 { return .provisioningSuccess }
        return .configuringVolumes
    }

    mutating func run() -> AttemptOutcome.Assessment {
        let natural = naturalEnd()
        // An attempt that ended by itself before the stop took effect keeps its own end; one whose pods are being
        // (or were) deleted ended because of the stop.
        let untouched =
            observed.root == .present && observed.ioPod.presence == .present && !observed.ioPod.deleting
            && observed.algorithmPod.presence == .present && !observed.algorithmPod.deleting
        guard context.stopRequested, !(natural.settled && untouched) else { return natural }
        // A stop wins over anything not yet recorded: the objects go, publish uploads the logs on SIGTERM.
        let verdict = Verdict(
            status: .finished, outcome: .stopped, failureReason: "the job was stopped on request", stopRequest: 1,
            logsOnly: true)
        let over = ioDone && algorithmDone
        // The natural end may still become settled by time alone (a start time-out), and then it is kept.
        return .init(
            progress: natural.progress, verdict: verdict, settled: ioDone, intervention: over ? .none : .deleteAttempt,
            reassessAt: natural.reassessAt)
    }

    mutating func naturalEnd() -> AttemptOutcome.Assessment {
        let progress = self.progress
        if let (verdict, intervention) = configureEnd() {
            // The io pod failed at its init container: publish never runs, so only the pods' end is awaited.
            let settled = observed.ioPod.isOver || observed.root == .gone
            return .init(
                progress: progress, verdict: verdict, settled: settled,
                intervention: settled && algorithmDone ? .none : intervention, reassessAt: reassessAt)
        }
        if let (verdict, intervention) = algorithmStartFailure() {
            return .init(
                progress: progress, verdict: verdict, settled: ioDone && algorithmDone,
                intervention: ioDone && algorithmDone ? .none : intervention, reassessAt: reassessAt)
        }
        var intervention = AttemptOutcome.Intervention.none
        var verdict = algorithmEnd()
        if verdict == nil, overTime() {
            intervention = .deleteAlgorithmPod
        }
        verdict = publishEnd(after: verdict)
        if verdict == nil, ioDone, !algorithmDone {
            // The io pod ended (deleted, its deadline) while the algorithm still runs: nothing would publish.
            verdict = Verdict(
                status: .resultsUploadFailed, outcome: .failed,
                failureReason: "publishing results failed: the publish step's pod ended before the algorithm did")
        }
        let settled = verdict != nil && ioDone && algorithmDone
        if verdict != nil, !settled, ioDone { intervention = .deleteAttempt }
        return .init(
            progress: progress, verdict: verdict, settled: settled, intervention: intervention,
            reassessAt: reassessAt)
    }

    // MARK: configure

    mutating func configureEnd() -> (Verdict, AttemptOutcome.Intervention)? {
        switch observed.configure {
        case .terminated(let end) where end.exitCode != 0 || end.oomKilled:
            let message = Self.nonEmpty(end.message)
            if end.oomKilled {
                return (
                    Verdict(
                        status: .dataProvisioningFailed, outcome: .failed,
                        failureReason: "the configure step ran out of memory", exitCode: end.exitCode), .none
                )
            }
            let status: JobStatus = end.exitCode == 32 ? .algorithmProvisioningFailed : .dataProvisioningFailed
            return (
                Verdict(
                    status: status, outcome: .failed,
                    failureReason: message ?? "the configure step failed with exit code \(end.exitCode)",
                    exitCode: end.exitCode), .none
            )
        case .waiting(let reason, let message, let since):
            guard let kind = startProblem(reason: reason, since: since) else { return nil }
            let detail = Self.detail(reason, message)
            switch kind {
            case .imagePull:
                return (
                    Verdict(
                        status: .imagePullFailed, outcome: .failed,
                        failureReason: "pulling c2d's image \(observed.stepImage ?? "") failed: \(detail)"),
                    .deleteAttempt
                )
            case .create:
                return (
                    Verdict(
                        status: .containerCreationFailed, outcome: .failed,
                        failureReason: "the configure container could not be created: \(detail)"), .deleteAttempt
                )
            }
        case .pending, .running, .terminated:
            guard observed.configure.termination == nil, observed.ioPod.isOver || observed.root == .gone else {
                return nil
            }
            // The io pod ended before configure did (deleted, or its Job's deadline).
            let why = observed.rootFailure ?? observed.ioPod.reason ?? "its pod was deleted"
            return (
                Verdict(
                    status: .dataProvisioningFailed, outcome: .failed,
                    failureReason: "the configure step did not finish: \(why)"), .deleteAttempt
            )
        }
    }

    // MARK: algorithm

    mutating func algorithmStartFailure() -> (Verdict, AttemptOutcome.Intervention)? {
        switch observed.algorithm {
        case .waiting(let reason, let message, let since):
            guard let kind = startProblem(reason: reason, since: since) else { return nil }
            let detail = Self.detail(reason, message)
            switch kind {
            case .imagePull:
                return (
                    Verdict(
                        status: .imagePullFailed, outcome: .failed,
                        failureReason:
                            "the algorithm image \(observed.algorithmImage ?? "") could not be pulled within "
                            + "\(Int(context.startTimeout)) s: \(detail)"), .deleteAttempt
                )
            case .create:
                return (
                    Verdict(
                        status: .algorithmFailed, outcome: .failed,
                        failureReason: "the algorithm could not start: \(detail)"), .deleteAttempt
                )
            }
        case .terminated(let end) where AttemptOutcome.cannotRunReasons.contains(end.reason ?? ""):
            return (
                Verdict(
                    status: .algorithmFailed, outcome: .failed,
                    failureReason: "the algorithm could not start: "
                        + (Self.nonEmpty(end.message) ?? end.reason ?? "exit code \(end.exitCode)"),
                    exitCode: end.exitCode), .none
            )
        default:
            return nil
        }
    }

    /// The algorithm's own end, once it has one.
    func algorithmEnd() -> Verdict? {
        if let end = observed.algorithm.termination {
            if timedOut(end) {
                return Verdict(
                    status: .finished, outcome: .timedOut,
                    failureReason: "algorithm exceeded its time limit of \(context.algorithmTimeLimit) s",
                    exitCode: end.exitCode == 0 ? nil : end.exitCode, stopRequest: 2)
            }
            if end.oomKilled {
                return Verdict(
                    status: .finished, outcome: .failed,
                    failureReason: "the algorithm ran out of memory"
                        + (observed.algorithmMemoryLimit.map { " (limit \($0))" } ?? ""),
                    exitCode: end.exitCode, oomKilled: true)
            }
            if end.exitCode == 0 {
                return Verdict(status: .finished, outcome: .succeeded, exitCode: 0)
            }
            var reason = "algorithm exited with code \(end.exitCode)"
            if end.exitCode > 128 && end.exitCode < 128 + 65 { reason += " (killed by signal \(end.exitCode - 128))" }
            return Verdict(status: .finished, outcome: .failed, failureReason: reason, exitCode: end.exitCode)
        }
        if observed.algorithmPod.reason == "DeadlineExceeded" {
            return Verdict(
                status: .finished, outcome: .timedOut,
                failureReason: "algorithm exceeded its time limit of \(context.algorithmTimeLimit) s", stopRequest: 2)
        }
        if observed.algorithm.hasStarted, algorithmDone {
            // Running when its pod went away: evicted, or deleted by someone else.
            let why = observed.algorithmPod.reason.map { "its pod was \($0.lowercased())" } ?? "its pod was deleted"
            return Verdict(
                status: .finished, outcome: .failed, failureReason: "the algorithm did not finish: \(why)")
        }
        return nil
    }

    func timedOut(_ end: ContainerTermination) -> Bool {
        if end.reason == "DeadlineExceeded" || observed.algorithmPod.reason == "DeadlineExceeded" { return true }
        // Stopped by deletion at its limit (or by the pod's deadline): it ran the whole of its time.
        guard end.exitCode != 0, let ran = end.ran else { return false }
        return ran >= TimeInterval(context.algorithmTimeLimit) - 0.5
    }

    /// The algorithm runs past its limit: the caller deletes its pod.
    mutating func overTime() -> Bool {
        guard case .running(let startedAt?) = observed.algorithm else { return false }
        let due = startedAt.addingTimeInterval(TimeInterval(context.algorithmTimeLimit))
        if context.now >= due { return true }
        reassessAt = earliest(reassessAt, due)
        return false
    }

    // MARK: publish

    func publishEnd(after verdict: Verdict?) -> Verdict? {
        let failure: (status: JobStatus, reason: String)?
        switch observed.publish {
        case .terminated(let end) where end.exitCode == 0 && !end.oomKilled:
            failure = nil
        case .terminated(let end) where end.exitCode == Int(JobStatus.diskQuotaExceeded.rawValue):
            failure = (.diskQuotaExceeded, Self.nonEmpty(end.message) ?? "outputs exceed the disk limit")
        case .terminated(let end):
            let why =
                end.oomKilled
                ? "it ran out of memory"
                : Self.nonEmpty(end.message) ?? "the publish step failed with exit code \(end.exitCode)"
            failure = (.resultsUploadFailed, "publishing results failed: " + why)
        default:
            // Publishing only begins after the algorithm ended; a publish step still waiting adds nothing.
            if verdict != nil, observed.publish.termination == nil,
                observed.ioPod.isOver || observed.ioPod.presence == .gone
            {
                failure = (.resultsUploadFailed, "publishing results failed: the publish step's pod ended early")
            } else {
                failure = nil
            }
        }
        guard let failure else { return verdict }
        let base = verdict ?? Verdict(status: .finished, outcome: .failed)
        return Verdict(
            status: failure.status, outcome: .failed,
            failureReason: [base.outcome == .succeeded ? nil : base.failureReason, failure.reason].compactMap { $0 }
                .joined(separator: "; "),
            exitCode: base.exitCode, oomKilled: base.oomKilled, stopRequest: base.stopRequest)
    }

    // MARK: Helpers

    enum StartProblem { case imagePull, create }

    /// A start problem that has lasted past the time-out; nil while there is none or there is still time.
    mutating func startProblem(reason: String, since: Date?) -> StartProblem? {
        let kind: StartProblem
        if AttemptOutcome.imagePullReasons.contains(reason) {
            kind = .imagePull
        } else if AttemptOutcome.createReasons.contains(reason) {
            kind = .create
        } else {
            return nil
        }
        let due = (since ?? context.now).addingTimeInterval(context.startTimeout)
        if context.now >= due { return kind }
        reassessAt = earliest(reassessAt, due)
        return nil
    }

    func earliest(_ a: Date?, _ b: Date) -> Date { a.map { min($0, b) } ?? b }

    static func nonEmpty(_ text: String?) -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
        return text
    }

    static func detail(_ reason: String, _ message: String?) -> String {
        nonEmpty(message).map { "\(reason): \($0)" } ?? reason
    }
}
