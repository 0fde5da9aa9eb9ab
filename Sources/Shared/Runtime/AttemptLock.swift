import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive `flock` on `<attempt directory>.lock`, held by the worker running that attempt. The kernel drops
/// it when the worker dies, so a later sweep can tell the workspaces (and mounted output volumes) of dead workers
/// from those of live ones sharing the work root. Blocking calls, for a thread pool.
final class AttemptLock: Sendable {
    private let descriptor: Mutex<Int32>
    let file: String

    static func lockFile(for directory: URL) -> String { directory.path + ".lock" }

    /// Takes the lock (another worker holding it means the attempt is running elsewhere: refused).
    init(directory: URL) throws {
        file = Self.lockFile(for: directory)
        try FileManager.default.createDirectory(
            at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
        let descriptor = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw RuntimeIssue("cannot open \(file): \(String(cString: strerror(errno)))") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw RuntimeIssue("\(file) is locked: the attempt is running in another worker")
        }
        self.descriptor = Mutex(descriptor)
    }

    /// Deletes the lock file and lets go (the workspace is gone by now).
    func release() {
        descriptor.withLock { descriptor in
            guard descriptor >= 0 else { return }
            unlink(file)
            close(descriptor)
            descriptor = -1
        }
    }

    deinit { release() }

    /// Removes what dead workers left under `workRoot`: for each lock file nobody holds, the attempt's cgroup,
    /// output volume (unmounted) and directory. Returns how many attempts were cleared.
    static func sweep(workRoot: URL, tools: OutputVolume.Tools, cgroups: CgroupDriver? = nil) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: workRoot.path)) ?? []
        var cleared = 0
        for name in names where name.hasSuffix(".lock") {
            let path = workRoot.appendingPathComponent(name).path
            let descriptor = open(path, O_RDWR | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            defer { close(descriptor) }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { continue }
            let attempt = String(name.dropLast(".lock".count))
            let directory = workRoot.appendingPathComponent(attempt)
            cgroups.map { CgroupDriver.Job(driver: $0, name: attempt).destroy(timeout: .seconds(1)) }
            OutputVolume(attemptDirectory: directory).remove(tools: tools)
            try? FileManager.default.removeItem(at: directory)
            unlink(path)
            cleared += 1
        }
        return cleared
    }
}
