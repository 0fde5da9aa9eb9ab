import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs the containers of c2d's own steps (`c2d pod configure|await-inputs|signal-end|relay-log|publish`) as real
/// processes of the `c2d` binary, when ``KubernetesEmulatorConfiguration/stepRunner`` is set: the emulator then
/// behaves like a kubelet for them — their volumes are directories, their environment is resolved from the pod spec
/// (literal values and Secret references), SIGTERM and SIGKILL stop them, their exit status and termination message
/// become the container's terminated state, and their output is the container's log. The algorithm stays simulated.
final class StepProcesses: @unchecked Sendable {
    // Processes are touched only under `lock`; the Cluster actor is the only caller besides termination handlers.
    private let lock = NSLock()
    private var running: [Int32: Process] = [:]
    let configuration: KubernetesEmulatorConfiguration.StepRunner

    init(_ configuration: KubernetesEmulatorConfiguration.StepRunner) {
        self.configuration = configuration
    }

    /// Whether this container is one of c2d's steps, run for real.
    func runs(_ words: [String]) -> Bool {
        guard let first = words.first else { return false }
        return first == "c2d" || first.hasSuffix("/c2d")
    }

    var root: URL { URL(fileURLWithPath: configuration.workDirectory) }

    func claimDirectory(_ claimKey: String) -> URL {
        root.appendingPathComponent("volumes").appendingPathComponent(claimKey.replacingOccurrences(of: "/", with: "_"))
    }

    func podDirectory(_ uid: String) -> URL {
        root.appendingPathComponent("pods").appendingPathComponent(uid)
    }

    func logFile(_ uid: String, _ container: String) -> URL {
        podDirectory(uid).appendingPathComponent("\(container).log")
    }

    func terminationFile(_ uid: String, _ container: String) -> URL {
        podDirectory(uid).appendingPathComponent("\(container).termination")
    }

    /// Starts `words` (command and args, the first being `c2d`) with `environment`; answers its pid, or why it
    /// could not start. `exited` is called once with the exit code (128 + signal when killed).
    func start(
        _ words: [String], environment: [String: String], uid: String, container: String,
        exited: @escaping @Sendable (Int) -> Void
    ) -> Result<Int32, any Error> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: configuration.executable)
        process.arguments = Array(words.dropFirst())
        var env = environment
        env["PATH"] = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        env["HOME"] = podDirectory(uid).path
        process.environment = env
        do {
            try FileManager.default.createDirectory(at: podDirectory(uid), withIntermediateDirectories: true)
            let log = logFile(uid, container)
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            process.terminationHandler = { [weak self] finished in
                try? handle.close()
                let code =
                    finished.terminationReason == .uncaughtSignal
                    ? 128 + Int(finished.terminationStatus) : Int(finished.terminationStatus)
                self?.forget(finished.processIdentifier)
                exited(code)
            }
            try process.run()
        } catch {
            return .failure(error)
        }
        lock.lock()
        running[process.processIdentifier] = process
        lock.unlock()
        return .success(process.processIdentifier)
    }

    func signal(_ pid: Int32, _ signal: Int32) {
        lock.lock()
        let alive = running[pid] != nil
        lock.unlock()
        if alive { kill(pid, signal) }
    }

    private func forget(_ pid: Int32) {
        lock.lock()
        running[pid] = nil
        lock.unlock()
    }

    /// Kills every process still running (emulator shutdown).
    func killAll() {
        lock.lock()
        let pids = Array(running.keys)
        lock.unlock()
        for pid in pids { kill(pid, SIGKILL) }
    }

    func removeDirectory(_ url: URL) {
        try? FileManager.default.removeItem(at: url)
    }
}
