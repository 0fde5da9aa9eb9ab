import Foundation
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How the local sandbox enforces a job's limits beyond bubblewrap's namespaces.
package struct SandboxIsolationConfiguration: Sendable, Hashable {
    package enum Mode: String, Sendable, Hashable, CaseIterable {
        /// Use every hard limit the host allows (cgroup, output volume, network namespace) and fall back for the
        /// others, saying so at start. A job asking for network on a host that cannot isolate it fails.
        case auto
        /// Refuse to start unless every hard limit works.
        case strict
        /// Only per-process rlimits, and `allowNetwork` jobs share the worker's network (c2d's earlier sandbox):
        /// for hosts where nothing else is possible and every algorithm is trusted.
        case basic
    }

    /// Default `auto`. `C2D_SANDBOX_ISOLATION`.
    package var mode: Mode
    /// A cgroup v2 directory delegated to the worker for job cgroups (its controllers are enabled for children);
    /// nil uses the worker's own cgroup (v2) or its v1 hierarchies. Default nil. `C2D_SANDBOX_CGROUP`.
    package var cgroupParent: String?
    /// Addresses of sandbox network links, a /30 per running job. Default `10.214.0.0/16`.
    /// `C2D_SANDBOX_NETWORK_POOL`.
    package var networkPool: IPNetwork
    /// Resolvers sandboxes with network use; nil: the host's non-loopback nameservers. `C2D_SANDBOX_DNS`.
    package var dnsServers: [IPAddress]?
    /// Non-public networks sandboxes with network may reach even so. Default none.
    /// `C2D_SANDBOX_ALLOWED_NETWORKS`.
    package var allowedNetworks: [IPNetwork]

    package init(
        mode: Mode = .auto, cgroupParent: String? = nil, networkPool: IPNetwork = IPNetwork("10.214.0.0/16")!,
        dnsServers: [IPAddress]? = nil, allowedNetworks: [IPNetwork] = []
    ) {
        self.mode = mode
        self.cgroupParent = cgroupParent
        self.networkPool = networkPool
        self.dnsServers = dnsServers
        self.allowedNetworks = allowedNetworks
    }
}

/// What this host lets the sandbox enforce, found once per process (``SandboxHost``) and logged at start.
package struct SandboxReport: Sendable, Hashable, CustomStringConvertible {
    /// Memory (tmpfs included), processes and CPU per job; else why not.
    package var cgroups: Result<String, Failure>
    /// Outputs and logs on a size-capped volume; else why not.
    package var outputVolume: Result<String, Failure>
    /// `allowNetwork` jobs in a network namespace of their own with egress to public addresses only; else why not.
    package var network: Result<String, Failure>
    package var mode: SandboxIsolationConfiguration.Mode

    package struct Failure: Error, Sendable, Hashable {
        package var reason: String
    }

    package var lines: [String] {
        func line(_ what: String, _ result: Result<String, Failure>, fallback: String) -> String {
            switch result {
            case .success(let how): "\(what): \(how)"
            case .failure(let failure): "\(what): NOT ENFORCED (\(failure.reason)); \(fallback)"
            }
        }
        return [
            line(
                "memory (tmpfs included), processes and CPU per job", cgroups,
                fallback: "memory is limited per process as address space (RLIMIT_AS), processes per user "
                    + "(RLIMIT_NPROC, not for root), CPU not at all"),
            line(
                "outputs and logs", outputVolume,
                fallback: "each file is capped (RLIMIT_FSIZE) and the total is checked after the run"),
            line(
                "network of allowNetwork jobs", network,
                fallback: mode == .basic
                    ? "such jobs share the worker's network (C2D_SANDBOX_ISOLATION=basic)"
                    : "such jobs fail with a clear reason"),
        ]
    }

    package var description: String { lines.joined(separator: "; ") }

    /// Whether every hard limit works.
    package var isComplete: Bool {
        [cgroups, outputVolume, network].allSatisfy { if case .success = $0 { true } else { false } }
    }
}

/// The host side of the sandbox, prepared once per process: the cgroup parent, whether output volumes can be
/// mounted, and the network's nftables table and forwarding.
final class SandboxHost: Sendable {
    struct Prepared: Sendable {
        var report: SandboxReport
        var cgroups: CgroupDriver?
        var volumeTools: OutputVolume.Tools?
        var network: SandboxNetwork?
    }

    let configuration: SandboxIsolationConfiguration
    let volumeTools: OutputVolume.Tools
    private let state = Mutex<Prepared?>(nil)

    init(configuration: SandboxIsolationConfiguration, volumeTools: OutputVolume.Tools = OutputVolume.Tools()) {
        self.configuration = configuration
        self.volumeTools = volumeTools
    }

    /// The prepared host; the first call prepares it (blocking: call on a thread pool). Later calls return the
    /// same, so a worker decides once and says so once.
    func prepared() -> Prepared {
        state.withLock { state in
            if let state { return state }
            let prepared = prepare()
            state = prepared
            return prepared
        }
    }

    private func prepare() -> Prepared {
        guard configuration.mode != .basic else {
            let off = SandboxReport.Failure(reason: "C2D_SANDBOX_ISOLATION=basic")
            return Prepared(
                report: SandboxReport(
                    cgroups: .failure(off), outputVolume: .failure(off), network: .failure(off), mode: .basic))
        }
        let isRoot = geteuid() == 0
        // Cgroups.
        var cgroups: CgroupDriver?
        let cgroupResult: Result<String, SandboxReport.Failure>
        do {
            guard isRoot || configuration.cgroupParent != nil else {
                throw RuntimeIssue("the worker is not root and no delegated cgroup is set (C2D_SANDBOX_CGROUP)")
            }
            let driver = try CgroupDriver.prepare(parent: configuration.cgroupParent)
            cgroups = driver
            cgroupResult = .success(driver.description)
        } catch {
            cgroupResult = .failure(.init(reason: "\(error)"))
        }
        // Output volumes: try one.
        var volumeTools: OutputVolume.Tools?
        let volumeResult: Result<String, SandboxReport.Failure>
        do {
            guard isRoot else { throw RuntimeIssue("mounting a volume needs root") }
            let probe = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-volume-probe-\(getpid())")
            try CgroupDriver.makeDirectory(probe.path)
            defer { rmdir(probe.path) }
            let volume = OutputVolume(attemptDirectory: probe)
            try volume.create(diskLimitBytes: 1 << 20, tools: self.volumeTools)
            volume.remove(tools: self.volumeTools)
            volumeTools = self.volumeTools
            volumeResult = .success("a loop-mounted ext4 volume of the environment's diskMiB per job")
        } catch {
            volumeResult = .failure(.init(reason: "\(error)"))
        }
        // Network: install the rules and try one link.
        var network: SandboxNetwork?
        let networkResult: Result<String, SandboxReport.Failure>
        do {
            guard isRoot else { throw RuntimeIssue("network namespaces with routed links need root") }
            let candidate = SandboxNetwork(
                configuration: SandboxNetwork.Configuration(
                    pool: configuration.networkPool, dnsServers: configuration.dnsServers,
                    allowedNetworks: configuration.allowedNetworks))
            for tool in [
                candidate.configuration.ipPath, candidate.configuration.nftPath, candidate.configuration.nsenterPath,
            ]
            where !FileManager.default.isExecutableFile(atPath: tool) {
                throw RuntimeIssue("\(tool) is missing (Debian packages iproute2, nftables, util-linux)")
            }
            let changes = try candidate.installHostRules()
            candidate.remove(try candidate.createLink())
            network = candidate
            let dns =
                candidate.dnsServers.isEmpty
                ? "no DNS" : "DNS via " + candidate.dnsServers.map(\.description).joined(separator: ", ")
            networkResult = .success(
                "a network namespace per job, egress to public addresses only, \(dns) (host: \(changes.joined(separator: ", ")))"
            )
        } catch {
            networkResult = .failure(.init(reason: "\(error)"))
        }
        return Prepared(
            report: SandboxReport(
                cgroups: cgroupResult, outputVolume: volumeResult, network: networkResult, mode: configuration.mode),
            cgroups: cgroups, volumeTools: volumeTools, network: network)
    }
}
