import Domain
import Foundation
import NIOPosix

/// The files of one attempt of a job, in Ocean's volume layout. `data` is what the algorithm sees as `/data`:
///
/// ```
/// data/inputs/<did>/<n>                dataset files, n = 0..files-1
/// data/inputs/algoCustomData.json      the algorithm's custom data, when given
/// data/transformations/algorithm       the algorithm
/// data/ddos                            dataset descriptions (empty: c2d gets none)
/// data/outputs                         written by the algorithm
/// data/logs                            algorithm.log and the algorithm's own logs
/// data/adminlogs                       configure.log, publish.log (never visible to the algorithm)
/// ```
///
/// The local executor keeps it at `<workRoot>/<jobID>-<attempt>/data`; a pod uses its volume (`/data`) directly.
package struct JobWorkspace: Sendable, Hashable {
    /// The directory mounted as `/data`.
    package let data: URL
    /// The directory that holds `outputs/` and `logs/`, what the algorithm writes: `data` itself, or the job's
    /// size-capped output volume when the local executor mounts one.
    package let writable: URL

    package init(data: URL) {
        self.data = data.standardizedFileURL
        self.writable = self.data
    }

    private init(data: URL, writable: URL) {
        self.data = data
        self.writable = writable.standardizedFileURL
    }

    /// The same workspace with `outputs/` and `logs/` under `directory`.
    package func withWritable(_ directory: URL) -> JobWorkspace {
        JobWorkspace(data: data, writable: directory)
    }

    /// `<workRoot>/<jobID>-<attempt>/data`: deterministic, so a retried attempt never shares files with another.
    package init(workRoot: URL, jobID: JobID, attempt: Int) {
        self.init(
            data: Self.directory(workRoot: workRoot, jobID: jobID, attempt: attempt).appendingPathComponent("data"))
    }

    /// The workspace of an attempt the local executor is running, as a reader outside the executor (the gateway's
    /// live logs) finds it: with `outputs/` and `logs/` on the attempt's output volume when one is mounted there.
    package static func ofRunningAttempt(workRoot: URL, jobID: JobID, attempt: Int) -> JobWorkspace {
        let workspace = JobWorkspace(workRoot: workRoot, jobID: jobID, attempt: attempt)
        let volume = OutputVolume(attemptDirectory: directory(workRoot: workRoot, jobID: jobID, attempt: attempt))
        return OutputVolume.isMountPoint(volume.mountPoint.path) ? workspace.withWritable(volume.mountPoint) : workspace
    }

    /// The per-attempt directory that holds `data`.
    package static func directory(workRoot: URL, jobID: JobID, attempt: Int) -> URL {
        workRoot.appendingPathComponent("\(jobID)-\(attempt)", isDirectory: true)
    }

    /// The directory that holds `data` (and nothing else); `remove()` deletes it.
    package var root: URL { data.deletingLastPathComponent() }

    package var inputs: URL { data.appendingPathComponent("inputs", isDirectory: true) }
    package var algoCustomData: URL { inputs.appendingPathComponent("algoCustomData.json") }
    package var transformations: URL { data.appendingPathComponent("transformations", isDirectory: true) }
    package var algorithm: URL { transformations.appendingPathComponent("algorithm") }
    package var ddos: URL { data.appendingPathComponent("ddos", isDirectory: true) }
    package var outputs: URL { writable.appendingPathComponent("outputs", isDirectory: true) }
    package var logs: URL { writable.appendingPathComponent("logs", isDirectory: true) }
    package var algorithmLog: URL { logs.appendingPathComponent("algorithm.log") }
    package var adminLogs: URL { data.appendingPathComponent("adminlogs", isDirectory: true) }
    package var configureLog: URL { adminLogs.appendingPathComponent("configure.log") }
    package var publishLog: URL { adminLogs.appendingPathComponent("publish.log") }

    /// The host file behind a path the algorithm sees under `/data`.
    package func hostPath(ofSandboxPath path: String) -> URL? {
        guard path.hasPrefix("/data/") else { return nil }
        let relative = String(path.dropFirst("/data/".count))
        let writableTop = ["outputs", "logs"].contains { relative == $0 || relative.hasPrefix($0 + "/") }
        return (writableTop ? writable : data).appendingPathComponent(relative)
    }

    /// Where file `n` of an input goes: `inputs/<inputDirectoryName>/<n>`.
    package func inputFile(_ input: Workflow.Input, position: Int, file: Int) -> URL {
        inputs.appendingPathComponent(WorkflowValidator.inputDirectoryName(input, position: position))
            .appendingPathComponent(String(file))
    }

    /// Creates a fresh workspace for an attempt. Leftovers of the same attempt (a worker that died half way) are
    /// removed first, so every attempt starts from an empty volume.
    package static func create(
        workRoot: URL, jobID: JobID, attempt: Int, threadPool: NIOThreadPool = .singleton
    ) async throws -> JobWorkspace {
        let workspace = JobWorkspace(workRoot: workRoot, jobID: jobID, attempt: attempt)
        try await threadPool.runIfActive {
            let root = workspace.root
            if FileManager.default.fileExists(atPath: root.path) {
                try FileManager.default.removeItem(at: root)
            }
            try workspace.createLayoutBlocking()
        }
        return workspace
    }

    /// Creates the layout's directories (idempotent). Blocking.
    package func createLayoutBlocking() throws {
        let directories = [inputs, transformations, ddos, outputs, logs, adminLogs]
        for directory in directories {
            // 0755: the sandbox maps its user to the worker's user, so owner-writable is enough for outputs/logs.
            try FileManager.default.createDirectory(
                at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
    }

    /// Deletes the attempt's directory and everything in it.
    package func remove(threadPool: NIOThreadPool = .singleton) async throws {
        let root = self.root
        try await threadPool.runIfActive {
            guard FileManager.default.fileExists(atPath: root.path) else { return }
            try FileManager.default.removeItem(at: root)
        }
    }
}
