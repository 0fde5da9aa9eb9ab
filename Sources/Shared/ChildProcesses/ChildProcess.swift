import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process whose output goes to a log file: the c2d processes the benchmarks and the integration tests
/// start, and the scripts and tools they run.
///
/// Started with `posix_spawn` and an empty signal mask and default dispositions: Foundation's `Process` hands its
/// thread's blocked signals (SIGTERM among them) to the child, which then could not be stopped gracefully. Its exit
/// is found by polling `waitpid`, never by waiting on an inherited descriptor, so a script that leaves a daemon
/// behind (`scripts/services start`) still counts as finished.
package final class ChildProcess: @unchecked Sendable {
    // @unchecked: `status` is guarded by `lock`; everything else is immutable after init.
    package let name: String
    package let pid: pid_t
    package let logFile: URL
    private let lock = NSLock()
    private var status: Int32?

    package struct SpawnError: Error, CustomStringConvertible {
        package var description: String
    }

    /// Starts `executable` with `arguments` (not counting argv[0]) and the current environment plus `environment`;
    /// standard input is /dev/null, standard output and error go to `log` (truncated).
    package init(
        name: String, executable: String, arguments: [String], environment: [String: String] = [:], log: URL
    ) throws {
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

    package var isRunning: Bool { poll() == nil }

    /// The exit code, or 128 + signal for a child killed by a signal; nil while running.
    package var exitCode: Int32? {
        guard let raw = poll() else { return nil }
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }

    /// Graceful stop (SIGTERM), then SIGKILL if it does not exit within `timeout`.
    package func stop(timeout: Duration = .seconds(30)) async {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if await waitForExit(timeout: timeout) { return }
        await kill9()
    }

    /// SIGKILL, then up to 5 s for the child to be reaped.
    package func kill9() async {
        guard isRunning else { return }
        kill(pid, SIGKILL)
        _ = await waitForExit(timeout: .seconds(5))
    }

    /// Whether the child exited within `timeout`.
    @discardableResult
    package func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// Everything the child wrote so far.
    package var log: String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    /// The end of the log, for error messages.
    package func logTail(_ bytes: Int = 3000) -> String {
        String(log.suffix(bytes))
    }
}
