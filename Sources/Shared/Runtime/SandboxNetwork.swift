import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Network for sandboxes whose job may use it: each gets a network namespace of its own (bubblewrap's) with one
/// veth link to the host, routed and masqueraded out through the host's uplink, and an nftables table
/// (`inet c2d_sandbox`) that lets it reach public addresses only: not the host itself (its loopback or any of its
/// addresses), not private, link-local (cloud metadata) or other special ranges, not other sandboxes; DNS only to
/// the configured resolvers. IPv4 only. Needs root, `ip` and `nft`; blocking calls, for a thread pool.
struct SandboxNetwork: Sendable {
    struct Configuration: Sendable, Hashable {
        /// Addresses for the links, a /30 per running sandbox. Default `10.214.0.0/16`.
        var pool: IPNetwork = IPNetwork("10.214.0.0/16")!
        /// Resolvers the sandbox uses and may reach on port 53. Default: the host's non-loopback nameservers.
        var dnsServers: [IPAddress]? = nil
        /// Non-public networks sandboxes may reach even so (e.g. a package mirror inside the perimeter).
        var allowedNetworks: [IPNetwork] = []
        var ipPath = "/usr/sbin/ip"
        var nftPath = "/usr/sbin/nft"
        var nsenterPath = "/usr/bin/nsenter"
    }

    let configuration: Configuration
    /// The resolvers actually used (configured, or read from the host once).
    let dnsServers: [IPAddress]

    /// Host-side links are named `c2dh<n>`, their sandbox ends `c2dj<n>` until renamed `eth0` inside.
    static let hostPrefix = "c2dh"
    static let tableName = "c2d_sandbox"

    init(configuration: Configuration) {
        self.configuration = configuration
        self.dnsServers =
            configuration.dnsServers
            ?? Self.hostNameservers().filter { OutboundAddressPolicy().refusal(for: $0) != "loopback" && $0.isIPv4 }
    }

    /// The nameservers of the host's /etc/resolv.conf.
    static func hostNameservers(_ text: String? = try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8))
        -> [IPAddress]
    {
        (text ?? "").split(separator: "\n").compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields[0] == "nameserver" else { return nil }
            return IPAddress(String(fields[1]))
        }
    }

    /// The sandbox's /etc/resolv.conf.
    var resolvConf: String {
        dnsServers.isEmpty
            ? "# c2d: no DNS resolver is configured for sandboxes (C2D_SANDBOX_DNS)\n"
            : dnsServers.map { "nameserver \($0)\n" }.joined() + "options timeout:2 attempts:2\n"
    }

    /// The nftables rules, as one `nft -f` transaction that replaces the table (several workers on one host
    /// write the same table; the last one's settings win).
    var ruleset: String {
        let blocked = OutboundAddressPolicy.specialRanges.map(\.network).filter { $0.address.isIPv4 }
        func set(_ name: String, _ elements: [String]) -> String {
            "    set \(name) { type ipv4_addr; flags interval; auto-merge; "
                + (elements.isEmpty ? "}\n" : "elements = { \(elements.joined(separator: ", ")) } }\n")
        }
        let links = "iifname \"\(Self.hostPrefix)*\""
        return """
            table inet \(Self.tableName)
            delete table inet \(Self.tableName)
            table inet \(Self.tableName) {
            \(set("allowed", configuration.allowedNetworks.filter { $0.address.isIPv4 }.map(\.description)))\
            \(set("dns", dnsServers.map(\.description)))\
            \(set("blocked", blocked.map(\.description)))\
                chain forward {
                    type filter hook forward priority filter; policy accept;
                    \(links) ip daddr @dns meta l4proto { udp, tcp } th dport 53 accept
                    \(links) ip daddr \(configuration.pool) reject with icmpx type admin-prohibited
                    \(links) ip daddr @allowed accept
                    \(links) ip daddr @blocked reject with icmpx type admin-prohibited
                    \(links) meta nfproto ipv4 accept
                    \(links) drop
                    oifname "\(Self.hostPrefix)*" ct state established,related accept
                    oifname "\(Self.hostPrefix)*" drop
                }
                chain input {
                    type filter hook input priority filter; policy accept;
                    \(links) drop
                }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    \(links) oifname != "\(Self.hostPrefix)*" masquerade
                }
            }

            """
    }

    /// Installs the table and turns on IPv4 forwarding (what routing the links needs). Returns what it changed on
    /// the host, for the log.
    func installHostRules() throws -> [String] {
        var changes: [String] = []
        try Self.runTool(configuration.nftPath, ["-f", "-"], input: ruleset)
        changes.append("nftables table inet \(Self.tableName)")
        let forwarding = "/proc/sys/net/ipv4/ip_forward"
        if (try? String(contentsOfFile: forwarding, encoding: .utf8))?.hasPrefix("1") != true {
            try CgroupDriver.write("1", to: forwarding)
            changes.append("net.ipv4.ip_forward=1")
        }
        return changes
    }

    /// One sandbox's link.
    struct Link: Sendable {
        let index: Int
        let hostAddress: IPAddress
        let sandboxAddress: IPAddress
        var hostName: String { "\(SandboxNetwork.hostPrefix)\(index)" }
        var sandboxName: String { "c2dj\(index)" }
    }

    /// The link addresses of slot `index`: the `index`-th /30 of the pool, host `.1`, sandbox `.2`.
    func addresses(index: Int) -> (host: IPAddress, sandbox: IPAddress)? {
        let base = configuration.pool.address.bytes
        guard base.count == 4 else { return nil }
        let start =
            (UInt32(base[0]) << 24 | UInt32(base[1]) << 16 | UInt32(base[2]) << 8 | UInt32(base[3]))
            & (configuration.pool.prefixLength == 0 ? 0 : ~UInt32(0) << (32 - configuration.pool.prefixLength))
        let offset = UInt64(index) * 4
        guard offset + 3 < UInt64(1) << (32 - configuration.pool.prefixLength) else { return nil }
        func address(_ value: UInt32) -> IPAddress {
            IPAddress(bytes: [
                UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF),
            ])!
        }
        return (address(start + UInt32(offset) + 1), address(start + UInt32(offset) + 2))
    }

    var slots: Int { 1 << max(0, 32 - configuration.pool.prefixLength - 2) }

    /// Creates a free link: the kernel refuses a second interface of the same name, which makes the name the lock
    /// between workers of one host. Starts at a random slot so workers rarely collide.
    func createLink() throws -> Link {
        let start = Int.random(in: 0..<slots)
        var lastError: (any Error)?
        for attempt in 0..<min(slots, 64) {
            let index = (start + attempt) % slots
            guard let (host, sandbox) = addresses(index: index) else { continue }
            let link = Link(index: index, hostAddress: host, sandboxAddress: sandbox)
            do {
                try Self.runTool(
                    configuration.ipPath,
                    ["link", "add", link.hostName, "type", "veth", "peer", "name", link.sandboxName])
            } catch {
                lastError = error
                continue
            }
            do {
                try Self.runTool(
                    configuration.ipPath, ["-batch", "-"],
                    input: """
                        address add \(host)/30 dev \(link.hostName)
                        link set \(link.hostName) up

                        """)
                return link
            } catch {
                remove(link)
                throw error
            }
        }
        throw RuntimeIssue("no free sandbox network link: \(lastError.map { "\($0)" } ?? "pool exhausted")")
    }

    /// Moves the link's sandbox end into the namespace of process `pid` and configures it there.
    func attach(_ link: Link, toProcess pid: Int32) throws {
        try Self.runTool(configuration.ipPath, ["link", "set", link.sandboxName, "netns", String(pid)])
        try Self.runTool(
            configuration.nsenterPath, ["--net=/proc/\(pid)/ns/net", configuration.ipPath, "-batch", "-"],
            input: """
                link set \(link.sandboxName) name eth0
                address add \(link.sandboxAddress)/30 dev eth0
                link set eth0 up
                route add default via \(link.hostAddress)

                """)
    }

    /// Removes the host end (the pair goes with it); a link whose namespace already ended is gone already.
    func remove(_ link: Link) {
        try? Self.runTool(configuration.ipPath, ["link", "del", link.hostName])
    }

    static func runTool(_ tool: String, _ arguments: [String], input: String? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let output = Pipe()
        let stdin = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let text = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw RuntimeIssue(
                "\(URL(fileURLWithPath: tool).lastPathComponent) \(arguments.prefix(3).joined(separator: " ")) failed: "
                    + String(decoding: text.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
