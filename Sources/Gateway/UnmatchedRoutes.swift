import HTTPTypes
import Hummingbird

/// Answers a request that no route matched, like every other refusal: a JSON error with a code. A path that is
/// served with other methods answers 405 with `Allow` (RFC 9110 §15.5.6), so `DELETE /v1/jobs/<id>` does not read
/// as "no such job"; any other path answers 404. The router answers `HEAD` wherever it serves `GET`.
///
/// Added to the router after every route: Hummingbird applies a middleware only to the routes added after it, and
/// to the responder of unmatched requests, so this runs for those alone (after authentication, which a `/v1` path
/// still needs).
struct UnmatchedRouteMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext

    /// Each served path with its methods, in the order the router lists them.
    let served: [(path: RouterPath, methods: [HTTPRequest.Method])]

    init(routes: [Router<Context>.RouteDescription]) {
        var served: [(path: RouterPath, methods: [HTTPRequest.Method])] = []
        for route in routes {
            if let index = served.firstIndex(where: { $0.path == route.path }) {
                served[index].methods.append(route.method)
            } else {
                served.append((route.path, [route.method]))
            }
        }
        // The router generates a HEAD route for each GET route when it builds its responder, after this runs.
        for index in served.indices where served[index].methods.contains(.get) && !served[index].methods.contains(.head)
        {
            served[index].methods.append(.head)
        }
        self.served = served
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let path = request.uri.path
        // Ocean's APIs answer errors in their own shapes; an unknown path there stays Hummingbird's bare 404.
        if path.hasPrefix(OceanRoutes.base) || path.hasPrefix(OceanNodeRoutes.base) {
            return try await next(request, context)
        }
        let allowed = Self.allowedMethods(path: path, served: served)
        guard !allowed.isEmpty else {
            throw APIError(.notFound, code: "route_not_found", message: "no route serves \(path.prefix(200))")
        }
        let names = allowed.map(\.rawValue).sorted().joined(separator: ", ")
        throw APIError(
            .methodNotAllowed, code: "method_not_allowed",
            message: "\(request.method.rawValue) is not served on \(path.prefix(200)); it answers \(names)",
            headers: [.allow: names])
    }

    /// The methods of every served path that `path` matches.
    static func allowedMethods(
        path: String, served: [(path: RouterPath, methods: [HTTPRequest.Method])]
    ) -> Set<HTTPRequest.Method> {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var allowed = Set<HTTPRequest.Method>()
        for route in served where matches(segments[...], route.path.components[...]) {
            allowed.formUnion(route.methods)
        }
        return allowed
    }

    /// Whether `segments` fit `components`: Hummingbird's own test per component, `**` taking the rest.
    private static func matches(_ segments: ArraySlice<Substring>, _ components: ArraySlice<RouterPath.Element>) -> Bool
    {
        guard let component = components.first else { return segments.isEmpty }
        if component == .recursiveWildcard { return !segments.isEmpty }
        guard let segment = segments.first, component ~= segment else { return false }
        return matches(segments.dropFirst(), components.dropFirst())
    }
}
