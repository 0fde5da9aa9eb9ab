import AMQP
import Domain
import Foundation
import Gateway
import Hummingbird
import Logging
import Persistence
import Storage
import Testing

/// The committed OpenAPI document and the routes the gateway serves must describe the same `/v1` API.
@Suite("OpenAPI agreement")
struct OpenAPIAgreementTests {
    @Test("every served /v1 route is documented, and every documented operation is served")
    func agreement() async throws {
        let logger = Logger(label: "openapi-test")
        // Building the router connects to nothing: clients connect on first use.
        let postgres = PostgresClient(configuration: .fromEnvironment(), logger: logger)
        let router = Gateway.buildRouter(
            configuration: GatewayConfiguration(), store: PostgresJobStore(client: postgres),
            resultStore: FileResultStore(root: FileManager.default.temporaryDirectory), logger: logger)
        let served = Set(
            router.routes.map { "\($0.method.rawValue) \($0.path.description)" }.filter { $0.contains(" /v1/") })

        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(try OpenAPIDocument.bytes())) as? [String: Any])
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"]
        let documented = Set(
            paths.flatMap { path, operations in
                operations.keys.filter(methods.contains).map { "\($0.uppercased()) \(path)" }
            })
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented))")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served))")
        #expect(served.count >= 11)
        await postgres.shutdown()
    }
}
