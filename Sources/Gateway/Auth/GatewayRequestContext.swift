import Hummingbird
import Logging

/// The gateway's request context: Hummingbird's core storage plus the caller the authentication middleware
/// established (nil on routes that need none: health, metrics, the Ocean API, which signs requests instead).
package struct GatewayRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    package var principal: Principal?

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        principal = nil
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
