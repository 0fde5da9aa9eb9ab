import Domain
import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Settings of the algorithm sandbox.
package struct SandboxConfiguration: Sendable, Hashable {
    /// bubblewrap. Default `/usr/bin/bwrap` (Debian's `bubblewrap` package).
    package var bwrapPath: String
    /// util-linux `prlimit`, run inside the sandbox to set resource limits. It must live under /usr (the only host
    /// tree the sandbox sees). Default `/usr/bin/prlimit`.
    package var prlimitPath: String
    /// Processes (and threads) of one job: `pids.max` of its cgroup, or without a cgroup `RLIMIT_NPROC` (which the
    /// kernel counts per real user and does not enforce for root). Default 1024.
    package var maxProcesses: Int
    /// `RLIMIT_NOFILE`. Default 1024.
    package var maxOpenFiles: Int
    /// Host files and directories under /etc that programs need, bound read-only when they exist. /etc as a
    /// whole is never bound: it holds the host's secrets. Default: dynamic linker cache, alternatives, time zone,
    /// TLS roots, passwd/group (no password hashes live there), nsswitch.
    package var systemFiles: [String]
    /// Extra host directories bound read-only at the same place, e.g. an interpreter outside /usr. Default none.
    package var extraReadOnlyPaths: [String]
    /// `PATH` inside the sandbox. Default `/usr/local/bin:/usr/bin:/bin`.
    package var searchPath: String
    /// Longest time `selfCheck()` waits for `bwrap … true`. Default 10 s.
    package var selfCheckTimeout: Duration
    /// Hard limits beyond rlimits: a cgroup per job, a size-capped output volume, a network namespace of its own
    /// for `allowNetwork` jobs. Default: wherever the host allows (`auto`).
    package var isolation: SandboxIsolationConfiguration
    /// The shell that places the sandbox in its job's cgroup before it starts. Default `/bin/sh`.
    package var shellPath: String

    package init(
        bwrapPath: String = "/usr/bin/bwrap", prlimitPath: String = "/usr/bin/prlimit", maxProcesses: Int = 1024,
        maxOpenFiles: Int = 1024, systemFiles: [String] = SandboxConfiguration.defaultSystemFiles,
        extraReadOnlyPaths: [String] = [], searchPath: String = "/usr/local/bin:/usr/bin:/bin",
        selfCheckTimeout: Duration = .seconds(10), isolation: SandboxIsolationConfiguration = .init(),
        shellPath: String = "/bin/sh"
    ) {
        self.isolation = isolation
        self.shellPath = shellPath
        self.bwrapPath = bwrapPath
        self.prlimitPath = prlimitPath
        self.maxProcesses = maxProcesses
        self.maxOpenFiles = maxOpenFiles
        self.systemFiles = systemFiles
        self.extraReadOnlyPaths = extraReadOnlyPaths
        self.searchPath = searchPath
        self.selfCheckTimeout = selfCheckTimeout
    }

    package static let defaultSystemFiles = [
        "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/ssl", "/etc/ca-certificates", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/mime.types",
    ]
}

/// What the algorithm step runs and under which limits.
package struct SandboxSpecification: Sendable, Hashable {
    package var workspace: JobWorkspace
    /// Command line; `$ALGO` stands for `/data/transformations/algorithm`.
    package var entrypoint: String
    /// Input DIDs without `did:op:`, for `DIDS`.
    package var inputDIDs: [String]
    /// The algorithm's DID (empty for raw code), for `TRANSFORMATION_DID`.
    package var transformationDID: String
    /// Wall-clock limit; the sandbox is killed when it is reached.
    package var timeLimitSeconds: Int
    /// Address-space limit (`RLIMIT_AS`), in MiB.
    package var memoryMiB: Int
    /// Largest file the algorithm may write (`RLIMIT_FSIZE`) and size of its private /tmp, in MiB.
    package var diskMiB: Int
    /// CPUs the job may use (its cgroup's CPU quota).
    package var cpus: Double
    package var allowNetwork: Bool
    /// The image whose root filesystem is the sandbox's root; nil: the host's system directories (read-only).
    package var image: PreparedImage?

    package init(
        workspace: JobWorkspace, entrypoint: String, inputDIDs: [String] = [], transformationDID: String = "",
        timeLimitSeconds: Int, memoryMiB: Int, diskMiB: Int, cpus: Double = 1, allowNetwork: Bool = false,
        image: PreparedImage? = nil
    ) {
        self.cpus = cpus
        self.image = image
        self.workspace = workspace
        self.entrypoint = entrypoint
        self.inputDIDs = inputDIDs
        self.transformationDID = transformationDID
        self.timeLimitSeconds = timeLimitSeconds
        self.memoryMiB = memoryMiB
        self.diskMiB = diskMiB
        self.allowNetwork = allowNetwork
    }

    /// The job's algorithm step under its environment: time limit = min(`compute.maxtime`, `maxJobDuration`).
    package init(job: Job, environment: ComputeEnvironment, workspace: JobWorkspace, image: PreparedImage? = nil) {
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
            cpus: environment.cpus,
            allowNetwork: environment.allowNetwork && stage?.compute?.allowNetwork == true, image: image)
    }

    static func stripDIDPrefix(_ did: String) -> String {
        did.hasPrefix("did:op:") ? String(did.dropFirst("did:op:".count)) : did
    }
}

/// How the algorithm step ended.
package enum SandboxTermination: Sendable, Hashable {
    /// The algorithm exited with this code. bubblewrap reports a child killed by signal N as 128 + N.
    case exited(code: Int32)
    /// bubblewrap itself was killed by this signal, by someone other than c2d.
    case killedBySignal(Int32)
    /// The wall-clock limit was reached and the sandbox was killed.
    case timedOut(limitSeconds: Int)
    /// The awaiting task was cancelled (a stop request) and the sandbox was killed.
    case stopped
    /// The kernel killed the algorithm (or all of it) for exceeding the job's memory limit; `code` is what
    /// bubblewrap reported.
    case outOfMemory(code: Int32, limitMiB: Int)
    /// Nothing ran: the entrypoint could not be parsed or its program does not exist, or bwrap could not be started.
    case couldNotStart(reason: String)
}

/// Which hard limits one run of the sandbox uses (what the host allows, ``SandboxHost``).
package struct SandboxPlan: Sendable, Hashable {
    /// Memory, processes and CPU are limited by the job's cgroup, so the per-process `RLIMIT_AS` and
    /// `RLIMIT_NPROC` are left out (they would only get in the way of programs that reserve address space).
    package var cgroup: Bool
    /// An `allowNetwork` job gets a network namespace of its own with a routed link (``SandboxNetwork``) instead
    /// of the worker's network.
    package var isolatedNetwork: Bool

    package init(cgroup: Bool = false, isolatedNetwork: Bool = false) {
        self.cgroup = cgroup
        self.isolatedNetwork = isolatedNetwork
    }

    /// rlimits only, and network jobs share the worker's network: c2d's earlier sandbox.
    package static let basic = SandboxPlan()
}

/// The algorithm step: runs the entrypoint in a bubblewrap sandbox. No network (unless the environment allows it),
/// a read-only root made of /usr and a few files of /etc only, inputs and algorithm read-only, outputs and logs
/// writable, an unprivileged user with no capabilities, and a wall-clock limit enforced by killing the sandbox.
/// stdout and stderr go to `logs/algorithm.log`.
///
/// Where the host allows (root; see ``SandboxIsolationConfiguration``), each job runs in a cgroup of its own —
/// memory including its /tmp and /dev/shm (tmpfs pages are charged to the cgroup that writes them), process count
/// and CPU quota — and an `allowNetwork` job gets a network namespace of its own whose only way out is to public
/// addresses. Elsewhere memory is limited per process as address space (`RLIMIT_AS`) and CPU not at all.
package struct Sandbox: Sendable {
    package let configuration: SandboxConfiguration
    private let threadPool: NIOThreadPool
    let host: SandboxHost

    /// Where the algorithm sees its workspace.
    package static let volume = "/data"
    package static let algorithmPath = "/data/transformations/algorithm"

    package init(configuration: SandboxConfiguration = SandboxConfiguration(), threadPool: NIOThreadPool = .singleton) {
        self.configuration = configuration
        self.threadPool = threadPool
        self.host = SandboxHost(configuration: configuration.isolation)
    }

    /// What this host lets the sandbox enforce; prepared on first use (cgroup parent, nftables table).
    func prepared() async -> SandboxHost.Prepared? {
        let host = self.host
        return try? await threadPool.runIfActive { host.prepared() }
    }

    /// The programs output volumes need, nil when this host cannot mount them.
    package func outputVolumeTools() async -> OutputVolume.Tools? {
        await prepared()?.volumeTools
    }

    // MARK: Arguments

    /// The environment the algorithm sees: Ocean's variables plus a minimal PATH, HOME and locale.
    package func environment(for specification: SandboxSpecification) -> [(String, String)] {
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

    /// How the sandbox reaches the network.
    enum NetworkUse: Hashable {
        /// Only a loopback interface of its own.
        case none
        /// The worker's network namespace (basic isolation).
        case shared
        /// A namespace of its own with a link set up after start: name resolution from these files.
        case isolated(resolvConf: String, hosts: String)
    }

    /// `PATH` in an image that does not set one.
    package static let imageSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The sandbox's root file system and namespaces, shared by jobs and the self-check. With an image, its root
    /// filesystem (read-only) is the root instead of the host's system directories.
    func baseArguments(network: NetworkUse, tmpBytes: Int64, image: PreparedImage? = nil) -> [String] {
        var arguments = [
            "--unshare-all"  // user, ipc, pid, net, uts, cgroup namespaces
        ]
        if network == .shared { arguments.append("--share-net") }
        arguments += [
            "--die-with-parent", "--new-session",
            "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns", "--cap-drop", "ALL",
        ]
        let scratch = [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", String(tmpBytes), "--tmpfs", "/tmp",
            // Shared memory is a tmpfs too: bounded like /tmp rather than by the host's RAM.
            "--size", String(tmpBytes), "--tmpfs", "/dev/shm",
        ]
        if let image {
            // The image's own /etc; only name resolution comes from outside, and only with network. The mount points
            // exist in the unpacked root (ImageStore), which is never written.
            arguments += ["--ro-bind", image.rootFilesystem.path, "/"]
            switch network {
            case .none: break
            case .shared:
                arguments += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
                arguments += ["--ro-bind-try", "/etc/hosts", "/etc/hosts"]
            case .isolated(let resolvConf, let hosts):
                arguments += ["--ro-bind", resolvConf, "/etc/resolv.conf", "--ro-bind", hosts, "/etc/hosts"]
            }
            return arguments + scratch
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
        switch network {
        case .none: break
        // Name resolution only matters, and is only offered, when the network is.
        case .shared: etc += ["/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf"]
        // The host's own files would name its internal hosts and resolvers: the sandbox gets its own.
        case .isolated(let resolvConf, let hosts):
            arguments += ["--ro-bind", resolvConf, "/etc/resolv.conf", "--ro-bind", hosts, "/etc/hosts"]
        }
        for file in etc { arguments += ["--ro-bind-try", file, file] }
        for path in configuration.extraReadOnlyPaths { arguments += ["--ro-bind", path, path] }
        return arguments + scratch
    }

    /// Descriptors the sandbox gets when its network is set up after start: bubblewrap reports the sandbox's pid
    /// on the first and waits for a byte on the second before it runs the algorithm.
    static let infoDescriptor: Int32 = 3
    static let blockDescriptor: Int32 = 4

    /// The files that configure name resolution of an isolated sandbox, next to its `data`.
    static func networkFiles(_ workspace: JobWorkspace) -> (resolvConf: URL, hosts: URL) {
        (workspace.root.appendingPathComponent("resolv.conf"), workspace.root.appendingPathComponent("hosts"))
    }

    /// The full `bwrap` command line for a job, after the executable. `argv` is the parsed entrypoint.
    package func arguments(
        for specification: SandboxSpecification, argv: [String], plan: SandboxPlan = .basic
    ) -> [String] {
        let mebibyte: Int64 = 1 << 20
        let workspace = specification.workspace
        let network: NetworkUse
        if !specification.allowNetwork {
            network = .none
        } else if plan.isolatedNetwork {
            let files = Self.networkFiles(workspace)
            network = .isolated(resolvConf: files.resolvConf.path, hosts: files.hosts.path)
        } else {
            network = .shared
        }
        var arguments = baseArguments(
            network: network, tmpBytes: Int64(specification.diskMiB) * mebibyte, image: specification.image)
        if case .isolated = network {
            arguments += ["--info-fd", String(Self.infoDescriptor), "--block-fd", String(Self.blockDescriptor)]
        }
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
        // An image has no prlimit of ours: then prlimit wraps bubblewrap instead (`launch`), and the limits pass to
        // everything bubblewrap starts.
        if specification.image != nil { return arguments + ["--"] + argv }
        return arguments + ["--", configuration.prlimitPath] + limits(specification, plan: plan) + ["--"] + argv
    }

    /// `prlimit`'s limits for the job. With a cgroup, memory and process count are the cgroup's, so the
    /// per-process `RLIMIT_AS` and `RLIMIT_NPROC` are left out.
    func limits(_ specification: SandboxSpecification, plan: SandboxPlan) -> [String] {
        let mebibyte: Int64 = 1 << 20
        var limits: [String] = []
        if !plan.cgroup {
            limits += ["--as=\(Int64(specification.memoryMiB) * mebibyte)", "--nproc=\(configuration.maxProcesses)"]
        }
        return limits + [
            "--fsize=\(Int64(specification.diskMiB) * mebibyte)",
            "--nofile=\(configuration.maxOpenFiles)",
            "--core=0",
        ]
    }

    /// The shell script that joins the cgroups named before `--` (writing `0` to a `cgroup.procs` moves the
    /// writer) and then becomes bubblewrap, so the sandbox and everything it starts are in the job's cgroup from
    /// their first instruction.
    static let cgroupTrampoline = """
        while [ "$1" != -- ]; do echo 0 > "$1" || { echo "c2d: cannot join the job's cgroup ($1)" >&2; exit 125; }; \
        shift; done; shift; exec "$@"
        """

    // MARK: Running

    /// Runs the algorithm and waits for it without blocking a thread. Cancelling the calling task kills the
    /// sandbox (SIGKILL to bwrap; `--die-with-parent`, the PID namespace and the job's cgroup take everything
    /// inside with it).
    package func run(_ specification: SandboxSpecification) async -> SandboxTermination {
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
        guard let prepared = await prepared() else { return .stopped }
        var plan = SandboxPlan()
        var network: SandboxNetwork?
        if specification.allowNetwork {
            if let available = prepared.network {
                network = available
                plan.isolatedNetwork = true
            } else if case .failure(let failure) = prepared.report.network, prepared.report.mode != .basic {
                return .couldNotStart(
                    reason: "this worker cannot give the job a network of its own (\(failure.reason)), and never "
                        + "shares its own network with a job")
            }
        }

        let name = specification.workspace.root.lastPathComponent
        let limits = CgroupLimits(
            memoryBytes: Int64(specification.memoryMiB) << 20, maxProcesses: configuration.maxProcesses,
            cpus: specification.cpus)
        let threadPool = self.threadPool
        let chosenNetwork = network
        let cgroup: CgroupDriver.Job?
        let link: SandboxNetwork.Link?
        do {
            (cgroup, link) = try await threadPool.runIfActive {
                let cgroup = try prepared.cgroups.map { try $0.createJob(name: name, limits: limits) }
                guard let chosenNetwork else { return (cgroup, nil) }
                do {
                    let files = Self.networkFiles(specification.workspace)
                    try Data(chosenNetwork.resolvConf.utf8).write(to: files.resolvConf)
                    try Data("127.0.0.1 localhost\n::1 localhost\n".utf8).write(to: files.hosts)
                    return (cgroup, try chosenNetwork.createLink())
                } catch {
                    cgroup?.destroy()
                    throw error
                }
            }
        } catch {
            if Task.isCancelled { return .stopped }
            return .couldNotStart(reason: "cannot prepare the job's limits: \(error)")
        }
        plan.cgroup = cgroup != nil
        /// Reads the OOM count and removes the cgroup and link. In a task of its own: a stop cancels ours, and
        /// the thread pool refuses work for a cancelled task — the job's leftovers must go all the same.
        func cleanUp() async -> Int {
            await Task {
                (try? await threadPool.runIfActive {
                    let oomKills = cgroup?.oomKills() ?? 0
                    cgroup?.destroy()
                    if let link { chosenNetwork?.remove(link) }
                    return oomKills
                }) ?? 0
            }.value
        }

        let termination = await launch(
            specification, argv: argv, plan: plan, cgroup: cgroup, network: chosenNetwork, link: link)
        let oomKills = await cleanUp()
        switch termination {
        case .exited(let code) where oomKills > 0:
            return .outOfMemory(code: code, limitMiB: specification.memoryMiB)
        case .killedBySignal(let signal) where oomKills > 0:
            return .outOfMemory(code: 128 + signal, limitMiB: specification.memoryMiB)
        default:
            return termination
        }
    }

    /// Starts bubblewrap (through the cgroup trampoline when there is a cgroup), sets up the network link once
    /// bubblewrap reports its sandbox, and waits.
    private func launch(
        _ specification: SandboxSpecification, argv: [String], plan: SandboxPlan, cgroup: CgroupDriver.Job?,
        network: SandboxNetwork?, link: SandboxNetwork.Link?
    ) async -> SandboxTermination {
        // bubblewrap running prlimit running the job on the host's system, or prlimit running bubblewrap running the
        // job in an image; either through the cgroup trampoline when there is a cgroup.
        var command = [configuration.bwrapPath] + arguments(for: specification, argv: argv, plan: plan)
        if specification.image != nil {
            command = [configuration.prlimitPath] + limits(specification, plan: plan) + ["--"] + command
        }
        let executable: String
        let arguments: [String]
        if let cgroup {
            executable = configuration.shellPath
            arguments = ["-c", Self.cgroupTrampoline, "c2d-sandbox"] + cgroup.procsFiles + ["--"] + command
        } else {
            executable = command[0]
            arguments = Array(command.dropFirst())
        }
        let logFile = specification.workspace.algorithmLog
        let threadPool = self.threadPool
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

        // The link is attached once bubblewrap has made the namespace; it waits on the block pipe meanwhile.
        var childDescriptors: [Int32] = []
        var afterStart: (@Sendable (pid_t) async throws -> Void)?
        var parentDescriptors: [Int32] = []
        if let network, let link {
            guard let info = Self.makePipe() else { return .couldNotStart(reason: "pipe: \(errno)") }
            guard let block = Self.makePipe() else {
                close(info[0])
                close(info[1])
                return .couldNotStart(reason: "pipe: \(errno)")
            }
            childDescriptors = [info[1], block[0]]
            parentDescriptors = [info[0], block[1]]
            let (infoRead, blockWrite) = (info[0], block[1])
            afterStart = { _ in
                try await threadPool.runIfActive {
                    let pid = try Self.readChildPID(infoRead)
                    try network.attach(link, toProcess: pid)
                    guard Glibc.write(blockWrite, "1", 1) == 1 else {
                        throw RuntimeIssue("cannot release the sandbox: \(String(cString: strerror(errno)))")
                    }
                }
            }
        }
        let ending = await SupervisedProcess.run(
            executable: executable, arguments: arguments, output: output, extraDescriptors: childDescriptors,
            timeLimit: .seconds(specification.timeLimitSeconds), afterStart: afterStart)
        // Only now: closing the block pipe earlier would release a sandbox whose network setup failed. (The
        // child's ends were closed by `run` once the child had them.)
        for descriptor in parentDescriptors { close(descriptor) }
        switch ending {
        case .exited(let code): return .exited(code: code)
        case .signaled(let signal): return .killedBySignal(signal)
        case .timedOut: return .timedOut(limitSeconds: specification.timeLimitSeconds)
        case .cancelled: return .stopped
        case .failedToStart(let reason): return .couldNotStart(reason: "cannot start the sandbox: \(reason)")
        }
    }

    /// A pipe whose ends are closed on exec (the child gets its end through a dup).
    static func makePipe() -> [Int32]? {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return nil }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return ends
    }

    /// The sandbox's pid from bubblewrap's `--info-fd` JSON (`"child-pid": N`). Blocking.
    static func readChildPID(_ descriptor: Int32) throws -> Int32 {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 1024)
        while data.count < 65_536 {
            let count = read(descriptor, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            data += buffer[0..<count]
            if let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any],
                let pid = object["child-pid"] as? Int
            {
                return Int32(pid)
            }
        }
        throw RuntimeIssue("bubblewrap did not report its sandbox")
    }

    /// Checks that the entrypoint's program exists in the sandbox, to report "could not start" instead of an exit
    /// code 1 from bwrap's failing exec. /usr is the host's (or the image's), so paths under it are the sandbox's.
    private func checkProgram(_ program: String, specification: SandboxSpecification) async -> String? {
        let workspace = specification.workspace
        let searchPath = configuration.searchPath
        let extra = configuration.extraReadOnlyPaths
        let image = specification.image
        let imagePath = image.map { $0.searchPath ?? Self.imageSearchPath }
        let found: Bool? = try? await threadPool.runIfActive {
            let manager = FileManager.default
            if let image, let imagePath, workspace.hostPath(ofSandboxPath: program) == nil,
                !(program.contains("/") && !program.hasPrefix("/"))
            {
                let candidates =
                    program.hasPrefix("/") ? [program] : imagePath.split(separator: ":").map { "\($0)/\(program)" }
                return candidates.contains { Self.existsInRoot($0, root: image.rootFilesystem.path) }
            }
            if let local = workspace.hostPath(ofSandboxPath: program) {
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
    /// fails, so a worker can refuse to start instead of failing every job. Then prepares the host's hard limits
    /// and returns what they are; with `strict` isolation, any that cannot be enforced is an error.
    @discardableResult
    package func selfCheck() async throws(SandboxError) -> SandboxReport {
        for (tool, package) in [(configuration.bwrapPath, "bubblewrap"), (configuration.prlimitPath, "util-linux")]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw SandboxError(
                code: .toolMissing, message: "\(tool) is not an executable file; install Debian's '\(package)' package")
        }
        let arguments =
            baseArguments(network: .none, tmpBytes: 1 << 20) + [
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
            break
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
        guard let prepared = await prepared() else {
            throw SandboxError(code: .unavailable, message: "the sandbox self-check was cancelled")
        }
        if configuration.isolation.mode == .strict && !prepared.report.isComplete {
            throw SandboxError(
                code: .isolationUnavailable,
                message: "C2D_SANDBOX_ISOLATION=strict, but: "
                    + prepared.report.lines.filter { $0.contains("NOT ENFORCED") }.joined(separator: "; "))
        }
        return prepared.report
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

    /// `extraDescriptors` become the child's descriptors 3, 4, … and are closed here once it has them (the child
    /// keeps its copies). `afterStart` runs with the child's pid while it runs; if it throws, the child is killed
    /// and the run ends as failed to start.
    static func run(
        executable: String, arguments: [String], environment: [String: String] = ["PATH": "/usr/bin:/bin"],
        output: Int32, extraDescriptors: [Int32] = [], timeLimit: Duration,
        afterStart: (@Sendable (pid_t) async throws -> Void)? = nil
    ) async -> Ending {
        let control = KillSwitch()
        let pid: pid_t
        do {
            pid = try spawn(
                executable, arguments: arguments, environment: environment, output: output, extra: extraDescriptors)
        } catch {
            for descriptor in extraDescriptors { close(descriptor) }
            return .failedToStart("\(error)")
        }
        for descriptor in extraDescriptors { close(descriptor) }
        control.started(pid: pid)
        let ending: Ending = await withTaskCancellationHandler {
            await withTaskGroup(of: Ending?.self) { group in
                group.addTask {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Ending, Never>) in
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
                if let afterStart {
                    group.addTask {
                        do {
                            try await afterStart(pid)
                        } catch {
                            control.kill(because: .setupFailed("\(error)"))
                        }
                        return nil
                    }
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
        case .setupFailed(let reason): return .failedToStart(reason)
        case nil: return ending
        }
    }

    struct SpawnError: Error, CustomStringConvertible {
        var call: String
        var code: Int32
        var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    private static func spawn(
        _ executable: String, arguments: [String], environment: [String: String], output: Int32, extra: [Int32]
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
        // Through high numbers first, so a source that happens to be 3 or 4 is not overwritten before it is used.
        let staging: Int32 = 900
        for (offset, descriptor) in extra.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, descriptor, staging + Int32(offset))
        }
        for offset in extra.indices {
            posix_spawn_file_actions_adddup2(&actions, staging + Int32(offset), 3 + Int32(offset))
        }
        closeInheritedDescriptors(&actions, from: 3 + Int32(extra.count), keeping: output)

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
        _ actions: inout posix_spawn_file_actions_t, from first: Int32, keeping output: Int32
    ) {
        if let addCloseFrom, addCloseFrom(&actions, first) == 0 { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        var candidates = Set(open.compactMap { Int32($0) })
        // The staging copies exist only in the child: they are not in our list, so close them by number.
        for staged in 900..<(900 + first - 3) { candidates.insert(staged) }
        for descriptor in candidates where descriptor >= first && descriptor != output {
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
            /// Setting the process up after it started failed.
            case setupFailed(String)
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
