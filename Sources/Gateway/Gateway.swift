import AMQP
import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Persistence

/// Builds the gateway's HTTP application: the native API under `/v1` and health checks.
package enum Gateway {
    package static func buildApplication(
        configuration: GatewayConfiguration, store: PostgresJobStore, amqp: AMQPClient, resultStore: any ResultStore,
        logger: Logger
    ) -> some ApplicationProtocol {
        let router = Router()
        let requests = RequestCounter()
        router.middlewares.add(RequestIDMiddleware(requests: requests))
        let submitter = JobSubmitter(configuration: configuration, store: store, amqp: amqp, logger: logger)
        JobRoutes(configuration: configuration, submitter: submitter, store: store, resultStore: resultStore)
            .register(on: router)
        OceanRoutes(configuration: configuration, submitter: submitter, store: store, resultStore: resultStore)
            .register(on: router)
        MetricsRoutes(store: store, amqp: amqp, requests: requests).register(on: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "c2d"),
            logger: logger)
    }
}

/// Gives every response the request id it was handled under (the caller's `X-Request-Id`, or a new one), so a
/// client's report can be matched to c2d's logs and to the job's queue message; counts responses for /metrics.
struct RequestIDMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
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
