import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// Sends one HTTP request to exactly the address ``AddressGuard`` approved for its host: the host is resolved
/// once, checked, and the connection goes to that address (AsyncHTTPClient's `dnsOverride`, which keeps the host
/// name for the `Host` header, SNI and certificate verification). A request the client would resolve again itself
/// could be rebound by DNS to an address that was never checked. Redirects are the caller's to follow, each hop
/// through here again.
///
/// Each request gets a client of its own (sharing the process's event loops): AsyncHTTPClient sets DNS overrides
/// per client, and pooled connections of one client must not serve a host pinned differently by another.
struct PinnedHTTP: Sendable {
    var addressGuard: AddressGuard
    var eventLoopGroup: any EventLoopGroup
    var configuration: HTTPClient.Configuration
    /// Addresses of a host tried in turn when connecting fails (e.g. an IPv6 address without a route).
    static let maxAddressesTried = 4

    /// Runs `body` with the response to `request`; the connection is closed afterwards. Throws a `RuntimeIssue`
    /// for a URL that is not http(s) or whose host is refused.
    func withResponse<T: Sendable>(
        to request: HTTPClientRequest, deadline: NIODeadline, _ body: (HTTPClientResponse) async throws -> T
    ) async throws -> T {
        guard ["http", "https"].contains(URL(string: request.url)?.scheme?.lowercased() ?? "") else {
            throw RuntimeIssue("\(AdminLog.redact(request.url)) is not an http or https URL")
        }
        // AsyncHTTPClient's own parsing, so the host checked is the host it connects to.
        let target: HTTPClient.Request
        do {
            target = try HTTPClient.Request(url: request.url)
        } catch {
            throw RuntimeIssue("\(AdminLog.redact(request.url)) is not a usable http or https URL")
        }
        let host = target.host
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let addresses = try await addressGuard.approvedAddresses(host: bareHost)
        var firstFailure: (any Error)?
        for address in addresses.prefix(Self.maxAddressesTried) {
            var configuration = self.configuration
            // An address literal is connected to as it is; a name is pinned to the approved address.
            if IPAddress(bareHost) == nil { configuration.dnsOverride = [host: address.description] }
            let client = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, deadline: deadline)
            } catch {
                try? await client.shutdown()
                if error is CancellationError || Task.isCancelled || NIODeadline.now() >= deadline { throw error }
                firstFailure = firstFailure ?? error
                continue
            }
            do {
                let result = try await body(response)
                try? await client.shutdown()
                return result
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
        throw firstFailure ?? RuntimeIssue("\(host) has no addresses")
    }
}
