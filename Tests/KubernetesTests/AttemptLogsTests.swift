import Domain
import Foundation
import Testing

@testable import Kubernetes

/// Which logs a finalizer reads from the API: c2d's failed steps, and the algorithm's output (relayed by the
/// algorithm pod's `algorithm-log` sidecar) when publish did not upload it.
@Suite struct AttemptLogsTests {
    static let key = AttemptKey(
        jobID: JobID(uuid: UUID(uuidString: "00000000-0000-0000-0000-000000000017")!), attempt: 2)

    struct Case: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var observation: AttemptObservation
        var uploaded: Set<String>
        /// `container@pod-role` of each log to read.
        var expected: [String]
    }

    static let present = PodObservation(presence: .present, phase: "Succeeded")
    static let gone = PodObservation(presence: .gone)
    static func ended(_ code: Int, _ reason: String? = nil) -> ContainerObservation {
        .terminated(ContainerTermination(exitCode: code, reason: reason))
    }

    static let cases: [Case] = [
        Case(
            testDescription: "the happy path reads nothing",
            observation: AttemptObservation(
                ioPod: present, algorithmPod: present, configure: ended(0), algorithm: ended(0), publish: ended(0)),
            uploaded: ["configure.log", "algorithm.log", "publish.log"], expected: []),
        Case(
            testDescription: "an algorithm that failed is not a reason: publish uploaded its log",
            observation: AttemptObservation(
                ioPod: present, algorithmPod: present, configure: ended(0), algorithm: ended(3), publish: ended(0)),
            uploaded: ["configure.log", "algorithm.log", "publish.log"], expected: []),
        Case(
            testDescription: "publish failed after uploading its own log: the algorithm's comes from its sidecar",
            observation: AttemptObservation(
                ioPod: present, algorithmPod: present, configure: ended(0), algorithm: ended(0), publish: ended(62)),
            uploaded: ["configure.log", "publish.log"], expected: ["algorithm-log@algorithm"]),
        Case(
            testDescription: "publish failed and uploaded nothing: its log, then the algorithm's",
            observation: AttemptObservation(
                ioPod: present, algorithmPod: present, configure: ended(0), algorithm: ended(0), publish: ended(62)),
            uploaded: [], expected: ["publish@io", "algorithm-log@algorithm"]),
        Case(
            testDescription: "publish ran out of memory after uploading algorithm.log: only its own log",
            observation: AttemptObservation(
                ioPod: present, algorithmPod: present, configure: ended(0), algorithm: ended(0),
                publish: ended(137, "OOMKilled")),
            uploaded: ["algorithm.log"], expected: ["publish@io"]),
        Case(
            testDescription: "the io pod is gone: the algorithm's log is still read from its pod",
            observation: AttemptObservation(
                ioPod: gone, algorithmPod: present, configure: ended(0), algorithm: ended(0)),
            uploaded: [], expected: ["algorithm-log@algorithm"]),
        Case(
            testDescription: "the algorithm pod is gone too: nothing left to read",
            observation: AttemptObservation(
                ioPod: gone, algorithmPod: gone, configure: ended(0), algorithm: ended(0)),
            uploaded: [], expected: []),
        Case(
            testDescription: "configure failed: the algorithm never ran, so only configure's log",
            observation: AttemptObservation(
                ioPod: present, algorithmPod: present, configure: ended(31), algorithm: .pending),
            uploaded: [], expected: ["configure@io"]),
    ]

    @Test("the logs to read from the API", arguments: cases)
    func missing(_ example: Case) {
        let observed = ObservedAttempt(key: Self.key, observation: example.observation, ioPodName: "io-pod")
        let missing = AttemptLogs.missing(observed, uploaded: example.uploaded)
        let algorithmPod = ClusterNaming.algorithmPodName(jobID: Self.key.jobID, attempt: Self.key.attempt)
        #expect(
            missing.map {
                "\($0.container)@\($0.pod == algorithmPod ? "algorithm" : $0.pod == "io-pod" ? "io" : $0.pod)"
            }
                == example.expected)
        for log in missing where log.container == ClusterNaming.Container.algorithmLog {
            #expect(log.name == "algorithm.log" && log.kind == .algorithmLog)
        }
    }
}
