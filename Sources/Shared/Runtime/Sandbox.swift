import Domain
import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Settings of the algorithm sandbox.
public struct SandboxConfiguration: Sendable, Hashable {
    /// bubblewrap. Default `/usr/bin/bwrap` (Debian's `bubblewrap` package).
    public var bwrapPath: String
    /// util-linux `prlimit`, run inside the sandbox to set resource limits. It must live under /usr (the only host
    /// tree the sandbox sees). Default `/usr/bin/prlimit`.
    public var prlimitPath: String
    /// `RLIMIT_NPROC`. Note that the kernel counts processes per real user, and does not enforce it for root:
    /// it is a guard against fork bombs when the worker runs as an unprivileged user. Default 1024.
    public var maxProcesses: Int
    /// `RLIMIT_NOFILE`. Default 1024.
    public var maxOpenFiles: Int
    /// Host files and directories under /etc that programs need, bound read-only when they exist. /etc as a
    /// whole is never bound: it holds the host's secrets. Default: dynamic linker cache, alternatives, time zone,
    /// TLS roots, passwd/group (no password hashes live there), nsswitch.
    public var systemFiles: [String]
    /// Extra host directories bound read-only at the same place, e.g. an interpreter outside /usr. Default none.
    public var extraReadOnlyPaths: [String]
    /// `PATH` inside the sandbox. Default `/usr/local/bin:/usr/bin:/bin`.
    public var searchPath: String
    /// Longest time `selfCheck()` waits for `bwrap … true`. Default 10 s.
    public var selfCheckTimeout: Duration

    public init(
        bwrapPath: String = "/usr/bin/bwrap", prlimitPath: String = "/usr/bin/prlimit", maxProcesses: Int = 1024,
        maxOpenFiles: Int = 1024, systemFiles: [String] = SandboxConfiguration.defaultSystemFiles,
        extraReadOnlyPaths: [String] = [], searchPath: String = "/usr/local/bin:/usr/bin:/bin",
        selfCheckTimeout: Duration = .seconds(10)
    ) {
        self.bwrapPath = bwrapPath
        self.prlimitPath = prlimitPath
        self.maxProcesses = maxProcesses
        self.maxOpenFiles = maxOpenFiles
        self.systemFiles = systemFiles
        self.extraReadOnlyPaths = extraReadOnlyPaths
        self.searchPath = searchPath
        self.selfCheckTimeout = selfCheckTimeout
    }

    public static let defaultSystemFiles = [
        "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/ssl", "/etc/ca-certificates", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/mime.types",
    ]
}

/// What the algorithm step runs and under which limits.
public struct SandboxSpecification: Sendable, Hashable {
    public var workspace: JobWorkspace
    /// Command line; `$ALGO` stands for `/data/transformations/algorithm`.
    public var entrypoint: String
    /// Input DIDs without `did:op:`, for `DIDS`.
    public var inputDIDs: [String]
    /// The algorithm's DID (empty for raw code), for `TRANSFORMATION_DID`.
    public var transformationDID: String
    /// Wall-clock limit; the sandbox is killed when it is reached.
    public var timeLimitSeconds: Int
    /// Address-space limit (`RLIMIT_AS`), in MiB.
    public var memoryMiB: Int
    /// Largest file the algorithm may write (`RLIMIT_FSIZE`) and size of its private /tmp, in MiB.
    public var diskMiB: Int
    public var allowNetwork: Bool
    /// The image whose root filesystem is the sandbox's root; nil: the host's system directories (read-only).
    public var image: PreparedImage?

    public init(
        workspace: JobWorkspace, entrypoint: String, inputDIDs: [String] = [], transformationDID: String = "",
        timeLimitSeconds: Int, memoryMiB: Int, diskMiB: Int, allowNetwork: Bool = false, image: PreparedImage? = nil
    ) {
        self.workspace = workspace
        self.entrypoint = entrypoint
        self.inputDIDs = inputDIDs
        self.transformationDID = transformationDID
        self.timeLimitSeconds = timeLimitSeconds
        self.memoryMiB = memoryMiB
        self.diskMiB = diskMiB
        self.allowNetwork = allowNetwork
        self.image = image
    }

    /// The job's algorithm step under its environment: time limit = min(`compute.maxtime`, `maxJobDuration`).
    public init(job: Job, environment: ComputeEnvironment, workspace: JobWorkspace, image: PreparedImage? = nil) {
        let stage = job.workflow.stage
        let requested = stage?.compute?.maxtime ?? environment.maxJobDuration
        self.init(
            workspace: workspace,
            entrypoint: stage?.algorithm.container?.entrypoint ?? "",
            inputDIDs: (stage?.input ?? []).enumerated().map {
                WorkflowValidator.inputDirectoryName($0.element, position: $0.offset)
            },
            transformationDID: Self.stripDIDPrefix(stage?.algorithm.id ?? ""),
            timeLimitSeconds: max(1, min(requested, environment.maxJobDuration)),
            memoryMiB: environment.memoryMiB,
            diskMiB: environment.diskMiB,
            allowNetwork: environment.allowNetwork && stage?.compute?.allowNetwork == true, image: image)
    }

    static func stripDIDPrefix(_ did: String) -> String {
        did.hasPrefix("did:op:") ? String(did.dropFirst("did:op:".count)) : did
    }
}

/// How the algorithm step ended.
public enum SandboxTermination: Sendable, Hashable {
    /// The algorithm exited with this code. bubblewrap reports a child killed by signal N as 128 + N.
    case exited(code: Int32)
    /// bubblewrap itself was killed by this signal, by someone other than c2d.
    case killedBySignal(Int32)
    /// The wall-clock limit was reached and the sandbox was killed.
    case timedOut(limitSeconds: Int)
    /// The awaiting task was cancelled (a stop request) and the sandbox was killed.
    case stopped
    /// Nothing ran: the entrypoint could not be parsed or its program does not exist, or bwrap could not be started.
    case couldNotStart(reason: String)
}

/// The algorithm step: runs the entrypoint in a bubblewrap sandbox. No network (unless the environment allows it),
/// a read-only root made of /usr and a few files of /etc only, inputs and algorithm read-only, outputs and logs
/// writable, an unprivileged user with no capabilities, resource limits via `prlimit`, and a wall-clock limit
/// enforced by killing the sandbox. stdout and stderr go to `data/logs/algorithm.log`.
///
/// Memory is limited as address space (`RLIMIT_AS`), not resident memory: programs that reserve large virtual
/// ranges up front (the JVM, Go, some allocators) may need a larger `memoryMiB` than they actually use. CPU count
/// (`ComputeEnvironment.cpus`) is not enforced by the local sandbox.
public struct Sandbox: Sendable {
    public let configuration: SandboxConfiguration
    private let threadPool: NIOThreadPool

    /// Where the algorithm sees its workspace.
    public static let volume = "/data"
    public static let algorithmPath = "/data/transformations/algorithm"

    public init(configuration: SandboxConfiguration = SandboxConfiguration(), threadPool: NIOThreadPool = .singleton) {
        self.configuration = configuration
        self.threadPool = threadPool
    }

    // MARK: Arguments

    /// The environment the algorithm sees: Ocean's variables plus a minimal PATH, HOME and locale.
    public func environment(for specification: SandboxSpecification) -> [(String, String)] {
        let dids = (try? JSONEncoder().encode(specification.inputDIDs)).map { String(decoding: $0, as: UTF8.self) }
        return [
            ("DIDS", dids ?? "[]"),
            ("TRANSFORMATION_DID", specification.transformationDID),
            ("VOLUME", Self.volume),
            ("LOGS", "\(Self.volume)/logs"),
            ("INPUTS", "\(Self.volume)/inputs"),
            ("OUTPUTS", "\(Self.volume)/outputs"),
            ("ALGO", Self.algorithmPath),
            ("PATH", specification.image.map { $0.searchPath ?? Self.imageSearchPath } ?? configuration.searchPath),
            ("HOME", "/tmp"),
            ("LANG", "C.UTF-8"),
        ]
    }

    /// `PATH` in an image that does not set one.
    public static let imageSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The sandbox's root file system and namespaces, shared by jobs and the self-check. With an image, its root
    /// filesystem (read-only) is the root instead of the host's system directories.
    func baseArguments(allowNetwork: Bool, tmpBytes: Int64, image: PreparedImage? = nil) -> [String] {
        var arguments = [
            "--unshare-all"  // user, ipc, pid, net, uts, cgroup namespaces
        ]
        if allowNetwork { arguments.append("--share-net") }
        arguments += [
            "--die-with-parent", "--new-session",
            "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns", "--cap-drop", "ALL",
        ]
        if let image {
            // The image's own /etc; only name resolution comes from the host, and only with network. The mount
            // points exist in the unpacked root (ImageStore), which is never written.
            arguments += ["--ro-bind", image.rootFilesystem.path, "/"]
            if allowNetwork {
                arguments += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
                arguments += ["--ro-bind-try", "/etc/hosts", "/etc/hosts"]
            }
            return arguments + [
                "--proc", "/proc",
                "--dev", "/dev",
                "--size", String(tmpBytes), "--tmpfs", "/tmp",
                "--size", String(tmpBytes), "--tmpfs", "/dev/shm",
            ]
        }
        arguments += ["--ro-bind", "/usr", "/usr"]
        // Merged-/usr systems have /bin, /lib… as links into /usr: recreate the links; otherwise bind them.
        for directory in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: directory) {
                arguments += ["--symlink", target, directory]
            } else {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue {
                    arguments += ["--ro-bind", directory, directory]
                }
            }
        }
        var etc = configuration.systemFiles
        // Name resolution only matters, and is only offered, when the network is.
        if allowNetwork { etc += ["/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf"] }
        for file in etc { arguments += ["--ro-bind-try", file, file] }
        for path in configuration.extraReadOnlyPaths { arguments += ["--ro-bind", path, path] }
        arguments += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", String(tmpBytes), "--tmpfs", "/tmp",
            // Shared memory is a tmpfs too: bounded like /tmp rather than by the host's RAM.
            "--size", String(tmpBytes), "--tmpfs", "/dev/shm",
        ]
        return arguments
    }

    /// The full `bwrap` command line for a job, after the executable. `argv` is the parsed entrypoint.
    public func arguments(for specification: SandboxSpecification, argv: [String]) -> [String] {
        let mebibyte: Int64 = 1 << 20
        let workspace = specification.workspace
        var arguments = baseArguments(
            allowNetwork: specification.allowNetwork, tmpBytes: Int64(specification.diskMiB) * mebibyte,
            image: specification.image)
        arguments += [
            "--ro-bind", workspace.inputs.path, "\(Self.volume)/inputs",
            "--ro-bind", workspace.transformations.path, "\(Self.volume)/transformations",
            "--ro-bind", workspace.ddos.path, "\(Self.volume)/ddos",
            "--bind", workspace.outputs.path, "\(Self.volume)/outputs",
            "--bind", workspace.logs.path, "\(Self.volume)/logs",
            // After every mount point exists: the root tmpfs (and /data) become read-only.
            "--remount-ro", "/",
            "--chdir", Self.volume,
            "--clearenv",
        ]
        for (name, value) in environment(for: specification) { arguments += ["--setenv", name, value] }
        // An image has no prlimit of ours: then prlimit wraps bubblewrap instead (`command(for:argv:)`), and the
        // limits pass to everything bubblewrap starts.
        if specification.image != nil { return arguments + ["--"] + argv }
        return arguments + ["--", configuration.prlimitPath] + limits(specification) + ["--"] + argv
    }

    /// `prlimit`'s limits for the job.
    func limits(_ specification: SandboxSpecification) -> [String] {
        let mebibyte: Int64 = 1 << 20
        return [
            "--as=\(Int64(specification.memoryMiB) * mebibyte)",
            "--fsize=\(Int64(specification.diskMiB) * mebibyte)",
            "--nproc=\(configuration.maxProcesses)",
            "--nofile=\(configuration.maxOpenFiles)",
            "--core=0",
        ]
    }

    /// The program to start and its arguments: bubblewrap running prlimit running the job on the host's system, or
    /// prlimit running bubblewrap running the job in an image.
    public func command(for specification: SandboxSpecification, argv: [String]) -> (
        executable: String, arguments: [String]
    ) {
        let arguments = self.arguments(for: specification, argv: argv)
        guard specification.image != nil else { return (configuration.bwrapPath, arguments) }
        return (configuration.prlimitPath, limits(specification) + ["--", configuration.bwrapPath] + arguments)
    }

    // MARK: Running

    /// Runs the algorithm and waits for it without blocking a thread. Cancelling the calling task kills the
    /// sandbox (SIGKILL to bwrap; `--die-with-parent` and the PID namespace take everything inside with it).
    public func run(_ specification: SandboxSpecification) async -> SandboxTermination {
        let argv: [String]
        do {
            argv = try CommandLineSplitter.split(specification.entrypoint, variables: ["ALGO": Self.algorithmPath])
        } catch {
            return .couldNotStart(reason: "\(error)")
        }
        guard let program = argv.first else { return .couldNotStart(reason: "the entrypoint is empty") }
        if let problem = await checkProgram(program, specification: specification) {
            return .couldNotStart(reason: problem)
        }
        let command = self.command(for: specification, argv: argv)
        let logFile = specification.workspace.algorithmLog
        let output: Int32
        do {
            output = try await threadPool.runIfActive {
                let descriptor = open(logFile.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o644)
                guard descriptor >= 0 else {
                    throw SupervisedProcess.SpawnError(call: "open \(logFile.lastPathComponent)", code: errno)
                }
                return descriptor
            }
        } catch {
            if Task.isCancelled { return .stopped }
            return .couldNotStart(reason: "cannot open the algorithm log: \(error)")
        }
        defer { close(output) }
        let ending = await SupervisedProcess.run(
            executable: command.executable, arguments: command.arguments, output: output,
            timeLimit: .seconds(specification.timeLimitSeconds))
        switch ending {
        case .exited(let code): return .exited(code: code)
        case .signaled(let signal): return .killedBySignal(signal)
        case .timedOut: return .timedOut(limitSeconds: specification.timeLimitSeconds)
        case .cancelled: return .stopped
        case .failedToStart(let reason): return .couldNotStart(reason: "cannot start bubblewrap: \(reason)")
        }
    }

    /// Checks that the entrypoint's program exists in the sandbox, to report "could not start" instead of an exit
    /// code 1 from bwrap's failing exec. /usr is the host's, so host paths under it are the sandbox's paths.
    private func checkProgram(_ program: String, specification: SandboxSpecification) async -> String? {
        let workspace = specification.workspace
        let searchPath = configuration.searchPath
        let extra = configuration.extraReadOnlyPaths
        let image = specification.image
        let imagePath = image.map { $0.searchPath ?? Self.imageSearchPath }
        let found: Bool? = try? await threadPool.runIfActive {
            let manager = FileManager.default
            if let image, let imagePath, !program.hasPrefix("\(Self.volume)/"),
                !(program.contains("/") && !program.hasPrefix("/"))
            {
                let candidates =
                    program.hasPrefix("/") ? [program] : imagePath.split(separator: ":").map { "\($0)/\(program)" }
                return candidates.contains { Self.existsInRoot($0, root: image.rootFilesystem.path) }
            }
            if program.hasPrefix("\(Self.volume)/") {
                let local = workspace.data.appendingPathComponent(String(program.dropFirst(Self.volume.count + 1)))
                return manager.fileExists(atPath: local.path)
            }
            if program.contains("/") && !program.hasPrefix("/") {
                return manager.fileExists(atPath: workspace.data.appendingPathComponent(program).path)
            }
            if program.hasPrefix("/") {
                let visible = ["/usr/", "/bin/", "/sbin/", "/lib"] + extra.map { $0.hasSuffix("/") ? $0 : $0 + "/" }
                return visible.contains { program.hasPrefix($0) } && manager.isExecutableFile(atPath: program)
            }
            return searchPath.split(separator: ":").contains {
                manager.isExecutableFile(atPath: "\($0)/\(program)")
            }
        }
        guard found == false else { return nil }
        return "the entrypoint's program '\(program.prefix(200))' does not exist in the sandbox"
    }

    /// Whether `path` exists inside a root filesystem, following symbolic links as the sandbox would see them
    /// (absolute targets resolve against the root, not the host).
    static func existsInRoot(_ path: String, root: String) -> Bool {
        var pending = path.split(separator: "/").map(String.init)
        var resolved: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component == "." || component.isEmpty { continue }
            if component == ".." {
                _ = resolved.popLast()
                continue
            }
            let candidate = root + "/" + (resolved + [component]).joined(separator: "/")
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: candidate) {
                hops += 1
                if hops > 40 { return false }
                if target.hasPrefix("/") { resolved = [] }
                pending = target.split(separator: "/").map(String.init) + pending
                continue
            }
            guard FileManager.default.fileExists(atPath: candidate) else { return false }
            resolved.append(component)
        }
        return true
    }

    // MARK: Self-check

    /// Runs `bwrap … prlimit … true` with the job sandbox's namespaces and root, and explains what is wrong if it
    /// fails, so a worker can refuse to start instead of failing every job.
    public func selfCheck() async throws(SandboxError) {
        for (tool, package) in [(configuration.bwrapPath, "bubblewrap"), (configuration.prlimitPath, "util-linux")]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw SandboxError(
                code: .toolMissing, message: "\(tool) is not an executable file; install Debian's '\(package)' package")
        }
        let arguments =
            baseArguments(allowNetwork: false, tmpBytes: 1 << 20) + [
                "--remount-ro", "/", "--clearenv", "--setenv", "PATH", configuration.searchPath,
                "--", configuration.prlimitPath, "--as=\(1 << 30)", "--nproc=\(configuration.maxProcesses)", "--",
                "true",
            ]
        let errors = Pipe()
        let ending = await SupervisedProcess.run(
            executable: configuration.bwrapPath, arguments: arguments,
            output: errors.fileHandleForWriting.fileDescriptor, timeLimit: configuration.selfCheckTimeout)
        try? errors.fileHandleForWriting.close()
        // bwrap has exited, so reading to the end returns at once.
        let message =
            (try? await threadPool.runIfActive {
                String(decoding: errors.fileHandleForReading.readDataToEndOfFile().prefix(2000), as: UTF8.self)
            })?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        try? errors.fileHandleForReading.close()
        switch ending {
        case .exited(0):
            return
        case .exited(let code):
            var hint = ""
            if message.contains("namespace") || message.contains("Operation not permitted") {
                hint =
                    " (user namespaces look unavailable: check sysctl kernel.unprivileged_userns_clone and "
                    + "user.max_user_namespaces, or the container's seccomp/AppArmor profile)"
            }
            throw SandboxError(
                code: .unavailable, message: "bubblewrap failed with exit code \(code): \(message)\(hint)")
        case .signaled(let signal):
            throw SandboxError(code: .unavailable, message: "bubblewrap was killed by signal \(signal)")
        case .timedOut:
            throw SandboxError(
                code: .unavailable, message: "bubblewrap did not finish within \(configuration.selfCheckTimeout)")
        case .cancelled:
            throw SandboxError(code: .unavailable, message: "the sandbox self-check was cancelled")
        case .failedToStart(let reason):
            throw SandboxError(code: .unavailable, message: "cannot start \(configuration.bwrapPath): \(reason)")
        }
    }
}

/// A child process started with `posix_spawn` and awaited without blocking the cooperative pool: a dedicated
/// thread waits for it and resumes a continuation. A timer task and task cancellation kill it with SIGKILL.
///
/// Not Foundation's `Process`: it passes on the spawning thread's signal mask (Dispatch and NIO threads block
/// most signals) and ignored signals, and leaks inherited descriptors into the child. Here the child starts with
/// an empty signal mask, default signal handlers, stdin from /dev/null, stdout and stderr to `output`, and every
/// other descriptor closed.
enum SupervisedProcess {
    enum Ending: Sendable, Hashable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
        case cancelled
        case failedToStart(String)
    }

    static func run(
        executable: String, arguments: [String], environment: [String: String] = ["PATH": "/usr/bin:/bin"],
        output: Int32, timeLimit: Duration
    ) async -> Ending {
        let control = KillSwitch()
        let ending: Ending = await withTaskCancellationHandler {
            await withTaskGroup(of: Ending?.self) { group in
                group.addTask {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Ending, Never>) in
                        let pid: pid_t
                        do {
                            pid = try spawn(executable, arguments: arguments, environment: environment, output: output)
                        } catch {
                            control.exited()
                            continuation.resume(returning: .failedToStart("\(error)"))
                            return
                        }
                        control.started(pid: pid)
                        Thread.detachNewThread {
                            continuation.resume(returning: waitForExit(pid, control: control))
                        }
                    }
                }
                group.addTask {
                    // The timer: cancelled (returning nil) when the process ends first.
                    do {
                        try await Task.sleep(for: timeLimit)
                    } catch {
                        return nil
                    }
                    control.kill(because: .timeout)
                    return nil
                }
                var result: Ending = .failedToStart("no result")
                while let next = await group.next() {
                    if let next {
                        result = next
                        group.cancelAll()
                    }
                }
                return result
            }
        } onCancel: {
            control.kill(because: .stop)
        }
        guard case .signaled = ending else { return ending }
        switch control.reason {
        case .timeout: return .timedOut
        case .stop: return .cancelled
        case nil: return ending
        }
    }

    struct SpawnError: Error, CustomStringConvertible {
        var call: String
        var code: Int32
        var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    private static func spawn(
        _ executable: String, arguments: [String], environment: [String: String], output: Int32
    ) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        sigdelset(&allSignals, SIGKILL)
        sigdelset(&allSignals, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        closeInheritedDescriptors(&actions, keeping: output)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard code == 0 else { throw SpawnError(call: "posix_spawn \(executable)", code: code) }
        return pid
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc ≥ 2.34 has `posix_spawn_file_actions_addclosefrom_np`, but Swift's Glibc module does not import it:
    /// it is looked up at run time. Without it, the descriptors open now are closed one by one (descriptors
    /// opened concurrently by other threads are almost always close-on-exec).
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    private static func closeInheritedDescriptors(
        _ actions: inout posix_spawn_file_actions_t, keeping output: Int32
    ) {
        if let addCloseFrom, addCloseFrom(&actions, 3) == 0 { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in open.compactMap({ Int32($0) }) where descriptor > 2 && descriptor != output {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
    }

    /// Blocks the calling (dedicated) thread until the child ends. The child is first observed without being
    /// reaped, so that its pid cannot be reused while a late kill is still possible.
    private static func waitForExit(_ pid: pid_t, control: KillSwitch) -> Ending {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        control.exited()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { return .exited(-1) }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are C macros that Swift does not import.
        let signal = status & 0x7F
        return signal == 0 ? .exited((status >> 8) & 0xFF) : .signaled(signal)
    }

    /// Who killed the process, and the pid to kill; guarded by a lock because cancellation handlers, the timer
    /// and the waiting thread all touch it.
    final class KillSwitch: @unchecked Sendable {
        enum Reason: Sendable {
            case timeout
            case stop
        }

        private let lock = NSLock()
        private var pid: pid_t = 0
        private var hasExited = false
        private var killReason: Reason?

        var reason: Reason? { lock.withLock { killReason } }

        func started(pid: pid_t) {
            let killNow: Bool = lock.withLock {
                self.pid = pid
                return killReason != nil && !hasExited
            }
            if killNow { Glibc.kill(pid, SIGKILL) }
        }

        func exited() {
            lock.withLock { hasExited = true }
        }

        func kill(because reason: Reason) {
            let target: pid_t = lock.withLock {
                guard killReason == nil, !hasExited else { return 0 }
                killReason = reason
                return pid
            }
            // pid 0 would signal our own process group: only a started process is killed; `started` catches up.
            if target > 0 { Glibc.kill(target, SIGKILL) }
        }
    }
}
