import AsyncHTTPClient
import ChildProcesses
import Foundation
import Gateway
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Persistence
import Synchronization
import TestSupport
import Testing

/// One c2d deployment for a test: its own compute environment (so its own queue), data, work and result
/// folders, and the `c2d` processes the test starts. Talks to it over HTTP like a client does.
final class Deployment: @unchecked Sendable {
    // @unchecked: processes are started and stopped by the test's own task only.
    let environmentID: String
    let directory: URL
    let dataDirectory: URL
    let port: Int
    let postgres: PostgresClient
    private(set) var processes: [C2DProcess] = []
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// `environmentFields`: more JSON members for the test's compute environment, e.g. `"allowNetwork": true`.
    init(
        maxJobDuration: Int = 60, maxJobs: Int = 4, extraEnvironment: [String: String] = [:],
        environmentFields: String = "", port: Int? = nil
    ) throws {
        environmentID = "t\(UInt32.random(in: 0...UInt32.max))"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-it-\(environmentID)")
        dataDirectory = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        self.port = try port ?? TestEnvironment.freePort()
        // Test workflows name the image "python" (as Ocean's do): with the local executor the test environment declares
        // that it runs on the worker's own system, unless a test brings its own images. (On Kubernetes an images list
        // would be an allow-list; there the cluster pulls whatever is named.)
        let local = extraEnvironment["C2D_EXECUTOR"] != "kubernetes"
        let images =
            environmentFields.contains("\"images\"") || !local
            ? "" : #", "images": [{"image": "python", "host": true}]"#
        let environments = """
            [{"id": "\(environmentID)", "maxJobDuration": \(maxJobDuration), "memoryMiB": 1024, "maxJobs": \(maxJobs)\(images)\(
                environmentFields.isEmpty ? "" : ", " + environmentFields)}]
            """
        try environments.write(
            to: directory.appendingPathComponent("environments.json"), atomically: true, encoding: .utf8)
        self.extraEnvironment = extraEnvironment
        postgres = PostgresClient(configuration: .fromEnvironment(), logger: Logger(label: "test"))
    }

    private let extraEnvironment: [String: String]

    var environment: [String: String] {
        [
            "C2D_ENVIRONMENTS": directory.appendingPathComponent("environments.json").path,
            "C2D_DATA_DIR": dataDirectory.path,
            "C2D_WORK_DIR": directory.appendingPathComponent("work").path,
            "C2D_RESULTS_DIR": directory.appendingPathComponent("results").path,
            "LOG_LEVEL": "debug",
        ].merging(extraEnvironment) { $1 }
    }

    @discardableResult
    func start(_ name: String, _ arguments: [String], environment extra: [String: String] = [:]) throws -> C2DProcess {
        let process = try C2DProcess(
            name: name, arguments: arguments, environment: environment.merging(extra) { $1 },
            logDirectory: directory)
        processes.append(process)
        return process
    }

    /// `c2d dev` (gateway, worker and scheduler in one process), ready to take requests.
    func startDev() async throws {
        try start("dev", ["dev", "--port", String(port)])
        try await waitUntilHealthy()
    }

    func waitUntilHealthy(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let response = try? await get("/healthz"), response.status == 200 { return }
            if let dead = processes.first(where: { !$0.isRunning }) {
                throw TestFailure("\(dead.name) exited early:\n\(dead.log.suffix(4000))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("c2d did not become healthy:\n\(logs)")
    }

    var logs: String {
        processes.map { "--- \($0.name) ---\n\($0.log.suffix(6000))" }.joined(separator: "\n")
    }

    func shutdown() async {
        for process in processes { await process.stop() }
        await postgres.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: HTTP

    struct HTTPResult {
        var status: Int
        var headers: [(String, String)]
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// A token owned by "tester" with every scope, sent on `/v1` requests that bring no Authorization of their own.
    private let adminToken = Mutex<String?>(nil)

    func token(owner: String, scopes: [APIScope]) async throws -> String {
        let token = APIToken.generate()
        _ = try await PostgresJobStore(client: postgres).createToken(
            name: "test", owner: owner, scopes: scopes.map(\.rawValue), hash: APIToken.hash(token))
        return token
    }

    func defaultAuthorization() async throws -> String {
        if let token = adminToken.withLock({ $0 }) { return "Bearer " + token }
        let token = try await token(owner: "tester", scopes: APIScope.allCases)
        adminToken.withLock { $0 = token }
        return "Bearer " + token
    }

    /// Sends the default token on `/v1` requests without an Authorization header, unless `authorize` is false.
    func request(
        _ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [String: String] = [:],
        authorize: Bool = true
    ) async throws -> HTTPResult {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if authorize, path.hasPrefix("/v1/"), !headers.keys.contains(where: { $0.lowercased() == "authorization" }) {
            request.headers.add(name: "authorization", value: try await defaultAuthorization())
        }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let collected = try await response.body.collect(upTo: 64 << 20)
        return HTTPResult(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Data(buffer: collected))
    }

    func get(_ path: String, headers: [String: String] = [:]) async throws -> HTTPResult {
        try await request(.GET, path, headers: headers)
    }

    func post(_ path: String, json: Any, token: String? = nil) async throws -> HTTPResult {
        var headers = ["content-type": "application/json"]
        if let token { headers["authorization"] = "Bearer " + token }
        return try await request(.POST, path, body: try JSONSerialization.data(withJSONObject: json), headers: headers)
    }

    func get(_ path: String, token: String) async throws -> HTTPResult {
        try await request(.GET, path, headers: ["authorization": "Bearer " + token])
    }

    // MARK: Jobs

    /// A workflow running `code` (Python) over the given inputs.
    func jobRequest(code: String, inputs: [[String: Any]] = [], maxtime: Int? = nil) -> [String: Any] {
        var stage: [String: Any] = [
            "index": 0,
            "input": inputs,
            "algorithm": ["rawcode": code, "container": ["entrypoint": "python3 $ALGO", "image": "python"]],
        ]
        if let maxtime { stage["compute"] = ["maxtime": maxtime] }
        return ["environment": environmentID, "owner": "tester", "workflow": ["stages": [stage]]]
    }

    func submit(_ request: [String: Any]) async throws -> String {
        let response = try await post("/v1/jobs", json: request)
        guard response.status == 201, let id = response.json["id"] as? String else {
            throw TestFailure("submit answered \(response.status): \(response.text)\n\(logs)")
        }
        return id
    }

    /// Polls until the job has finished; returns its final JSON.
    func waitForJob(_ id: String, timeout: Duration = .seconds(90)) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let job = try await get("/v1/jobs/\(id)").json
            if job["dateFinished"] is String { return job }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("job \(id) did not finish in time:\n\(logs)")
    }

    func results(_ id: String) async throws -> [[String: Any]] {
        let response = try await get("/v1/jobs/\(id)/results")
        guard response.status == 200, let results = response.json["results"] as? [[String: Any]] else {
            throw TestFailure("GET /v1/jobs/\(id)/results: \(response.status) \(response.text)")
        }
        return results
    }

    func download(_ id: String, name: String) async throws -> String {
        let results = try await results(id)
        guard let index = results.first(where: { $0["filename"] as? String == name })?["index"] as? Int else {
            throw TestFailure("job \(id) has no result \(name): \(results)")
        }
        let response = try await get("/v1/jobs/\(id)/results/\(index)")
        #expect(response.status == 200)
        return response.text
    }

    /// Jobs rows written for this deployment's environment.
    func jobCount() async throws -> Int {
        try await postgres.query("select count(*) as n from jobs where environment = $1", [.text(environmentID)])[0]
            .int("n")
    }
}

extension Deployment {
    /// Runs `body` against a fresh deployment and always stops its processes afterwards.
    static func with(
        maxJobDuration: Int = 60, maxJobs: Int = 4, extraEnvironment: [String: String] = [:],
        environmentFields: String = "", port: Int? = nil, _ body: (Deployment) async throws -> Void
    ) async throws {
        let deployment = try Deployment(
            maxJobDuration: maxJobDuration, maxJobs: maxJobs, extraEnvironment: extraEnvironment,
            environmentFields: environmentFields, port: port)
        do {
            try await body(deployment)
        } catch {
            await deployment.shutdown()
            throw error
        }
        await deployment.shutdown()
    }
}
