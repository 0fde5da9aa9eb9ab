import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process for the benchmarks that run c2d as separate processes, its output in a log file.
///
/// Started with `posix_spawn` and an empty signal mask and default dispositions: Foundation's `Process` hands its
/// thread's blocked signals (SIGTERM among them) to the child, which then could not be stopped gracefully.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `status` is guarded by `lock`; everything else is immutable after init.
    let name: String
    let pid: pid_t
    let logFile: URL
    private let lock = NSLock()
    private var status: Int32?

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// Starts `executable` with `arguments` (not counting argv[0]) and the current environment plus `environment`.
    init(name: String, executable: String, arguments: [String], environment: [String: String], log: URL) throws {
        self.name = name
        self.logFile = log
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw SpawnError(description: "cannot start \(executable): errno \(result)") }
        self.pid = pid
    }

    /// Reaps the child if it has exited; returns its wait status.
    private func poll() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        if waitpid(pid, &raw, WNOHANG) == pid { status = raw }
        return status
    }

    var isRunning: Bool { poll() == nil }

    /// Graceful stop (SIGTERM), then SIGKILL if it does not exit within `timeout`.
    func stop(timeout: Duration = .seconds(30)) async {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if await waitForExit(timeout: timeout) { return }
        kill9()
        _ = await waitForExit(timeout: .seconds(5))
    }

    func kill9() {
        guard isRunning else { return }
        kill(pid, SIGKILL)
    }

    @discardableResult
    func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// The end of the log, for error messages.
    func logTail(_ bytes: Int = 3000) -> String {
        String(((try? String(contentsOf: logFile, encoding: .utf8)) ?? "").suffix(bytes))
    }
}
