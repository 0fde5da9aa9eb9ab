import Domain
import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOFoundationCompat
import Persistence
import Storage
import TestSupport
import Testing

/// The gateway's routes in process (`app.test(.router)`): the real router and middleware against the project's
/// migrations on a fresh Postgres schema, without a listener or a `c2d` process. Behaviour that needs processes
/// (dispatch, workers, restarts) stays in IntegrationTests.
@Suite struct GatewayRouteTests {
    @Test("health, readiness, environments and the OpenAPI document need no token")
    func publicRoutes() async throws {
        try await withGateway { client, _ in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ok\n")
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                let body = try Self.json(response)
                #expect(body["ready"] as? Bool == true)
                #expect((body["checks"] as? [String: String])?["postgres"] == "ok")
            }
            try await client.execute(uri: "/v1/environments", method: .get) { response in
                #expect(response.status == .ok)
                let environments = try #require(try Self.json(response)["environments"] as? [[String: Any]])
                #expect(environments.compactMap { $0["id"] as? String } == [GatewayHarness.environment.id])
            }
            try await client.execute(uri: "/v1/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                let document = try Self.json(response)
                #expect(document["openapi"] as? String == "3.1.0")
            }
        }
    }

    @Test("readiness is 503 naming Postgres when it does not answer")
    func notReadyWithoutPostgres() async throws {
        // A real client to a port nothing listens on: the store fails as it would with Postgres down.
        let port = try TestEnvironment.freePort()
        let unreachable = PostgresClient(
            configuration: PostgresConfiguration(connectionString: "host=127.0.0.1 port=\(port) user=postgres"),
            logger: TestDatabase.logger)
        do {
            let router = Gateway.buildRouter(
                configuration: GatewayConfiguration(environments: [GatewayHarness.environment]),
                store: PostgresJobStore(client: unreachable), resultStore: GatewayHarness.resultStore,
                logger: TestDatabase.logger)
            try await Application(router: router).test(.router) { client in
                try await client.execute(uri: "/readyz", method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    let body = try Self.json(response)
                    #expect(body["ready"] as? Bool == false)
                    let postgres = try #require((body["checks"] as? [String: String])?["postgres"])
                    #expect(postgres.hasPrefix("failed: "))
                }
            }
        } catch {
            await unreachable.shutdown()
            throw error
        }
        await unreachable.shutdown()
    }

    @Test("the native API needs a live bearer token with the route's scope")
    func authentication() async throws {
        try await withGateway { client, gateway in
            let noToken = try await client.execute(uri: "/v1/jobs", method: .get)
            #expect(noToken.status == .unauthorized)
            let noTokenError = try Self.json(noToken)
            #expect(noTokenError["code"] as? String == "unauthenticated")

            let malformed = try await client.execute(
                uri: "/v1/jobs", method: .get, headers: [.authorization: "Basic x"])
            #expect(malformed.status == .unauthorized)

            let unknown = try await client.execute(
                uri: "/v1/jobs", method: .get, headers: [.authorization: "Bearer \(APIToken.generate())"])
            #expect(unknown.status == .unauthorized)

            let readOnly = try await gateway.token(owner: "alice", scopes: [.read])
            let submit = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: readOnly, body: Self.body(GatewayHarness.jobRequest()))
            #expect(submit.status == .forbidden)
            let submitError = try Self.json(submit)
            #expect(submitError["code"] as? String == "missing_scope")
            let written = try await gateway.jobs()
            #expect(written.isEmpty, "nothing written")

            let list = try await client.execute(uri: "/v1/jobs", method: .get, headers: readOnly)
            #expect(list.status == .ok)
        }
    }

    @Test("a submitted job is stored, readable by its owner, and hidden from other owners")
    func submitAndRead() async throws {
        try await withGateway { client, gateway in
            let alice = try await gateway.token(owner: "alice", scopes: [.submit, .read])
            var headers = alice
            headers[HTTPField.Name("x-request-id")!] = "request-1"
            let created = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: headers, body: Self.body(GatewayHarness.jobRequest()))
            #expect(created.status == .created, "\(String(buffer: created.body))")
            #expect(created.headers[HTTPField.Name("x-request-id")!] == "request-1")
            let job = try Self.json(created)
            let id = try #require(job["id"] as? String)
            #expect(job["owner"] as? String == "alice")
            #expect(job["environment"] as? String == GatewayHarness.environment.id)
            #expect(created.headers[.location] == "/v1/jobs/\(id)")

            let jobID = try #require(JobID(id))
            let stored = try #require(try await gateway.store.job(jobID))
            #expect(stored.owner == "alice")
            #expect(stored.status == .queued)
            #expect(stored.finishedAt == nil)

            let read = try await client.execute(uri: "/v1/jobs/\(id)", method: .get, headers: alice)
            #expect(read.status == .ok)
            let readJob = try Self.json(read)
            #expect(readJob["id"] as? String == id)

            let bob = try await gateway.token(owner: "bob", scopes: [.submit, .read])
            let hidden = try await client.execute(uri: "/v1/jobs/\(id)", method: .get, headers: bob)
            #expect(hidden.status == .notFound, "another owner's job does not exist for the caller")
            let hiddenError = try Self.json(hidden)
            #expect(hiddenError["code"] as? String == "job_not_found")
            let stop = try await client.execute(uri: "/v1/jobs/\(id)/stop", method: .post, headers: bob)
            #expect(stop.status == .notFound)
        }
    }

    @Test("a repeated Idempotency-Key returns the first job with 200 and writes nothing; another job under it is 422")
    func idempotentSubmit() async throws {
        try await withGateway { client, gateway in
            var headers = try await gateway.token(owner: "alice", scopes: [.submit, .read])
            headers[HTTPField.Name("idempotency-key")!] = "order-17"
            let first = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: headers, body: Self.body(GatewayHarness.jobRequest()))
            #expect(first.status == .created, "\(String(buffer: first.body))")
            let again = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: headers, body: Self.body(GatewayHarness.jobRequest()))
            #expect(again.status == .ok)
            let firstJob = try Self.json(first)
            let againJob = try Self.json(again)
            #expect(againJob["id"] as? String == firstJob["id"] as? String)

            // The same key for another workflow is a mistake to report, not the first job to return.
            var other = GatewayHarness.jobRequest()
            other["workflow"] = [
                "stages": [
                    [
                        "index": 0, "input": [[String: Any]](),
                        "algorithm": ["rawcode": "print(2)", "container": ["entrypoint": "python3 $ALGO"]],
                    ]
                ]
            ]
            let reused = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: headers, body: Self.body(other))
            #expect(reused.status == .unprocessableContent, "\(String(buffer: reused.body))")
            #expect(try Self.json(reused)["code"] as? String == "idempotency_key_reused")
            var shared = GatewayHarness.jobRequest()
            shared["viewers"] = ["bob"]
            let sharedAgain = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: headers, body: Self.body(shared))
            #expect(sharedAgain.status == .unprocessableContent, "\(String(buffer: sharedAgain.body))")
            let written = try await gateway.jobs()
            #expect(written.count == 1)
        }
    }

    @Test(
        "bad submissions get a 4xx with a code and write nothing",
        arguments: [
            ("not json", "{", 400),
            ("unknown environment", #"{"environment":"nowhere","workflow":{"stages":[]}}"#, 400),
            ("no workflow", #"{"environment":"gateway-tests"}"#, 400),
        ])
    func badSubmissions(name: String, body: String, status: Int) async throws {
        try await withGateway { client, gateway in
            let token = try await gateway.token(owner: "alice", scopes: [.submit, .read])
            let response = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: token, body: ByteBuffer(string: body))
            #expect(Int(response.status.code) == status, "\(name): \(String(buffer: response.body))")
            let error = try Self.json(response)
            #expect((error["code"] as? String)?.isEmpty == false, "\(name)")
            #expect((error["message"] as? String)?.isEmpty == false, "\(name)")
            let written = try await gateway.jobs()
            #expect(written.isEmpty, "\(name)")
        }
    }

    @Test("a request no route serves gets a JSON error: 405 with Allow for another method of a served path, else 404")
    func unmatchedRoutes() async throws {
        try await withGateway { client, gateway in
            let token = try await gateway.token(owner: "alice", scopes: [.submit, .read])
            let id = "0123456789abcdef0123456789abcdef"
            let delete = try await client.execute(uri: "/v1/jobs/\(id)", method: .delete, headers: token)
            #expect(delete.status == .methodNotAllowed)
            #expect(delete.headers[.allow] == "GET, HEAD, PATCH")
            #expect(try Self.json(delete)["code"] as? String == "method_not_allowed")
            let put = try await client.execute(uri: "/v1/jobs", method: .put, headers: token)
            #expect(put.status == .methodNotAllowed)
            #expect(put.headers[.allow] == "GET, HEAD, POST")
            for uri in ["/v1/nothing", "/v1/jobs/\(id)/nothing", "/nothing"] {
                let missing = try await client.execute(uri: uri, method: .get, headers: token)
                #expect(missing.status == .notFound, "\(uri)")
                #expect(try Self.json(missing)["code"] as? String == "route_not_found", "\(uri)")
            }
            // Authentication still comes first on /v1.
            let anonymous = try await client.execute(uri: "/v1/jobs/\(id)", method: .delete)
            #expect(anonymous.status == .unauthorized)
        }
    }

    @Test("HEAD answers what GET would, without a body, and gives a stream's slot back")
    func headRequests() async throws {
        try await withGateway({ $0.eventStreams = .init(total: 4, perCaller: 1) }) { client, gateway in
            let alice = try await gateway.token(owner: "alice", scopes: [.submit, .read])
            let created = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: alice, body: Self.body(GatewayHarness.jobRequest()))
            let id = try #require(try Self.json(created)["id"] as? String)
            let job = try await client.execute(uri: "/v1/jobs/\(id)", method: .head, headers: alice)
            #expect(job.status == .ok)
            #expect(job.headers[.contentType] == "application/json")
            #expect(job.body.readableBytes == 0)
            // One stream per caller: a slot that a HEAD kept would refuse the next.
            for _ in 0..<3 {
                let stream = try await client.execute(uri: "/v1/jobs/\(id)/events", method: .head, headers: alice)
                #expect(stream.status == .ok)
                #expect(stream.headers[.contentType] == "text/event-stream")
            }
            let missing = try await client.execute(
                uri: "/v1/jobs/\(String(repeating: "0", count: 32))", method: .head, headers: alice)
            #expect(missing.status == .notFound)
            let anonymous = try await client.execute(uri: "/v1/jobs/\(id)", method: .head)
            #expect(anonymous.status == .unauthorized)
            #expect(try await client.execute(uri: "/healthz", method: .head).status == .ok)
        }
    }

    @Test("an event stream refuses a start that is no event id, in the header or in after, and an empty filter")
    func badStreamStart() async throws {
        try await withGateway { client, gateway in
            let token = try await gateway.token(owner: "ops", scopes: [.operate])
            let starts: [(String?, String?)] = [
                ("x", nil), (nil, "-1"), ("0", "-1"), ("", nil), ("+5", nil), (nil, "+5"),
            ]
            for (header, after) in starts {
                var headers = token
                if let header { headers[HTTPField.Name("last-event-id")!] = header }
                let uri = "/v1/events" + (after.map { "?after=\($0)" } ?? "")
                let response = try await client.execute(uri: uri, method: .get, headers: headers)
                #expect(response.status == .badRequest, "\(header ?? "-") \(after ?? "-")")
                #expect(try Self.json(response)["code"] as? String == "invalid_event_id")
            }
            let empty = try await client.execute(uri: "/v1/events?environment=", method: .get, headers: token)
            #expect(empty.status == .badRequest)
            #expect(try Self.json(empty)["code"] as? String == "invalid_filter")
        }
    }

    @Test("an event stream sends a status change when it commits, not at its next poll")
    func eventStreamWakesAtCommit() async throws {
        // Polling every 60 s: only the bell (LISTEN on job events) can bring the stop's event within the test.
        try await withGateway({ $0.eventPollInterval = .seconds(60) }, bell: true) { client, gateway in
            let alice = try await gateway.token(owner: "alice", scopes: [.submit, .read, .operate])
            let created = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: alice, body: Self.body(GatewayHarness.jobRequest()))
            let id = try #require(try Self.json(created)["id"] as? String)
            let started = ContinuousClock.now
            async let stream = client.execute(uri: "/v1/jobs/\(id)/events", method: .get, headers: alice)
            // The stream has sent the queued event and is waiting when the stop commits.
            try await Task.sleep(for: .seconds(1))
            let stop = try await client.execute(uri: "/v1/jobs/\(id)/stop", method: .post, headers: alice)
            #expect(stop.status == .ok || stop.status == .accepted, "\(String(buffer: stop.body))")
            let events = try await stream
            let elapsed = ContinuousClock.now - started
            let text = String(buffer: events.body)
            #expect(text.components(separatedBy: "event: status").count - 1 == 2, "queued, then stopped: \(text)")
            #expect(elapsed < .seconds(30), "the stream ended \(elapsed) after it started, so it waited for a poll")
        }
    }

    // MARK: Support

    /// Runs `body` against an in-process gateway on a freshly migrated schema.
    private func withGateway(
        _ configure: (inout GatewayConfiguration) -> Void = { _ in }, bell: Bool = false,
        _ body: @Sendable (any TestClientProtocol, GatewayHarness) async throws -> Void
    ) async throws {
        try await TestDatabase.withMigratedSchema { clients in
            let store = PostgresJobStore(client: clients("gateway"))
            try await store.upsertEnvironments([GatewayHarness.environment])
            var configuration = GatewayConfiguration(environments: [GatewayHarness.environment])
            configure(&configuration)
            let eventBell = bell ? EventStreamBell(store: store, logger: TestDatabase.logger) : nil
            let router = Gateway.buildRouter(
                configuration: configuration, store: store, resultStore: GatewayHarness.resultStore,
                logger: TestDatabase.logger, bell: eventBell)
            let gateway = GatewayHarness(store: store)
            let ringing = Task { try await eventBell?.run() }
            defer { ringing.cancel() }
            try await Application(router: router).test(.router) { client in try await body(client, gateway) }
        }
    }

    static func body(_ object: [String: Any]) throws -> ByteBuffer {
        ByteBuffer(data: try JSONSerialization.data(withJSONObject: object))
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(buffer: response.body))
        return try #require(object as? [String: Any], "not a JSON object: \(String(buffer: response.body))")
    }
}

/// What a gateway route test reaches besides HTTP: the store under the router, and tokens it issues.
struct GatewayHarness: Sendable {
    static let environment = ComputeEnvironment(id: "gateway-tests")
    /// Results are not read by these tests; the directory is never created.
    static let resultStore = FileResultStore(
        root: FileManager.default.temporaryDirectory.appendingPathComponent("c2d-gateway-tests-\(UUID())"))

    let store: PostgresJobStore

    /// A new token for `owner`, as `c2d token create` issues it; returns the header that presents it.
    func token(owner: String, scopes: [APIScope]) async throws -> HTTPFields {
        let token = APIToken.generate()
        _ = try await store.createToken(
            name: "gateway-tests", owner: owner, scopes: scopes.map(\.rawValue), hash: APIToken.hash(token))
        return [.authorization: "Bearer \(token)"]
    }

    /// Every job in the schema, newest first.
    func jobs() async throws -> [Job] {
        try await store.listJobs(.init(), after: nil, limit: 100).jobs
    }

    /// A valid one-stage job for ``environment``.
    static func jobRequest() -> [String: Any] {
        let stage: [String: Any] = [
            "index": 0, "input": [[String: Any]](),
            "algorithm": ["rawcode": "print(1)", "container": ["entrypoint": "python3 $ALGO"]],
        ]
        return ["environment": environment.id, "workflow": ["stages": [stage]]]
    }
}
