import Foundation

/// A `c2d` subprocess: the real binary, configured through its environment like an operator would.
final class C2DProcess: @unchecked Sendable {
    // @unchecked: `process` is only mutated before launch; Foundation's Process is thread-safe after that.
    let process = Process()
    let logFile: URL
    let name: String

    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["C2D_BINARY"] { return URL(fileURLWithPath: path) }
        return TestEnvironment.repositoryRoot.appendingPathComponent(".build/debug/c2d")
    }

    init(name: String, arguments: [String], environment: [String: String], logDirectory: URL) throws {
        self.name = name
        logFile = logDirectory.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        process.currentDirectoryURL = TestEnvironment.repositoryRoot
        try process.run()
    }

    var isRunning: Bool { process.isRunning }
    var exitCode: Int32? { process.isRunning ? nil : process.terminationStatus }

    /// Graceful stop (SIGTERM), then SIGKILL if it does not exit within `timeout`.
    func stop(timeout: Duration = .seconds(30)) async {
        guard process.isRunning else { return }
        process.terminate()
        if await waitForExit(timeout: timeout) { return }
        kill(process.processIdentifier, SIGKILL)
        _ = await waitForExit(timeout: .seconds(5))
    }

    func kill9() async {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        _ = await waitForExit(timeout: .seconds(5))
    }

    @discardableResult
    func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    var log: String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }
}
