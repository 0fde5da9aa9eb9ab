import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// An IPv4 or IPv6 address, as bytes in network order (4 or 16 of them).
package struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    package let bytes: [UInt8]

    package init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses a numeric address (`inet_pton`: dotted quad or RFC 4291 text, no brackets, no zone).
    package init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    package var isIPv4: Bool { bytes.count == 4 }

    /// The canonical text (`inet_ntop`), as a connection target.
    package var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let written = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard written != nil else { return bytes.map(String.init).joined(separator: ".") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The IPv4 address an IPv6 address stands for, in the forms that reach IPv4 hosts: IPv4-mapped
    /// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), NAT64's well-known prefix (`64:ff9b::/96`) and
    /// 6to4 (`2002:aabb:ccdd::/48`).
    var embeddedIPv4: IPAddress? {
        guard !isIPv4 else { return nil }
        let b = bytes
        let zeros = { (range: Range<Int>) in b[range].allSatisfy { $0 == 0 } }
        if zeros(0..<10) && b[10] == 0xff && b[11] == 0xff { return IPAddress(bytes: Array(b[12..<16])) }
        if zeros(0..<8) && b[8] == 0xff && b[9] == 0xff && zeros(10..<12) { return IPAddress(bytes: Array(b[12..<16])) }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zeros(4..<12) {
            return IPAddress(bytes: Array(b[12..<16]))
        }
        if b[0] == 0x20 && b[1] == 0x02 { return IPAddress(bytes: Array(b[2..<6])) }
        return nil
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
package struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    package let address: IPAddress
    package let prefixLength: Int

    /// Parses `address/prefix`; a bare address is a network of one.
    package init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.bytes.count * 8
        let length = parts.count == 2 ? Int(parts[1]) : maximum
        guard let length, (0...maximum).contains(length) else { return nil }
        self.address = address
        self.prefixLength = length
    }

    package func contains(_ candidate: IPAddress) -> Bool {
        guard candidate.bytes.count == address.bytes.count else { return false }
        var remaining = prefixLength
        for index in address.bytes.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            guard candidate.bytes[index] & mask == address.bytes[index] & mask else { return false }
            remaining -= bits
        }
        return true
    }

    package var description: String { "\(address)/\(prefixLength)" }
}

/// Which addresses the configure step's outbound requests (inputs, algorithms, DDOs, Providers) may reach: public
/// ones, so a consumer's URL cannot make a worker fetch from the operator's own network — loopback, private,
/// link-local (cloud metadata), carrier-grade NAT, multicast, documentation, benchmarking and reserved ranges, and
/// the IPv6 forms that lead to them (IPv4-mapped and -translated, NAT64, 6to4, Teredo) are refused unless the
/// operator allows all of them, or some networks by name.
package struct OutboundAddressPolicy: Sendable, Hashable {
    /// Every address may be reached (`C2D_ALLOW_PRIVATE_URLS=1`). Default false.
    package var allowsEverything: Bool
    /// Non-public networks that may be reached all the same (`C2D_ALLOWED_PRIVATE_NETWORKS`). Default none.
    package var allowedNetworks: [IPNetwork]

    package init(allowsEverything: Bool = false, allowedNetworks: [IPNetwork] = []) {
        self.allowsEverything = allowsEverything
        self.allowedNetworks = allowedNetworks
    }

    /// nil when `address` may be reached; otherwise the name of the range that refuses it.
    package func refusal(for address: IPAddress) -> String? {
        if allowsEverything || allowedNetworks.contains(where: { $0.contains(address) }) { return nil }
        if let inner = address.embeddedIPv4 {
            guard let reason = refusal(for: inner) else { return nil }
            return "\(reason), as \(inner)"
        }
        return Self.specialRanges.first { $0.network.contains(address) }?.name
    }

    /// IANA's special-purpose registries (RFC 6890 and successors), minus the ranges that are globally reachable
    /// and leave the operator's network anyway. Embedded IPv4 forms are checked against the IPv4 rows instead.
    static let specialRanges: [(network: IPNetwork, name: String)] = [
        ("0.0.0.0/8", "'this network'"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"), ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"), ("192.88.99.0/24", "6to4 relay"), ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"), ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
        ("::/96", "unspecified, loopback or IPv4-compatible"), ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"), ("2001::/23", "IETF protocol assignments (Teredo, …)"),
        ("2001:db8::/32", "documentation"), ("3fff::/20", "documentation"), ("5f00::/16", "segment routing"),
        ("fc00::/7", "unique local"), ("fe80::/10", "link-local"), ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ].map { (IPNetwork($0.0)!, $0.1) }

    /// Parses `C2D_ALLOWED_PRIVATE_NETWORKS`: comma-separated networks in CIDR notation (a bare address is a
    /// network of one). Throws a message naming the bad entry.
    package static func parseNetworks(_ text: String?) throws -> [IPNetwork] {
        try (text ?? "").split(separator: ",").compactMap { entry in
            let trimmed = entry.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { return nil }
            guard let network = IPNetwork(trimmed) else {
                throw RuntimeIssue("'\(trimmed.prefix(64))' is not a network in CIDR notation (e.g. 10.1.2.0/24)")
            }
            return network
        }
    }
}

/// Resolves host names for outbound requests.
package struct HostResolver: Sendable {
    let resolve: @Sendable (String) throws -> [IPAddress]

    /// `resolve` runs on a thread pool (it may block).
    package init(_ resolve: @escaping @Sendable (String) throws -> [IPAddress]) {
        self.resolve = resolve
    }

    /// The system's resolver (`getaddrinfo`).
    package static let system = HostResolver(systemResolve)

    /// getaddrinfo, blocking: run on the thread pool. Addresses in the resolver's order, without duplicates.
    static func systemResolve(_ host: String) throws -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let first = list else {
            throw RuntimeIssue("cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let sockaddr = current.pointee.ai_addr {
                var bytes: [UInt8] = []
                switch Int32(current.pointee.ai_family) {
                case AF_INET:
                    sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        withUnsafeBytes(of: $0.pointee.sin_addr) { bytes = Array($0) }
                    }
                case AF_INET6:
                    sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        withUnsafeBytes(of: $0.pointee.sin6_addr) { bytes = Array($0) }
                    }
                default: break
                }
                if let address = IPAddress(bytes: bytes), !addresses.contains(address) { addresses.append(address) }
            }
            node = current.pointee.ai_next
        }
        return addresses
    }
}

/// Decides where one outbound request may connect: resolves its host once and checks every address against the
/// policy. The caller connects to the approved addresses themselves (``PinnedHTTP``), so a DNS answer that
/// changes after the check (rebinding) is never used.
struct AddressGuard: Sendable {
    var policy: OutboundAddressPolicy
    var resolver: HostResolver
    var threadPool: NIOThreadPool

    /// The addresses `host` may be reached at, in the resolver's order. Throws a `RuntimeIssue` naming the host if
    /// any of its addresses is refused (a name with one private address among public ones is refused whole, so
    /// the choice of address cannot be steered into the operator's network).
    func approvedAddresses(host: String) async throws -> [IPAddress] {
        let addresses: [IPAddress]
        if let literal = IPAddress(host) {
            addresses = [literal]
        } else {
            let resolver = self.resolver
            addresses = try await threadPool.runIfActive { try resolver.resolve(host) }
        }
        guard !addresses.isEmpty else { throw RuntimeIssue("\(host) has no addresses") }
        for address in addresses {
            if let reason = policy.refusal(for: address) {
                throw RuntimeIssue("\(host) resolves to \(address), a non-public address (\(reason)); refused")
            }
        }
        return addresses
    }
}
