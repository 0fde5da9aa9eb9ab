import Domain
import Foundation
import Testing

/// The one reading of an attempt's cluster state, table-tested: every row is an observation and what the worker
/// and the scheduler must both record for it.
@Suite("Attempt outcome")
struct AttemptOutcomeTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func context(
        stop: Bool = false, at seconds: TimeInterval = 100, limit: Int = 60, startTimeout: TimeInterval = 30
    ) -> AttemptOutcome.Context {
        AttemptOutcome.Context(
            now: t0.addingTimeInterval(seconds), stopRequested: stop, algorithmTimeLimit: limit,
            startTimeout: startTimeout)
    }

    static func exit(
        _ code: Int, _ reason: String? = nil, message: String? = nil, ran: TimeInterval = 5
    ) -> ContainerObservation {
        .terminated(
            ContainerTermination(
                exitCode: code, reason: reason ?? (code == 0 ? "Completed" : "Error"), message: message,
                startedAt: t0.addingTimeInterval(10), finishedAt: t0.addingTimeInterval(10 + ran)))
    }

    static let running = PodObservation(presence: .present, phase: "Running")
    static let succeeded = PodObservation(presence: .present, phase: "Succeeded")
    static let failed = PodObservation(presence: .present, phase: "Failed")

    /// An attempt whose configure and algorithm ended as given and whose publish ended as given.
    static func attempt(
        configure: ContainerObservation = exit(0), algorithm: ContainerObservation = exit(0),
        publish: ContainerObservation = exit(0), ioPod: PodObservation? = nil, algorithmPod: PodObservation? = nil
    ) -> AttemptObservation {
        let ioOver = publish.termination != nil || configure.termination.map { $0.exitCode != 0 } ?? false
        let algorithmOver = algorithm.termination != nil
        return AttemptObservation(
            root: .present,
            ioPod: ioPod ?? (ioOver ? (publish.termination?.exitCode == 0 ? succeeded : failed) : running),
            algorithmPod: algorithmPod
                ?? (algorithmOver ? (algorithm.termination?.exitCode == 0 ? succeeded : failed) : running),
            configure: configure, algorithm: algorithm, publish: publish, algorithmImage: "python:3.12",
            algorithmMemoryLimit: "512Mi", stepImage: "c2d:1")
    }

    struct Row: CustomTestStringConvertible, Sendable {
        var name: String
        var observed: AttemptObservation
        var context: AttemptOutcome.Context = AttemptOutcomeTests.context()
        var status: JobStatus
        var outcome: JobOutcome
        var exitCode: Int?
        var oom = false
        var stopRequest: Int?
        var reason: String?
        var logsOnly = false
        var settled = true
        var intervention: AttemptOutcome.Intervention = .none

        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(
            name: "everything succeeded", observed: attempt(), status: .finished, outcome: .succeeded, exitCode: 0),
        Row(
            name: "a non-zero exit is status 70, failed, with its code (never 41)",
            observed: attempt(algorithm: exit(3)), status: .finished, outcome: .failed, exitCode: 3,
            reason: "algorithm exited with code 3"),
        Row(
            name: "a signal exit says which signal", observed: attempt(algorithm: exit(137)), status: .finished,
            outcome: .failed, exitCode: 137, reason: "algorithm exited with code 137 (killed by signal 9)"),
        Row(
            name: "OOM is failed with oom_killed and a sentence naming the limit",
            observed: attempt(algorithm: exit(137, "OOMKilled")), status: .finished, outcome: .failed,
            exitCode: 137, oom: true, reason: "the algorithm ran out of memory (limit 512Mi)"),
        Row(
            name: "the pod's deadline is a time-out (stopreq 2)",
            observed: attempt(
                algorithm: exit(137),
                algorithmPod: PodObservation(
                    presence: .present, phase: "Failed",
                    reason: "DeadlineExceeded")),
            status: .finished, outcome: .timedOut, exitCode: 137, stopRequest: 2,
            reason: "algorithm exceeded its time limit of 60 s"),
        Row(
            name: "stopped at its limit (ran the whole of its time) is a time-out",
            observed: attempt(algorithm: exit(143, ran: 60.2)), status: .finished, outcome: .timedOut,
            exitCode: 143, stopRequest: 2, reason: "algorithm exceeded its time limit of 60 s"),
        Row(
            name: "configure's exit 31 is data provisioning failed with its message",
            observed: attempt(
                configure: exit(31, message: "input 0: checksum mismatch"), algorithm: .pending,
                publish: .pending, algorithmPod: running),
            status: .dataProvisioningFailed, outcome: .failed, exitCode: 31, reason: "input 0: checksum mismatch"),
        Row(
            name: "configure's exit 32 is algorithm provisioning failed (honoured whoever finalizes)",
            observed: attempt(
                configure: exit(32, message: "algorithm: 404"), algorithm: .pending, publish: .pending,
                algorithmPod: PodObservation(presence: .gone)),
            status: .algorithmProvisioningFailed, outcome: .failed, exitCode: 32, reason: "algorithm: 404"),
        Row(
            name: "configure exiting 1 without a message is 31 with its code",
            observed: attempt(
                configure: exit(1), algorithm: .pending, publish: .pending,
                algorithmPod: PodObservation(presence: .gone)),
            status: .dataProvisioningFailed, outcome: .failed, exitCode: 1,
            reason: "the configure step failed with exit code 1"),
        Row(
            name: "configure OOM is 31",
            observed: attempt(
                configure: exit(137, "OOMKilled"), algorithm: .pending, publish: .pending,
                algorithmPod: PodObservation(presence: .gone)),
            status: .dataProvisioningFailed, outcome: .failed, exitCode: 137,
            reason: "the configure step ran out of memory"),
        Row(
            name: "publish exit 42 is disk quota exceeded; the algorithm's exit code stays",
            observed: attempt(publish: exit(42, message: "outputs take 9 bytes, above 8")),
            status: .diskQuotaExceeded, outcome: .failed, exitCode: 0, reason: "outputs take 9 bytes, above 8"),
        Row(
            name: "publish failing is 62 with its message",
            observed: attempt(publish: exit(62, message: "upload refused: 409")),
            status: .resultsUploadFailed, outcome: .failed, exitCode: 0,
            reason: "publishing results failed: upload refused: 409"),
        Row(
            name: "publish failing after a failed algorithm keeps both reasons and the code",
            observed: attempt(algorithm: exit(2), publish: exit(62, message: "gateway down")),
            status: .resultsUploadFailed, outcome: .failed, exitCode: 2,
            reason: "algorithm exited with code 2; publishing results failed: gateway down"),
        Row(
            name: "publish OOM is 62",
            observed: attempt(publish: exit(137, "OOMKilled")), status: .resultsUploadFailed, outcome: .failed,
            exitCode: 0, reason: "publishing results failed: it ran out of memory"),
        Row(
            name: "a container that cannot run is 41",
            observed: attempt(algorithm: exit(128, "ContainerCannotRun", message: "exec: \"python3\": not found")),
            status: .algorithmFailed, outcome: .failed, exitCode: 128,
            reason: "the algorithm could not start: exec: \"python3\": not found"),
        Row(
            name: "an algorithm image that never pulls is 11 once the time-out passed; the attempt is deleted",
            observed: attempt(
                algorithm: .waiting(reason: "ImagePullBackOff", message: "not found", since: t0), publish: .pending),
            status: .imagePullFailed, outcome: .failed,
            reason: "the algorithm image python:3.12 could not be pulled within 30 s: ImagePullBackOff: not found",
            settled: false, intervention: .deleteAttempt),
        Row(
            name: "a create error past the time-out is 41",
            observed: attempt(
                algorithm: .waiting(reason: "CreateContainerConfigError", message: nil, since: t0), publish: .pending),
            status: .algorithmFailed, outcome: .failed,
            reason: "the algorithm could not start: CreateContainerConfigError",
            settled: false, intervention: .deleteAttempt),
        Row(
            name: "c2d's own image not pulling is 11",
            observed: attempt(
                configure: .waiting(reason: "ErrImagePull", message: nil, since: t0), algorithm: .pending,
                publish: .pending, ioPod: PodObservation(presence: .present, phase: "Pending")),
            status: .imagePullFailed, outcome: .failed, reason: "pulling c2d's image c2d:1 failed: ErrImagePull",
            settled: false, intervention: .deleteAttempt),
        Row(
            name: "configure's container that cannot be created past the time-out is 22; the attempt is deleted",
            observed: attempt(
                configure: .waiting(reason: "CreateContainerConfigError", message: "secret not found", since: t0),
                algorithm: .pending, publish: .pending, ioPod: PodObservation(presence: .present, phase: "Pending")),
            status: .containerCreationFailed, outcome: .failed,
            reason: "the configure container could not be created: CreateContainerConfigError: secret not found",
            settled: false, intervention: .deleteAttempt),
        Row(
            name: "the io pod over while the algorithm still runs is 62; the algorithm is not awaited but deleted",
            observed: attempt(
                algorithm: .running(startedAt: t0.addingTimeInterval(90)), publish: .pending,
                ioPod: PodObservation(presence: .gone)),
            status: .resultsUploadFailed, outcome: .failed,
            reason: "publishing results failed: the publish step's pod ended before the algorithm did",
            settled: false, intervention: .deleteAttempt),
        Row(
            name: "publish still pending when the io pod is gone after the algorithm ended is 62, exit code kept",
            observed: attempt(publish: .pending, ioPod: PodObservation(presence: .gone)),
            status: .resultsUploadFailed, outcome: .failed, exitCode: 0,
            reason: "publishing results failed: the publish step's pod ended early"),
        Row(
            name: "a stop while the algorithm runs: stopped, logs only, delete the attempt, wait for publish",
            observed: attempt(algorithm: .running(startedAt: t0), publish: .pending),
            context: context(stop: true), status: .finished, outcome: .stopped, stopRequest: 1,
            reason: "the job was stopped on request", logsOnly: true, settled: false, intervention: .deleteAttempt),
        Row(
            name: "a stop during configure, once the io pod is gone, is settled",
            observed: attempt(
                configure: .running(startedAt: t0), algorithm: .pending, publish: .pending,
                ioPod: PodObservation(presence: .gone), algorithmPod: PodObservation(presence: .gone)),
            context: context(stop: true), status: .finished, outcome: .stopped, stopRequest: 1,
            reason: "the job was stopped on request", logsOnly: true),
        Row(
            name: "a stop after everything ended changes nothing",
            observed: attempt(), context: context(stop: true), status: .finished, outcome: .succeeded, exitCode: 0),
        Row(
            name: "the algorithm evicted while running is failed",
            observed: attempt(
                algorithm: .running(startedAt: t0), publish: exit(0),
                algorithmPod: PodObservation(presence: .present, phase: "Failed", reason: "Evicted")),
            status: .finished, outcome: .failed, reason: "the algorithm did not finish: its pod was evicted"),
        Row(
            name: "the io pod gone before configure ended is 31",
            observed: AttemptObservation(
                root: .gone, rootFailure: "DeadlineExceeded", ioPod: PodObservation(presence: .gone),
                algorithmPod: PodObservation(presence: .gone), configure: .running(startedAt: t0), stepImage: "c2d:1"),
            status: .dataProvisioningFailed, outcome: .failed,
            reason: "the configure step did not finish: DeadlineExceeded"),
    ]

    @Test("each observation gives its status, outcome, exit code, OOM flag and reason", arguments: rows)
    func table(_ row: Row) {
        let assessment = AttemptOutcome.assess(row.observed, row.context)
        let verdict = assessment.verdict
        #expect(verdict?.status == row.status)
        #expect(verdict?.outcome == row.outcome)
        #expect(verdict?.exitCode == row.exitCode)
        #expect(verdict?.oomKilled == row.oom)
        #expect(verdict?.stopRequest == row.stopRequest)
        #expect(verdict?.failureReason == row.reason)
        #expect(verdict?.logsOnly == row.logsOnly)
        #expect(assessment.settled == row.settled)
        #expect(assessment.intervention == row.intervention)
    }

    @Test("progress: configuring, provisioned, running, publishing; nothing decided while the attempt runs")
    func progress() {
        let c = Self.context()
        let launched = AttemptObservation()
        #expect(AttemptOutcome.assess(launched, c).progress == .configuringVolumes)
        #expect(AttemptOutcome.assess(launched, c).verdict == nil)
        let configured = Self.attempt(
            algorithm: .waiting(reason: "PodInitializing", message: nil, since: nil),
            publish: .pending)
        #expect(AttemptOutcome.assess(configured, c).progress == .provisioningSuccess)
        let running = Self.attempt(algorithm: .running(startedAt: Self.t0.addingTimeInterval(90)), publish: .pending)
        let assessment = AttemptOutcome.assess(running, c)
        #expect(assessment.progress == .runningAlgorithm)
        #expect(assessment.verdict == nil)
        #expect(assessment.intervention == .none)
        #expect(assessment.reassessAt == Self.t0.addingTimeInterval(150))
        // Publish waits (running) from the start; it is publishing once the algorithm ended.
        let waiting = Self.attempt(
            algorithm: .running(startedAt: Self.t0.addingTimeInterval(90)),
            publish: .running(startedAt: nil))
        #expect(AttemptOutcome.assess(waiting, c).progress == .runningAlgorithm)
        let publishing = Self.attempt(publish: .running(startedAt: nil))
        #expect(AttemptOutcome.assess(publishing, c).progress == .publishingResults)
        #expect(AttemptOutcome.assess(publishing, c).verdict?.outcome == .succeeded)
        #expect(AttemptOutcome.assess(publishing, c).settled == false)
    }

    @Test("an algorithm running past its limit has its pod deleted; a start problem within the time-out waits")
    func timers() {
        let over = Self.attempt(algorithm: .running(startedAt: Self.t0), publish: .pending)
        let assessment = AttemptOutcome.assess(over, Self.context(at: 61))
        #expect(assessment.intervention == .deleteAlgorithmPod)
        #expect(assessment.verdict == nil)

        let pulling = Self.attempt(
            algorithm: .waiting(reason: "ErrImagePull", message: nil, since: Self.t0), publish: .pending)
        let early = AttemptOutcome.assess(pulling, Self.context(at: 10))
        #expect(early.verdict == nil)
        #expect(early.intervention == .none)
        #expect(early.reassessAt == Self.t0.addingTimeInterval(30))
    }

    @Test("a stop keeps only the logs of the results")
    func logsOnly() {
        let verdict = AttemptOutcome.Verdict(status: .finished, outcome: .stopped, stopRequest: 1, logsOnly: true)
        let files = [
            ResultFile(index: 0, name: "out.csv", kind: .output, size: 1, sha256: "a", location: "x"),
            ResultFile(index: 1, name: "algorithm.log", kind: .algorithmLog, size: 1, sha256: "b", location: "y"),
            ResultFile(index: 2, name: "publish.log", kind: .publishLog, size: 1, sha256: "c", location: "z"),
        ]
        let result = verdict.result(with: files)
        #expect(result.results.map(\.name) == ["algorithm.log", "publish.log"])
        #expect(result.results.map(\.index) == [0, 1])
        #expect(result.outcome == .stopped)
    }
}
