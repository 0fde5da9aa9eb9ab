import Domain
import Foundation
import Testing

@testable import Runtime

#if canImport(Glibc)
    import Glibc
#endif

/// The hard limits of the local sandbox, on this host: a cgroup per job (memory with tmpfs, processes, CPU), a
/// size-capped output volume, a network namespace with egress to public addresses only. They need root; the
/// decisions behind them (cgroup layout, limit files, link addresses, firewall rules) are tested without it.
@Suite("Sandbox limits", .serialized, .enabled(if: geteuid() == 0, "the hard limits need root"))
struct SandboxLimitsTests {
    static func environment(memoryMiB: Int = 256, diskMiB: Int = 64, cpus: Double = 1, network: Bool = false)
        -> ComputeEnvironment
    {
        ComputeEnvironment(
            id: "limits", maxJobDuration: 60, cpus: cpus, memoryMiB: memoryMiB, diskMiB: diskMiB,
            allowNetwork: network)
    }

    /// Runs Python `code`; returns the result and the text of `outputs/report.txt` if published.
    static func run(
        _ code: String, environment: ComputeEnvironment, network: Bool = false, sandbox: SandboxConfiguration? = nil
    ) async throws -> (ExecutionResult, String?) {
        var report: (ExecutionResult, String?)?
        try await RuntimeFixture.with(sandbox: sandbox) { fixture in
            var workflow = RuntimeFixture.workflow(rawcode: code)
            if network { workflow.stages[0].compute = Workflow.Compute(allowNetwork: true) }
            let (result, _) = try await fixture.run(workflow, environment: environment)
            let text = try result.results.first { $0.name == "report.txt" }.map { try fixture.text(of: $0) }
            report = (result, text)
        }
        return try #require(report)
    }

    @Test("this host enforces every hard limit, and says how")
    func report() async throws {
        let report = try await Sandbox().selfCheck()
        #expect(report.isComplete, "\(report)")
        #expect(report.description.contains("cgroup v"), "\(report)")
    }

    @Test("memory written to /dev/shm counts against the job's memory limit: the job is OOM-killed")
    func tmpfsCountsAsMemory() async throws {
        // 160 MiB into shared memory (a tmpfs of diskMiB), under a 64 MiB memory limit.
        let code = """
            with open("/dev/shm/fill", "wb") as f:
                for _ in range(160):
                    f.write(b"x" * (1 << 20))
            open("/data/outputs/report.txt", "w").write("wrote 160 MiB")
            """
        let (result, report) = try await Self.run(code, environment: Self.environment(memoryMiB: 64, diskMiB: 256))
        #expect(result.outcome == .failed, "\(result.failureReason ?? "") \(report ?? "")")
        #expect(result.oomKilled)
        #expect(result.failureReason?.contains("ran out of memory") == true, "\(result.failureReason ?? "")")
    }

    @Test("processes are capped per job (pids.max), also for a worker running as root")
    func processCap() async throws {
        let code = """
            import os, time
            started = 0
            children = []
            for _ in range(200):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    time.sleep(5)
                    os._exit(0)
                children.append(pid)
                started += 1
            open("/data/outputs/report.txt", "w").write(str(started))
            for pid in children:
                os.kill(pid, 9)
            """
        var sandbox = SandboxConfiguration()
        sandbox.maxProcesses = 32
        let (result, report) = try await Self.run(code, environment: Self.environment(), sandbox: sandbox)
        #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
        let started = try #require(Int(report ?? ""), "\(report ?? "no report")")
        #expect(started < 32, "the job started \(started) processes under a cap of 32")
    }

    @Test("CPU is capped at the environment's cpus")
    func cpuQuota() async throws {
        // Two busy processes for 2 s of wall time: about 4 s of CPU on two free cores, 1 s under half a CPU.
        let code = """
            import os, time
            def spin(seconds):
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    pass
            pids = []
            for _ in range(2):
                pid = os.fork()
                if pid == 0:
                    spin(2.0)
                    os._exit(0)
                pids.append(pid)
            cpu = 0.0
            for pid in pids:
                _, _, usage = os.wait4(pid, 0)
                cpu += usage.ru_utime + usage.ru_stime
            open("/data/outputs/report.txt", "w").write("%.3f" % cpu)
            """
        let (result, report) = try await Self.run(code, environment: Self.environment(cpus: 0.5))
        #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
        let cpu = try #require(Double(report ?? ""), "\(report ?? "no report")")
        #expect(cpu < 1.5, "two busy processes used \(cpu) s of CPU in 2 s under a quota of half a CPU")
    }

    @Test("outputs land on a volume of the disk limit: writing more fails inside the job and ends in status 42")
    func outputVolumeCap() async throws {
        // 200 files of 1 MiB under a 16 MiB limit: each file is below RLIMIT_FSIZE, the sum is not.
        let code = """
            written = 0
            try:
                for n in range(200):
                    with open("/data/outputs/part-%03d" % n, "wb") as f:
                        f.write(b"x" * (1 << 20))
                    written += 1
            except OSError as error:
                print("stopped:", error)
            with open("/data/logs/written.txt", "w") as f:
                f.write(str(written))
            """
        var report: (ExecutionResult, String?)?
        try await RuntimeFixture.with { fixture in
            let (result, _) = try await fixture.run(
                RuntimeFixture.workflow(rawcode: code), environment: Self.environment(diskMiB: 16))
            let written = try result.results.first { $0.name == "written.txt" }.map { try fixture.text(of: $0) }
            report = (result, written)
        }
        let (result, written) = try #require(report)
        #expect(result.status == .diskQuotaExceeded, "\(result.status) \(result.failureReason ?? "")")
        let files = try #require(Int(written ?? ""), "\(written ?? "no count")")
        #expect(files < 40, "the job wrote \(files) MiB under a 16 MiB limit")
    }

    @Test("a stopped job leaves no cgroup and no network link behind")
    func stopCleansUp() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-stop-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let workspace = JobWorkspace(data: root.appendingPathComponent("job-1/data"))
        try workspace.createLayoutBlocking()
        let sandbox = Sandbox()
        let driver = try #require(await sandbox.prepared()?.cgroups)
        let specification = SandboxSpecification(
            workspace: workspace, entrypoint: "sleep 30", timeLimitSeconds: 60, memoryMiB: 64, diskMiB: 16,
            allowNetwork: true)
        let run = Task { await sandbox.run(specification) }
        try await Task.sleep(for: .seconds(1))
        run.cancel()
        #expect(await run.value == .stopped)
        let job = CgroupDriver.Job(driver: driver, name: "job-1")
        #expect(job.directories.allSatisfy { !FileManager.default.fileExists(atPath: $0) }, "\(job.directories)")
        let links = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net")) ?? []
        #expect(!links.contains { $0.hasPrefix(SandboxNetwork.hostPrefix) }, "\(links)")
    }

    @Test("a crashed worker's workspace and mounted volume are swept; a live one's are not")
    func sweep() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-sweep-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let tools = OutputVolume.Tools()
        let dead = root.appendingPathComponent("dead-1")
        let live = root.appendingPathComponent("live-1")
        for directory in [dead, live] {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try OutputVolume(attemptDirectory: directory).create(diskLimitBytes: 1 << 20, tools: tools)
        }
        // The dead worker's lock file is left behind, unheld.
        _ = FileManager.default.createFile(atPath: AttemptLock.lockFile(for: dead), contents: nil)
        let held = try AttemptLock(directory: live)
        #expect(AttemptLock.sweep(workRoot: root, tools: tools) == 1)
        #expect(!FileManager.default.fileExists(atPath: dead.path))
        #expect(OutputVolume.isMountPoint(live.appendingPathComponent("volume").path))
        held.release()
        OutputVolume(attemptDirectory: live).remove(tools: tools)
    }
}

/// A job with network: its own namespace, a routed link, egress to public (or explicitly allowed) addresses
/// only. A "world" namespace stands in for the outside: it holds an allowed address and a private one.
@Suite("Sandbox network", .serialized, .enabled(if: geteuid() == 0, "network namespaces and links need root"))
struct SandboxNetworkTests {
    @Test("reaches an allowed server; not private addresses, the host, its loopback or cloud metadata")
    func egressOnly() async throws {
        let world = try TestWorld.start()
        defer { world.stop() }
        var sandbox = SandboxConfiguration()
        sandbox.isolation.allowedNetworks = [IPNetwork("\(world.allowed)/32")!]
        // A server on the host's loopback, which the job must not reach.
        let hostServer = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(hostServer) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(hostServer, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        listen(hostServer, 8)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(hostServer, $0, &length) }
        }
        let hostPort = Int(UInt16(bigEndian: address.sin_port))
        let code = """
            import json, socket
            results = {}
            for name, host, port in [("allowed", "\(world.allowed)", 8000), ("private", "\(world.blocked)", 8000),
                                     ("loopback", "127.0.0.1", \(hostPort)), ("gateway", "\(world.gateway)", 8000),
                                     ("metadata", "169.254.169.254", 80)]:
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect((host, port))
                    results[name] = s.recv(100).decode()
                except OSError as error:
                    results[name] = "refused: " + type(error).__name__
            results["interfaces"] = sorted(name for _, name in socket.if_nameindex())
            open("/data/outputs/report.txt", "w").write(json.dumps(results))
            """
        let environment = SandboxLimitsTests.environment(network: true)
        let (result, report) = try await SandboxLimitsTests.run(
            code, environment: environment, network: true, sandbox: sandbox)
        #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
        let results = try #require(
            try JSONSerialization.jsonObject(with: Data((report ?? "").utf8)) as? [String: Any], "\(report ?? "")")
        #expect(results["allowed"] as? String == "hello from \(world.allowed)", "\(results)")
        for name in ["private", "loopback", "gateway", "metadata"] {
            #expect((results[name] as? String ?? "").hasPrefix("refused"), "\(name): \(results)")
        }
        #expect(results["interfaces"] as? [String] == ["eth0", "lo"], "\(results)")
    }
}

/// A network namespace with a veth link to the host, standing in for the Internet: a TCP server answering
/// `hello from <address>` on port 8000 of two addresses, one of which the test allows.
struct TestWorld {
    let namespace: String
    let link: String
    let gateway: String
    let allowed: String
    let blocked: String
    let server: Process

    static func start() throws -> TestWorld {
        let suffix = String(UInt32.random(in: 0..<100_000))
        let namespace = "c2dt-world-\(suffix)"
        let link = "c2dtw\(suffix)"
        let (gateway, allowed, blocked) = ("10.213.250.1", "10.213.250.2", "10.213.250.3")
        let ip = "/usr/sbin/ip"
        try SandboxNetwork.runTool(ip, ["netns", "add", namespace])
        do {
            try SandboxNetwork.runTool(
                ip, ["link", "add", link, "type", "veth", "peer", "name", "w0", "netns", namespace])
            try SandboxNetwork.runTool(ip, ["address", "add", "\(gateway)/24", "dev", link])
            try SandboxNetwork.runTool(ip, ["link", "set", link, "up"])
            for command in [
                ["address", "add", "\(allowed)/24", "dev", "w0"], ["address", "add", "\(blocked)/24", "dev", "w0"],
                ["link", "set", "w0", "up"], ["link", "set", "lo", "up"],
                ["route", "add", "default", "via", gateway],
            ] {
                try SandboxNetwork.runTool(ip, ["-n", namespace] + command)
            }
        } catch {
            try? SandboxNetwork.runTool(ip, ["netns", "del", namespace])
            throw error
        }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: ip)
        server.arguments = [
            "netns", "exec", namespace, "python3", "-c",
            """
            import socket, threading, time
            def serve(address):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, 8000))
                s.listen()
                while True:
                    c, _ = s.accept()
                    c.sendall(b"hello from " + address.encode())
                    c.close()
            for address in ["\(allowed)", "\(blocked)"]:
                threading.Thread(target=serve, args=(address,), daemon=True).start()
            time.sleep(120)
            """,
        ]
        try server.run()
        usleep(300_000)
        return TestWorld(
            namespace: namespace, link: link, gateway: gateway, allowed: allowed, blocked: blocked, server: server)
    }

    func stop() {
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        try? SandboxNetwork.runTool("/usr/sbin/ip", ["netns", "del", namespace])
        try? SandboxNetwork.runTool("/usr/sbin/ip", ["link", "del", link])
    }
}

/// The pure parts: which cgroups to use, which files set the limits, link addresses and firewall rules.
@Suite("Sandbox limit decisions")
struct SandboxLimitDecisionTests {
    static let hybridMountinfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """
    static let hybridCgroup = """
        8:pids:/
        4:memory:/process_api/af84
        1:cpu:/
        0::/
        """
    static let unifiedMountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    static let unifiedCgroup = "0::/system.slice/c2d-worker.service\n"

    @Test(
        "cgroup v2 when it offers memory, pids and cpu; else v1 when all three are mounted; else none, with a reason",
        arguments: [
            (hybridMountinfo, hybridCgroup, "hugetlb", "v1"),
            (hybridMountinfo, hybridCgroup, "memory pids cpu", "v2"),
            (unifiedMountinfo, unifiedCgroup, "cpuset cpu io memory hugetlb pids rdma misc", "v2"),
            (unifiedMountinfo, unifiedCgroup, "cpu io", "none"),
            ("", "", "", "none"),
        ])
    func choice(mountinfo: String, procCgroup: String, controllers: String, expected: String) {
        let layout = CgroupLayout(mountinfo: mountinfo, procCgroup: procCgroup)
        let choice = layout.choice(unifiedControllers: Set(controllers.split(separator: " ").map(String.init)))
        switch (choice, expected) {
        case (.v2(let directory), "v2"):
            #expect(directory == layout.unified)
        case (.v1(let directories), "v1"):
            #expect(
                directories == [
                    "memory": "/sys/fs/cgroup/memory/process_api/af84", "pids": "/sys/fs/cgroup/pids",
                    "cpu": "/sys/fs/cgroup/cpu",
                ])
        case (.none(let reason), "none"):
            #expect(!reason.isEmpty)
        default:
            Issue.record("expected \(expected), got \(choice)")
        }
    }

    @Test("a cgroup mount of a subtree (inside a container) maps paths below its root")
    func subtreeMount() {
        let layout = CgroupLayout(
            mountinfo: "50 40 0:40 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            procCgroup: "0::/kubepods/pod1/worker\n")
        #expect(layout.unified == "/sys/fs/cgroup/worker")
        #expect(CgroupLayout.unescape("/mnt/with\\040space") == "/mnt/with space")
    }

    @Test("limit files for v2 and v1")
    func limitFiles() {
        let limits = CgroupLimits(memoryBytes: 64 << 20, maxProcesses: 32, cpus: 1.5)
        #expect(
            limits.v2Files.map { "\($0.0)=\($0.1)" } == [
                "memory.max=67108864", "memory.swap.max=0", "memory.oom.group=1", "pids.max=32",
                "cpu.max=150000 100000",
            ])
        #expect(
            limits.v1Files.map { "\($0.0)/\($0.1)=\($0.2)" } == [
                "memory/memory.limit_in_bytes=67108864", "memory/memory.memsw.limit_in_bytes=67108864",
                "pids/pids.max=32", "cpu/cpu.cfs_period_us=100000", "cpu/cpu.cfs_quota_us=150000",
            ])
    }

    @Test("links take the n-th /30 of the pool; the rules allow DNS and allowed networks, refuse special ranges")
    func networkDecisions() {
        let network = SandboxNetwork(
            configuration: SandboxNetwork.Configuration(
                pool: IPNetwork("10.214.0.0/16")!, dnsServers: [IPAddress("10.255.255.53")!],
                allowedNetworks: [IPNetwork("10.1.2.0/24")!]))
        #expect(network.slots == 16_384)
        let (host, sandbox) = network.addresses(index: 3)!
        #expect(host.description == "10.214.0.13" && sandbox.description == "10.214.0.14")
        #expect(network.addresses(index: 16_384) == nil)
        let rules = network.ruleset
        #expect(rules.contains("set dns { type ipv4_addr; flags interval; auto-merge; elements = { 10.255.255.53 } }"))
        #expect(
            rules.contains("set allowed { type ipv4_addr; flags interval; auto-merge; elements = { 10.1.2.0/24 } }"))
        #expect(rules.contains("ip daddr 10.214.0.0/16 reject"), "sandboxes cannot reach each other")
        #expect(rules.contains("169.254.0.0/16") && rules.contains("10.0.0.0/8"))
        #expect(rules.contains("iifname \"c2dh*\" drop"))
        #expect(network.resolvConf == "nameserver 10.255.255.53\noptions timeout:2 attempts:2\n")
        #expect(
            SandboxNetwork.hostNameservers("nameserver 127.0.0.53\nsearch x\nnameserver 10.0.0.2\n").map(\.description)
                == ["127.0.0.53", "10.0.0.2"])
    }
}
