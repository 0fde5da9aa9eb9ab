import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Persistence
import Synchronization

/// How the native API authenticates callers.
package enum APIAuthMode: String, Sendable, CaseIterable {
    /// Bearer tokens issued by `c2d token create` (the default).
    case token
    /// No authentication: every caller may do everything and names the owner in its requests. Only for a gateway
    /// reachable by trusted callers alone.
    case none
}

/// Establishes the caller of `/v1` routes from `Authorization: Bearer <token>`. Routes that need no caller
/// (environments, the OpenAPI document) pass through; so does everything outside `/v1`.
///
/// Token lookups are cached for `cacheTTL` so a busy client costs one database read per TTL, not per request;
/// a revoked token therefore stops working within that time. Use is recorded (a write) at most once a minute.
struct TokenAuthenticator: RouterMiddleware {
    typealias Context = GatewayRequestContext

    let mode: APIAuthMode
    let store: PostgresJobStore
    let cache: TokenCache
    let logger: Logger

    static let publicPaths: Set<String> = ["/v1/environments", "/v1/openapi.json"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let path = request.uri.path
        guard path.hasPrefix("/v1/") || path == "/v1", !Self.publicPaths.contains(path) else {
            return try await next(request, context)
        }
        var context = context
        switch mode {
        case .none:
            context.principal = .unrestricted
        case .token:
            context.principal = try await authenticate(request.headers[.authorization])
        }
        return try await next(request, context)
    }

    func authenticate(_ header: String?) async throws -> Principal {
        guard let header else { throw APIError.unauthenticated }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIError(
                .unauthorized, code: "invalid_authorization",
                message: "the Authorization header must be 'Bearer <token>'")
        }
        let token = String(parts[1]).trimmingCharacters(in: .whitespaces)
        guard APIToken.isWellFormed(token) else { throw APIError.invalidToken }
        let hash = APIToken.hash(token)
        let now = ContinuousClock.now
        if let cached = cache.lookup(hash, now: now) {
            guard let principal = cached else { throw APIError.invalidToken }
            return principal
        }
        let stored: PostgresJobStore.StoredToken?
        do {
            stored = try await store.liveToken(hash: hash)
        } catch is PostgresError {
            throw APIError.unavailable
        }
        guard let stored else {
            cache.insert(hash, principal: nil, now: now)
            throw APIError.invalidToken
        }
        let principal = Principal(
            owner: stored.owner, scopes: Set(stored.scopes.compactMap(APIScope.init(rawValue:))), tokenID: stored.id)
        if cache.insert(hash, principal: principal, now: now) {
            // In the request, not in a detached task the shutdown would not wait for: at most once a minute per
            // token, right after the lookup that already went to Postgres. Losing it only costs the timestamp.
            do { try await store.touchToken(id: stored.id) } catch {
                logger.debug("recording token use failed", metadata: ["error": "\(error)"])
            }
        }
        return principal
    }
}

/// Recently looked-up tokens (by hash), including unknown ones, so a flood of bad tokens does not become a flood
/// of queries either.
final class TokenCache: Sendable {
    private struct Entry {
        var principal: Principal?
        var expires: ContinuousClock.Instant
        var lastTouched: ContinuousClock.Instant?
    }

    private let entries = Mutex([[UInt8]: Entry]())
    let ttl: Duration
    /// Most entries kept; beyond it the cache is emptied (cheap, and only costs a lookup per token).
    let capacity: Int
    static let touchInterval = Duration.seconds(60)

    init(ttl: Duration, capacity: Int = 10_000) {
        self.ttl = ttl
        self.capacity = capacity
    }

    /// `.some(principal)` when cached (nil principal: known bad), `.none` when the store must be asked.
    func lookup(_ hash: [UInt8], now: ContinuousClock.Instant) -> Principal?? {
        entries.withLock { entries in
            guard let entry = entries[hash], entry.expires > now else { return .none }
            return .some(entry.principal)
        }
    }

    /// Caches a lookup; returns whether the token's use should be recorded now.
    @discardableResult
    func insert(_ hash: [UInt8], principal: Principal?, now: ContinuousClock.Instant) -> Bool {
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            let previous = entries[hash]?.lastTouched
            let touch = principal != nil && (previous.map { now - $0 >= Self.touchInterval } ?? true)
            entries[hash] = Entry(principal: principal, expires: now + ttl, lastTouched: touch ? now : previous)
            return touch
        }
    }
}

extension APIError {
    static let unauthenticated = APIError(
        .unauthorized, code: "unauthenticated", message: "this call needs 'Authorization: Bearer <token>'")
    static let invalidToken = APIError(
        .unauthorized, code: "invalid_token", message: "the bearer token is unknown or revoked")
}
