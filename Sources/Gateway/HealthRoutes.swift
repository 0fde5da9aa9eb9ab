import Domain
import Foundation
import Hummingbird
import Persistence

/// `GET /v1/environments` (the environments this gateway accepts jobs for) and `GET /readyz` (whether it can
/// take jobs now: Postgres answers `select 1` within a second; the gateway needs nothing else to accept jobs).
struct HealthRoutes: Sendable {
    let configuration: GatewayConfiguration
    let store: PostgresJobStore

    static let postgresDeadline: Duration = .seconds(1)

    func register(on router: Router<GatewayRequestContext>) {
        router.get("/v1/environments", use: environments)
        router.get("/readyz", use: ready)
    }

    struct EnvironmentList: Encodable {
        var environments: [ComputeEnvironment]
    }

    @Sendable func environments(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        try JobRoutes.json(EnvironmentList(environments: await configuration.listedEnvironments(store)))
    }

    struct Readiness: Encodable {
        var ready: Bool
        /// Per dependency: "ok", or what failed.
        var checks: [String: String]
    }

    /// 200 when every check passes; otherwise 503, naming the ones that failed.
    @Sendable func ready(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        var checks: [String: String] = [:]
        do {
            try await withDeadline(Self.postgresDeadline, operation: "postgres readiness check") { [store] in
                try await store.ping()
            }
            checks["postgres"] = "ok"
        } catch {
            checks["postgres"] = "failed: \(String(describing: error).prefix(200))"
        }
        let ready = checks.values.allSatisfy { $0 == "ok" }
        return try JobRoutes.json(
            Readiness(ready: ready, checks: checks), status: ready ? .ok : .serviceUnavailable)
    }
}
