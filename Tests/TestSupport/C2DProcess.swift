import ChildProcesses
import Foundation

/// A `c2d` subprocess, or a tool a test runs: the real binary, configured through its environment like an operator
/// would, its output in `<logDirectory>/<name>.log`.
package typealias C2DProcess = ChildProcess

extension ChildProcess {
    /// The binary under test: `C2D_BINARY`, or this checkout's debug build.
    package static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["C2D_BINARY"] { return URL(fileURLWithPath: path) }
        return TestEnvironment.repositoryRoot.appendingPathComponent(".build/debug/c2d")
    }

    /// `c2d <arguments>` with the tests' environment plus `environment`.
    package convenience init(
        name: String, arguments: [String], environment: [String: String], logDirectory: URL
    ) throws {
        try self.init(
            name: name, executable: Self.binary.path, arguments: arguments, environment: environment,
            log: logDirectory.appendingPathComponent("\(name).log"))
    }

    /// Any program, found on PATH through /usr/bin/env, with the tests' environment.
    package convenience init(name: String, program: String, arguments: [String], logDirectory: URL) throws {
        try self.init(
            name: name, executable: "/usr/bin/env", arguments: [program] + arguments,
            log: logDirectory.appendingPathComponent("\(name).log"))
    }
}
