import Foundation
import NIOPosix

/// A step's own log (`adminlogs/configure.log`, `adminlogs/publish.log`): timestamped lines, appended as they
/// happen so a crash leaves everything up to the crash. It is handed to the job's owner, so lines must never hold
/// secrets (URLs are redacted with `AdminLog.redact`). Writes run on the thread pool.
package actor AdminLog {
    package nonisolated let file: URL
    private let threadPool: NIOThreadPool
    private var handle: FileHandle?

    /// Opens (creating or appending to) `file`.
    package init(file: URL, threadPool: NIOThreadPool = .singleton) async throws {
        self.file = file
        self.threadPool = threadPool
        handle = try await threadPool.runIfActive {
            if !FileManager.default.fileExists(atPath: file.path) {
                _ = FileManager.default.createFile(atPath: file.path, contents: nil)
            }
            let handle = try FileHandle(forWritingTo: file)
            try handle.seekToEnd()
            return handle
        }
    }

    /// Appends one line: `<ISO 8601 time> <message>`. A failing write is dropped: the log is a record of the step,
    /// and losing a line must not fail the job.
    package func line(_ message: String) async {
        guard let handle else { return }
        let text = "\(Date.now.formatted(.iso8601)) \(message.replacingOccurrences(of: "\n", with: " "))\n"
        let threadPool = self.threadPool
        _ = try? await threadPool.runIfActive { try handle.write(contentsOf: Data(text.utf8)) }
    }

    /// Flushes and closes the file; later lines are ignored.
    package func close() async {
        guard let handle else { return }
        self.handle = nil
        _ = try? await threadPool.runIfActive {
            try handle.synchronize()
            try handle.close()
        }
    }

    /// A URL as it may appear in a log: scheme, host, port and path; user info, query and fragment (where signed
    /// URLs and tokens live) are dropped.
    package static func redact(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.host != nil else {
            return "<unparsable URL>"
        }
        let hadQuery = components.query != nil
        components.user = nil
        components.password = nil
        components.query = nil
        components.fragment = nil
        return (components.string ?? "<unparsable URL>") + (hadQuery ? "?…" : "")
    }
}
