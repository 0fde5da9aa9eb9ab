import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where this process's cgroups are, read from `/proc/self/mountinfo` and `/proc/self/cgroup`: the cgroup v2
/// (unified) directory, and the v1 directory of each mounted v1 controller. A pure value, so the choice between
/// v2, v1 and none is table-tested without a kernel.
struct CgroupLayout: Sendable, Hashable {
    /// The unified hierarchy's directory for this process (`<mount>/<path>`), if cgroup2 is mounted.
    var unified: String?
    /// v1 controller name → this process's directory in that controller's hierarchy.
    var v1: [String: String]

    /// The controllers a job's cgroup needs.
    static let controllers = ["memory", "pids", "cpu"]

    init(unified: String?, v1: [String: String]) {
        self.unified = unified
        self.v1 = v1
    }

    /// Reads the layout from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    init(mountinfo: String, procCgroup: String) {
        // /proc/self/cgroup: "<id>:<controllers>:<path>"; id 0 with no controllers is the unified hierarchy.
        var unifiedPath: String?
        var v1Paths: [String: String] = [:]
        for line in procCgroup.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[0] == "0" && fields[1].isEmpty {
                unifiedPath = String(fields[2])
            } else {
                for controller in fields[1].split(separator: ",") { v1Paths[String(controller)] = String(fields[2]) }
            }
        }
        var unified: String?
        var v1: [String: String] = [:]
        for line in mountinfo.split(separator: "\n") {
            // "<id> <parent> <dev> <root> <mountpoint> <options> [optional…] - <fstype> <source> <super options>"
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " ")
            let right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let root = Self.unescape(String(left[3]))
            let mountPoint = Self.unescape(String(left[4]))
            func directory(_ path: String) -> String? {
                // A mount of a subtree (e.g. inside a container) shows the hierarchy from `root` down.
                guard path == root || path.hasPrefix(root == "/" ? "/" : root + "/") else { return nil }
                let relative = root == "/" ? path : String(path.dropFirst(root.count))
                return relative == "/" || relative.isEmpty ? mountPoint : mountPoint + relative
            }
            switch right[0] {
            case "cgroup2":
                if unified == nil, let path = unifiedPath { unified = directory(path) }
            case "cgroup":
                for option in right[2].split(separator: ",") {
                    let controller = String(option)
                    if Self.controllers.contains(controller), v1[controller] == nil, let path = v1Paths[controller] {
                        v1[controller] = directory(path)
                    }
                }
            default:
                continue
            }
        }
        self.init(unified: unified, v1: v1)
    }

    /// The kernel escapes spaces and a few other bytes in mountinfo as `\ooo`.
    static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "\\"), iterator.count >= 3,
                let value = UInt8(String(decoding: iterator.prefix(3), as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                iterator = iterator.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func current() -> CgroupLayout {
        let mountinfo = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let procCgroup = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        return CgroupLayout(mountinfo: mountinfo, procCgroup: procCgroup)
    }

    /// What to use, given the controllers the unified hierarchy offers this process (its `cgroup.controllers`):
    /// cgroup v2 when it has every controller a job needs, else v1 when every one is mounted there, else nothing,
    /// with the reason.
    func choice(unifiedControllers: Set<String>) -> Choice {
        let needed = Set(Self.controllers)
        if let unified, needed.isSubset(of: unifiedControllers) { return .v2(directory: unified) }
        if needed.isSubset(of: Set(v1.keys)) { return .v1(directories: v1) }
        var reasons: [String] = []
        if let unified {
            let missing = needed.subtracting(unifiedControllers).sorted().joined(separator: ", ")
            reasons.append("cgroup v2 at \(unified) lacks the \(missing) controller(s)")
        } else {
            reasons.append("no cgroup v2 hierarchy is mounted")
        }
        let missingV1 = needed.subtracting(v1.keys).sorted()
        if missingV1.count < needed.count {
            reasons.append("cgroup v1 lacks \(missingV1.joined(separator: ", "))")
        }
        return .none(reason: reasons.joined(separator: "; "))
    }

    enum Choice: Sendable, Hashable {
        case v2(directory: String)
        case v1(directories: [String: String])
        case none(reason: String)
    }
}

/// The limits of one job's cgroup, and the files that set them: a pure value, table-tested.
struct CgroupLimits: Sendable, Hashable {
    var memoryBytes: Int64
    var maxProcesses: Int
    /// CPUs the job may use in total (its share of the period).
    var cpus: Double
    static let cpuPeriodMicroseconds = 100_000

    /// (file relative to the job's v2 directory, value), in the order to write them. Swap is capped at 0 so memory
    /// cannot spill to swap; the whole job is killed on out-of-memory (`memory.oom.group`), as a pod would be.
    var v2Files: [(String, String)] {
        [
            ("memory.max", String(memoryBytes)), ("memory.swap.max", "0"), ("memory.oom.group", "1"),
            ("pids.max", String(maxProcesses)),
            ("cpu.max", "\(Int((cpus * Double(Self.cpuPeriodMicroseconds)).rounded())) \(Self.cpuPeriodMicroseconds)"),
        ]
    }

    /// (controller, file, value) for v1, in order: memory+swap after memory, which must not exceed it.
    var v1Files: [(String, String, String)] {
        [
            ("memory", "memory.limit_in_bytes", String(memoryBytes)),
            ("memory", "memory.memsw.limit_in_bytes", String(memoryBytes)),
            ("pids", "pids.max", String(maxProcesses)),
            ("cpu", "cpu.cfs_period_us", String(Self.cpuPeriodMicroseconds)),
            ("cpu", "cpu.cfs_quota_us", String(Int((cpus * Double(Self.cpuPeriodMicroseconds)).rounded()))),
        ]
    }

    /// Files a kernel may lack (no swap accounting, older kernels): skipped when absent.
    static let optionalFiles: Set<String> = ["memory.swap.max", "memory.oom.group", "memory.memsw.limit_in_bytes"]
}

/// The cgroup(s) jobs are placed in: created under a parent this worker owns, one per job, with memory (tmpfs
/// pages included: the kernel charges them to the cgroup that wrote them), process count and CPU limits.
/// Blocking file-system calls: use from a thread pool.
struct CgroupDriver: Sendable {
    enum Version: Sendable, Hashable {
        case v2(parent: String)
        case v1(parents: [String: String])
    }

    let version: Version

    var description: String {
        switch version {
        case .v2(let parent): "cgroup v2 under \(parent)"
        case .v1(let parents):
            "cgroup v1 under " + CgroupLayout.controllers.compactMap { parents[$0] }.joined(separator: ", ")
        }
    }

    /// Prepares the parent of job cgroups, or explains why it cannot. `parent`: a v2 directory the operator
    /// delegated (its controllers are enabled for children here); nil chooses from this process's own cgroups.
    static func prepare(parent: String?, layout: CgroupLayout = .current()) throws -> CgroupDriver {
        if let parent {
            return try prepareV2(delegated: parent)
        }
        let unifiedControllers = layout.unified.map { readControllers("\($0)/cgroup.controllers") } ?? []
        switch layout.choice(unifiedControllers: unifiedControllers) {
        case .v2(let directory):
            return try prepareV2(own: directory)
        case .v1(let directories):
            var parents: [String: String] = [:]
            for controller in CgroupLayout.controllers {
                let parent = directories[controller]! + "/c2d"
                try makeDirectory(parent)
                parents[controller] = parent
            }
            return CgroupDriver(version: .v1(parents: parents))
        case .none(let reason):
            throw RuntimeIssue(reason)
        }
    }

    /// This process's own v2 cgroup: children with controllers need a parent without processes, so the worker
    /// moves itself into a leaf `c2d-worker` and the jobs go under `c2d-jobs` — what a delegated cgroup
    /// (systemd `Delegate=yes`) is for. Refused if other processes share the worker's cgroup.
    private static func prepareV2(own directory: String) throws -> CgroupDriver {
        let worker = directory + "/c2d-worker"
        try makeDirectory(worker)
        try write("\(getpid())", to: worker + "/cgroup.procs")
        let others =
            (try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8))?
            .split(separator: "\n") ?? []
        guard others.isEmpty else {
            throw RuntimeIssue(
                "cgroup v2: \(directory) also holds other processes (\(others.prefix(5).joined(separator: ", "))); "
                    + "run the worker in a cgroup of its own (systemd: Delegate=yes) or set C2D_SANDBOX_CGROUP")
        }
        try enableControllers(in: directory)
        return try prepareV2(delegated: directory + "/c2d-jobs")
    }

    private static func prepareV2(delegated parent: String) throws -> CgroupDriver {
        try makeDirectory(parent)
        let available = readControllers(parent + "/cgroup.controllers")
        let missing = Set(CgroupLayout.controllers).subtracting(available)
        guard missing.isEmpty else {
            throw RuntimeIssue(
                "cgroup v2: \(parent) does not offer the \(missing.sorted().joined(separator: ", ")) controller(s); "
                    + "enable them in its parent's cgroup.subtree_control")
        }
        try enableControllers(in: parent)
        return CgroupDriver(version: .v2(parent: parent))
    }

    private static func enableControllers(in directory: String) throws {
        let enabled = readControllers(directory + "/cgroup.subtree_control")
        let wanted = CgroupLayout.controllers.filter { !enabled.contains($0) }
        guard !wanted.isEmpty else { return }
        try write(wanted.map { "+" + $0 }.joined(separator: " "), to: directory + "/cgroup.subtree_control")
    }

    static func readControllers(_ file: String) -> Set<String> {
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        return Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    // MARK: Jobs

    /// One job's cgroup.
    struct Job: Sendable {
        let driver: CgroupDriver
        let name: String

        /// The directories of this job (one for v2, one per controller for v1).
        var directories: [String] {
            switch driver.version {
            case .v2(let parent): ["\(parent)/\(name)"]
            case .v1(let parents): CgroupLayout.controllers.compactMap { parents[$0] }.map { "\($0)/\(name)" }
            }
        }

        /// The `cgroup.procs` files a process writes `0` to, to join the job.
        var procsFiles: [String] { directories.map { $0 + "/cgroup.procs" } }

        private var memoryDirectory: String { directories[0] }

        /// How many processes the kernel's OOM killer killed in the job (`oom_kill` of `memory.events` or of v1's
        /// `memory.oom_control`).
        func oomKills() -> Int {
            let file: String
            switch driver.version {
            case .v2: file = memoryDirectory + "/memory.events"
            case .v1: file = memoryDirectory + "/memory.oom_control"
            }
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
                return Int(line.dropFirst("oom_kill ".count)) ?? 0
            }
            return 0
        }

        /// Kills whatever is left in the job and removes its cgroup(s); waits up to `timeout` for processes to go.
        func destroy(timeout: Duration = .seconds(5)) {
            let deadline = ContinuousClock.now + timeout
            for directory in directories {
                if case .v2 = driver.version { try? CgroupDriver.write("1", to: directory + "/cgroup.kill") }
                while ContinuousClock.now < deadline {
                    let pids = ((try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8)) ?? "")
                        .split(separator: "\n").compactMap { pid_t($0) }
                    guard !pids.isEmpty else { break }
                    for pid in pids { kill(pid, SIGKILL) }
                    usleep(10_000)
                }
                // An emptied cgroup may still be busy for a moment while its last process is reaped.
                while rmdir(directory) != 0 && errno == EBUSY && ContinuousClock.now < deadline { usleep(10_000) }
            }
        }
    }

    /// Creates a job's cgroup(s) with `limits`. A leftover of the same name (a worker that died) is destroyed first.
    func createJob(name: String, limits: CgroupLimits) throws -> Job {
        let job = Job(driver: self, name: name)
        job.destroy(timeout: .seconds(1))
        do {
            for directory in job.directories { try Self.makeDirectory(directory) }
            switch version {
            case .v2(let parent):
                for (file, value) in limits.v2Files {
                    try Self.write(
                        value, to: "\(parent)/\(name)/\(file)", optional: CgroupLimits.optionalFiles.contains(file))
                }
            case .v1(let parents):
                for (controller, file, value) in limits.v1Files {
                    guard let parent = parents[controller] else { continue }
                    try Self.write(
                        value, to: "\(parent)/\(name)/\(file)", optional: CgroupLimits.optionalFiles.contains(file))
                }
            }
        } catch {
            job.destroy(timeout: .seconds(1))
            throw error
        }
        return job
    }

    // MARK: Files

    static func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw RuntimeIssue("cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Writes `value` to a cgroup file in one `write` (cgroup files take one value per write). An absent optional
    /// file is skipped.
    static func write(_ value: String, to path: String, optional: Bool = false) throws {
        let descriptor = open(path, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if optional && errno == ENOENT { return }
            throw RuntimeIssue("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let bytes = Array(value.utf8)
        guard Glibc.write(descriptor, bytes, bytes.count) == bytes.count else {
            throw RuntimeIssue("cannot write '\(value)' to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
