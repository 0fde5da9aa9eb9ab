import ArgumentParser
import Foundation
import KubernetesEmulator
import Logging
import ServiceLifecycle
import UnixSignals

/// `c2d kube-sim`: the Kubernetes API emulator as a process, for kubectl and the Kubernetes executor.
struct KubeSimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-sim",
        abstract: "Run the Kubernetes API emulator (jobs, pods, secrets, PVCs, network policies) until SIGINT/SIGTERM.")

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free port).")
    var port: Int = 6443

    @Option(help: "Write a kubeconfig for this emulator to this path.")
    var kubeconfig: String?

    @Option(help: "Namespace written into the kubeconfig.")
    var namespace: String = "default"

    @Option(help: "Multiplier on simulated pod runtimes and controller delays (0 to 1000).")
    var timeScale: Double = 1

    @Option(help: "Seconds between watch bookmarks (0.01 to 3600).")
    var bookmarkInterval: Double = 1

    @Option(help: "Seed for generated names, uids and fault decisions.")
    var seed: UInt64 = 1

    @Flag(
        help: "Run c2d's own step containers (`c2d pod …`) as real processes of this binary instead of simulating them."
    )
    var runC2dSteps = false

    @Option(help: "With --run-c2d-steps: where the steps' volumes, logs and termination messages live.")
    var stepsDirectory: String?

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard timeScale.isFinite, (0...1_000).contains(timeScale) else {
            throw ValidationError("--time-scale must be 0 to 1000")
        }
        guard bookmarkInterval.isFinite, (0.01...3_600).contains(bookmarkInterval) else {
            throw ValidationError("--bookmark-interval must be 0.01 to 3600 seconds")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "c2d.kube-sim")
        var configuration = KubernetesEmulatorConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.timeScale = timeScale
        configuration.bookmarkInterval = .milliseconds(Int64(bookmarkInterval * 1000))
        configuration.seed = seed
        if runC2dSteps {
            let directory =
                stepsDirectory
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("c2d-kube-sim-steps").path
            configuration.stepRunner = .init(executable: CommandLine.arguments[0], workDirectory: directory)
        }
        let emulator = KubernetesEmulator(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [emulator], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let deadline = ContinuousClock.now + .seconds(30)
            while emulator.baseURL == nil && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            guard let url = emulator.baseURL else {
                await group.triggerGracefulShutdown()
                throw ValidationError("kube-sim could not listen on \(host):\(port)")
            }
            if let kubeconfig {
                let text = KubernetesEmulator.kubeconfig(server: url, namespace: namespace)
                try text.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
            }
            logger.info("kube-sim listening", metadata: ["url": "\(url)", "kubeconfig": "\(kubeconfig ?? "-")"])
            try await tasks.next()
        }
    }
}
