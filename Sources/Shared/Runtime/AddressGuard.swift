import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps input and algorithm downloads from reaching the operator's own network: a URL whose host resolves to a
/// loopback, private, link-local (cloud metadata), carrier-grade NAT, multicast or unspecified address is refused,
/// unless the operator allows private networks (for data served inside the perimeter, or tests on loopback).
///
/// The check resolves the name once before the request; a DNS answer that changes between the check and the
/// connection (rebinding) is not caught here.
struct AddressGuard: Sendable {
    var allowPrivateNetworks: Bool
    var threadPool: NIOThreadPool

    /// Throws a `RuntimeIssue` naming the host if it is not a public address.
    func check(host: String) async throws {
        guard !allowPrivateNetworks else { return }
        let addresses = try await threadPool.runIfActive { try Self.resolve(host) }
        if let blocked = addresses.first(where: Self.isBlocked) {
            throw RuntimeIssue("\(host) resolves to \(blocked.description), a non-public address; refused")
        }
    }

    enum Address: Sendable, CustomStringConvertible {
        case v4([UInt8])
        case v6([UInt8])

        var description: String {
            switch self {
            case .v4(let b): return b.map(String.init).joined(separator: ".")
            case .v6(let b):
                return stride(from: 0, to: 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }
                    .joined(separator: ":")
            }
        }
    }

    /// getaddrinfo, blocking: run on the thread pool.
    static func resolve(_ host: String) throws -> [Address] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let status = getaddrinfo(bareHost, nil, &hints, &list)
        guard status == 0, let first = list else {
            throw RuntimeIssue("cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var addresses: [Address] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let sockaddr = current.pointee.ai_addr {
                switch Int32(current.pointee.ai_family) {
                case AF_INET:
                    sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        withUnsafeBytes(of: $0.pointee.sin_addr) { addresses.append(.v4(Array($0))) }
                    }
                case AF_INET6:
                    sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        withUnsafeBytes(of: $0.pointee.sin6_addr) { addresses.append(.v6(Array($0))) }
                    }
                default: break
                }
            }
            node = current.pointee.ai_next
        }
        return addresses
    }

    static func isBlocked(_ address: Address) -> Bool {
        switch address {
        case .v4(let b):
            return b[0] == 0 || b[0] == 10 || b[0] == 127 || (b[0] == 169 && b[1] == 254)
                || (b[0] == 172 && (16...31).contains(b[1])) || (b[0] == 192 && b[1] == 168)
                || (b[0] == 100 && (64...127).contains(b[1])) || b[0] >= 224
        case .v6(let b):
            if b.allSatisfy({ $0 == 0 }) { return true }  // ::
            if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }  // ::1
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {  // ::ffff:a.b.c.d
                return isBlocked(.v4(Array(b[12..<16])))
            }
            return (b[0] & 0xfe) == 0xfc  // fc00::/7 unique local
                || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)  // fe80::/10 link-local
                || b[0] == 0xff  // multicast
        }
    }
}
