import Foundation
import Gateway
import Kubernetes
import KubernetesEmulator
import Logging
import NIOCore
import Testing

@testable import App

/// `PodLogSource` against the Kubernetes API emulator: a follow that breaks off is opened again and goes on where
/// it stopped.
@Suite struct PodLogSourceTests {
    @Test("a follow cut by the stream idle timeout is opened again without repeating a byte")
    func resumesWithoutRepeating() async throws {
        // Three lines a second apart: the follow is silent for longer than the idle timeout between them.
        let (text, follows) = try await Self.followRelay(
            lines: ["one", "two", "three"], streamIdleTimeout: .milliseconds(600), faults: KubernetesEmulatorFaults())
        #expect(text == "one\ntwo\nthree\n")
        #expect(follows >= 2, "the follow was opened again after an idle timeout: \(follows) follows")
    }

    @Test("a follow the API server ends while the container still runs is opened again without repeating a byte")
    func reopensAnEndedFollow() async throws {
        var faults = KubernetesEmulatorFaults()
        faults.endFollowsAfterSeconds = 0.7
        // The stream idle timeout is far above the gaps between lines: only the server ends these follows.
        let lines = (1...6).map { "line \($0)" }
        let (text, follows) = try await Self.followRelay(lines: lines, streamIdleTimeout: .seconds(30), faults: faults)
        #expect(text == lines.map { $0 + "\n" }.joined())
        #expect(follows >= 3, "each ended follow was opened again: \(follows) follows")
    }

    /// Follows a pod whose container prints `lines` evenly over 3 s, on an emulator with `faults`; returns what the
    /// follower saw and how many follows it opened.
    static func followRelay(
        lines: [String], streamIdleTimeout: Duration, faults: KubernetesEmulatorFaults
    ) async throws -> (text: String, follows: Int) {
        var logger = Logger(label: "emulator")
        logger.logLevel = .warning
        let emulator = KubernetesEmulator(configuration: KubernetesEmulatorConfiguration(), logger: logger)
        let port = try await emulator.start()
        await emulator.setFaults(faults)
        let client = try KubernetesClient(
            configuration: KubernetesConfiguration(
                server: "http://127.0.0.1:\(port)", namespace: "logs", streamIdleTimeout: streamIdleTimeout),
            logger: logger)
        let seen: (text: String, follows: Int)
        do {
            let pod = Pod(
                metadata: ObjectMeta(
                    name: "relay", namespace: "logs", labels: ["app": "relay"],
                    annotations: ["sim.c2d.io/logs": lines.joined(separator: "\n"), "sim.c2d.io/duration": "3"]),
                spec: PodSpec(
                    containers: [Container(name: "relay", image: "busybox", command: ["sleep", "3"])],
                    restartPolicy: "Never"))
            _ = try await client.create(pod, namespace: "logs")
            let source = PodLogSource(client: client, namespace: "logs")
            var text = ""
            let stream = source.follow(podsMatching: "app=relay", container: "relay") {
                try? await Task.sleep(for: .milliseconds(100))
                return .running
            }
            for try await chunk in stream { text += String(buffer: chunk) }
            let follows = await emulator.statistics().requests(verb: "get", resource: "pods/log")
            seen = (text, follows)
        } catch {
            try? await client.shutdown()
            await emulator.shutdown()
            throw error
        }
        try await client.shutdown()
        await emulator.shutdown()
        return seen
    }
}
