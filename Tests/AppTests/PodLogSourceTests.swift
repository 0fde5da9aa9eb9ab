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
        var logger = Logger(label: "emulator")
        logger.logLevel = .warning
        let emulator = KubernetesEmulator(configuration: KubernetesEmulatorConfiguration(), logger: logger)
        let port = try await emulator.start()
        let client = try KubernetesClient(
            configuration: KubernetesConfiguration(
                server: "http://127.0.0.1:\(port)", namespace: "logs", streamIdleTimeout: .milliseconds(600)),
            logger: logger)
        do {
            // Three lines a second apart: the follow is silent for longer than the idle timeout between them.
            let pod = Pod(
                metadata: ObjectMeta(
                    name: "relay", namespace: "logs", labels: ["app": "relay"],
                    annotations: ["sim.c2d.io/logs": "one\ntwo\nthree", "sim.c2d.io/duration": "3"]),
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
            #expect(text == "one\ntwo\nthree\n")
            let follows = await emulator.statistics().requests(verb: "get", resource: "pods/log")
            #expect(follows >= 2, "the follow was opened again after an idle timeout: \(follows) follows")
        } catch {
            try? await client.shutdown()
            await emulator.shutdown()
            throw error
        }
        try await client.shutdown()
        await emulator.shutdown()
    }

    @Test("a follow the API server ends while the container still runs is opened again without repeating a byte")
    func reopensAnEndedFollow() async throws {
        var logger = Logger(label: "emulator")
        logger.logLevel = .warning
        let emulator = KubernetesEmulator(configuration: KubernetesEmulatorConfiguration(), logger: logger)
        let port = try await emulator.start()
        var faults = KubernetesEmulatorFaults()
        faults.endFollowsAfterSeconds = 0.7
        await emulator.setFaults(faults)
        // The stream idle timeout is far above the gaps between lines: only the server ends these follows.
        let client = try KubernetesClient(
            configuration: KubernetesConfiguration(
                server: "http://127.0.0.1:\(port)", namespace: "logs", streamIdleTimeout: .seconds(30)),
            logger: logger)
        do {
            let lines = (1...6).map { "line \($0)" }
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
            #expect(text == lines.map { $0 + "\n" }.joined())
            let follows = await emulator.statistics().requests(verb: "get", resource: "pods/log")
            #expect(follows >= 3, "each ended follow was opened again: \(follows) follows")
        } catch {
            try? await client.shutdown()
            await emulator.shutdown()
            throw error
        }
        try await client.shutdown()
        await emulator.shutdown()
    }
}
