import ChildProcesses
import Foundation

/// The checkout the tests run in, the services `scripts/services` runs for them, and free ports.
package enum TestEnvironment {
    /// The repository's root, found from this file (symlinks resolved, for scratch packages).
    package static let repositoryRoot = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `scripts/services` of this checkout, or `C2D_SERVICES_SCRIPT` (which `scripts/services env` exports).
    package static var servicesScript: URL {
        if let path = ProcessInfo.processInfo.environment["C2D_SERVICES_SCRIPT"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        return repositoryRoot.appendingPathComponent("scripts/services")
    }

    /// Runs `scripts/services` (stop or start a service for fault tests) with the tests' environment, so it acts
    /// on this checkout's services.
    package static func services(_ arguments: String...) async throws {
        try await run(servicesScript, arguments)
    }

    /// Where the S3-compatible server for tests answers: `C2D_TEST_S3_ENDPOINT`, or moto on `C2D_S3_PORT`
    /// (default 59000).
    package static var s3Endpoint: String {
        let environment = ProcessInfo.processInfo.environment
        if let endpoint = environment["C2D_TEST_S3_ENDPOINT"], !endpoint.isEmpty { return endpoint }
        return "http://127.0.0.1:\(environment["C2D_S3_PORT"] ?? "59000")"
    }

    /// Starts moto through `scripts/s3-server` (idempotent).
    package static func startS3Server() async throws {
        try await run(repositoryRoot.appendingPathComponent("scripts/s3-server"), ["start"])
    }

    /// Runs a script or tool with the tests' environment; throws with its output if it fails or takes longer than
    /// `timeout`.
    package static func run(_ executable: URL, _ arguments: [String], timeout: Duration = .seconds(300))
        async throws
    {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-test-run-\(UUID()).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let process = try ChildProcess(
            name: executable.lastPathComponent, executable: executable.path, arguments: arguments, log: log)
        let command = ([executable.lastPathComponent] + arguments).joined(separator: " ")
        guard await process.waitForExit(timeout: timeout) else {
            await process.kill9()
            throw TestFailure("\(command) did not finish within \(timeout):\n\(process.logTail())")
        }
        guard process.exitCode == 0 else {
            throw TestFailure("\(command) exited with \(process.exitCode ?? -1):\n\(process.logTail())")
        }
    }

    /// A loopback port that was free a moment ago.
    package static func freePort() throws -> Int {
        do {
            return try LoopbackPort.free()
        } catch {
            throw TestFailure("no free port")
        }
    }
}

/// A test's own failure, with what went wrong.
package struct TestFailure: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
