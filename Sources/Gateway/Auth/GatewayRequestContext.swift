import Hummingbird
import Logging
import NIOCore

/// The gateway's request context: Hummingbird's core storage plus the caller the authentication middleware
/// established (nil on routes that need none: health, metrics, the Ocean API, which signs requests instead).
package struct GatewayRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    package var principal: Principal?
    /// The peer's address, for limits per caller when callers are not authenticated.
    package var remoteAddress: SocketAddress?

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        principal = nil
        remoteAddress = source.channel.remoteAddress
    }

    /// Who the caller is for per-caller limits: the token's owner, or with authentication off (every caller the
    /// same principal) the peer's IP address.
    package var callerKey: String {
        if let principal, !principal.isUnrestricted { return "owner:" + principal.owner.lowercased() }
        return "address:" + (remoteAddress?.ipAddress ?? "unknown")
    }

    /// The caller, who must hold `scope`; 401 without a caller, 403 without the scope.
    package func caller(needing scope: APIScope) throws -> Principal {
        guard let principal else { throw APIError.unauthenticated }
        guard principal.has(scope) else {
            throw APIError(
                .forbidden, code: "missing_scope", message: "this call needs a token with the '\(scope.rawValue)' scope"
            )
        }
        return principal
    }
}
