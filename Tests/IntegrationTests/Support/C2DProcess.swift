import Foundation

/// A `c2d` subprocess: the real binary, configured through its environment like an operator would.
///
/// Started with posix_spawn and an empty signal mask: Foundation's `Process` hands its own thread's blocked
/// signals (SIGTERM among them) to the child, which then could not be stopped gracefully.
final class C2DProcess: @unchecked Sendable {
    // @unchecked: `status` is guarded by `lock`; everything else is immutable after init.
    let pid: pid_t
    let logFile: URL
    let name: String
    private let lock = NSLock()
    private var status: Int32?

    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["C2D_BINARY"] { return URL(fileURLWithPath: path) }
        return TestEnvironment.repositoryRoot.appendingPathComponent(".build/debug/c2d")
    }

    /// Any program, found on PATH through /usr/bin/env, its output in `<logDirectory>/<name>.log`.
    init(name: String, program: String, arguments: [String], logDirectory: URL) throws {
        self.name = name
        logFile = logDirectory.appendingPathComponent("\(name).log")
        pid = try Self.spawn(
            executable: "/usr/bin/env", arguments: ["/usr/bin/env", program] + arguments,
            environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }, log: logFile.path,
            directory: TestEnvironment.repositoryRoot.path)
    }

    init(name: String, arguments: [String], environment: [String: String], logDirectory: URL) throws {
        self.name = name
        logFile = logDirectory.appendingPathComponent("\(name).log")
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        pid = try Self.spawn(
            executable: Self.binary.path, arguments: [Self.binary.path] + arguments,
            environment: merged.map { "\($0.key)=\($0.value)" }, log: logFile.path,
            directory: TestEnvironment.repositoryRoot.path)
    }

    static func spawn(
        executable: String, arguments: [String], environment: [String], log: String, directory: String
    ) throws -> pid_t {
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
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw TestFailure("cannot start \(executable): errno \(result)") }
        return pid
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

    /// The exit code, or 128 + signal for a child killed by a signal; nil while running.
    var exitCode: Int32? {
        guard let raw = poll() else { return nil }
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }

    /// Graceful stop (SIGTERM), then SIGKILL if it does not exit within `timeout`.
    func stop(timeout: Duration = .seconds(30)) async {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if await waitForExit(timeout: timeout) { return }
        kill(pid, SIGKILL)
        _ = await waitForExit(timeout: .seconds(5))
    }

    func kill9() async {
        guard isRunning else { return }
        kill(pid, SIGKILL)
        _ = await waitForExit(timeout: .seconds(5))
    }

    @discardableResult
    func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    var log: String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }
}
