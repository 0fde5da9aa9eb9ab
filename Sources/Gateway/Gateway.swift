import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Persistence
import ServiceLifecycle
import Storage

/// Builds the gateway's HTTP application: the native API under `/v1`, the Ocean API, health checks and the internal
/// upload endpoint of publish pods.
package enum Gateway {
    package static func buildApplication(
        configuration: GatewayConfiguration, store: PostgresJobStore, resultStore: any ReadableResultStore,
        logger: Logger
    ) -> some ApplicationProtocol {
        Application(
            router: buildRouter(configuration: configuration, store: store, resultStore: resultStore, logger: logger),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "c2d"),
            logger: logger)
    }

    /// The gateway's services: the bell of its event streams, the API, and `/metrics` on its own listener when
    /// `metricsListener` is set.
    package static func buildServices(
        configuration: GatewayConfiguration, store: PostgresJobStore, resultStore: any ReadableResultStore,
        logger: Logger
    ) -> [any Service] {
        let requests = RequestCounter()
        let bell = EventStreamBell(store: store, logger: logger)
        var services: [any Service] = [
            bell,
            Application(
                router: buildRouter(
                    configuration: configuration, store: store, resultStore: resultStore, logger: logger,
                    requests: requests, bell: bell),
                configuration: .init(
                    address: .hostname(configuration.host, port: configuration.port), serverName: "c2d"),
                logger: logger),
        ]
        if let listener = configuration.metricsListener {
            let router = Router(context: GatewayRequestContext.self, options: .autoGenerateHeadEndpoints)
            MetricsRoutes(store: store, requests: requests, token: configuration.metricsToken).register(on: router)
            services.append(
                Application(
                    router: router,
                    configuration: .init(address: .hostname(listener.host, port: listener.port), serverName: "c2d"),
                    logger: logger))
        }
        return services
    }

    /// Every route the gateway serves, with its middleware; the OpenAPI agreement test reads its route table.
    package static func buildRouter(
        configuration: GatewayConfiguration, store: PostgresJobStore, resultStore: any ReadableResultStore,
        logger: Logger, requests: RequestCounter = RequestCounter(), bell: EventStreamBell? = nil
    ) -> Router<GatewayRequestContext> {
        // HEAD runs the GET route and drops its body (RFC 9110 §9.3.2): an event or log stream's slot is given
        // back as the unwritten body goes, and a download's bytes are never read.
        let router = Router(context: GatewayRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.middlewares.add(RequestIDMiddleware(requests: requests))
        router.middlewares.add(
            TokenAuthenticator(
                mode: configuration.authMode, store: store, cache: TokenCache(ttl: configuration.tokenCacheTTL),
                logger: logger))
        let submitter = JobSubmitter(configuration: configuration, store: store, logger: logger)
        let streams = EventStreamLimiter(limits: configuration.eventStreams)
        JobRoutes(
            configuration: configuration, submitter: submitter, store: store, resultStore: resultStore,
            streams: streams, bell: bell
        ).register(on: router)
        OceanRoutes(configuration: configuration, submitter: submitter, store: store, resultStore: resultStore)
            .register(on: router)
        OceanNodeRoutes(
            configuration: configuration, submitter: submitter, store: store, resultStore: resultStore,
            streams: streams
        ).register(on: router)
        if configuration.metricsListener == nil {
            MetricsRoutes(store: store, requests: requests, token: configuration.metricsToken).register(on: router)
        }
        UploadRoutes(configuration: configuration, store: store, resultStore: resultStore).register(on: router)
        router.get("/v1/openapi.json") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try OpenAPIDocument.bytes())))
        }
        // Last: it applies only to requests no route above matched (and would answer every route added after it).
        router.middlewares.add(UnmatchedRouteMiddleware(routes: router.routes))
        return router
    }
}

/// The committed OpenAPI 3.1 document of `/v1` (`Sources/Gateway/openapi.json`), shipped as a resource.
package enum OpenAPIDocument {
    package static func bytes() throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json") else {
            throw APIError(
                .internalServerError, code: "openapi_missing", message: "the OpenAPI document is not installed")
        }
        return Array(try Data(contentsOf: url))
    }
}

/// Gives every response the request id it was handled under (the caller's `X-Request-Id`, or a new one), so a
/// client's report can be matched to c2d's logs and to the job's queue message; counts responses for /metrics.
struct RequestIDMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let requests: RequestCounter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let name = HTTPField.Name.requestID
        let id = request.headers[name] ?? UUID().uuidString.lowercased()
        do {
            var response = try await next(request, context)
            // A handler that generated the id itself has already set it.
            if response.headers[name] == nil { response.headers[name] = id }
            requests.record(status: Int(response.status.code))
            return response
        } catch let error as any HTTPResponseError {
            var response = try error.response(from: request, context: context)
            response.headers[name] = id
            requests.record(status: Int(response.status.code))
            return response
        } catch {
            requests.record(status: 500)
            throw error
        }
    }
}

extension HTTPField.Name {
    static let requestID = HTTPField.Name("x-request-id")!
    static let idempotencyKey = HTTPField.Name("idempotency-key")!
}
