import AMQP
import App
import ArgumentParser
import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Gateway
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Persistence
import ServiceLifecycle
import Storage

#if canImport(Glibc)
    import Glibc
#endif

/// `c2d bench submit`: a load generator with keep-alive connections against the gateway on real services. By
/// default it runs a gateway in this process, on a fresh environment of its own (jobs queue and stay queued: no
/// worker runs), and removes its jobs, queue and token afterwards; `--url` and `--token` aim it at a running c2d
/// instead. Prints single-submit accepted/s with p50/p99 (connections sending back to back, then an open-loop rate),
/// batch jobs/s, the time of one large batch, and the same-run ceiling: the same client against a route that only
/// reads the body and answers 201, so the gateway's figures can be read against what HTTP alone allows here.
struct BenchSubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit", abstract: "Measure job submissions per second through the native API.")

    @Option(help: "A running gateway to measure (default: start one in this process).")
    var url: String?
    @Option(help: "Bearer token for --url (default: a token created in Postgres for the run).")
    var token: String?
    @Option(help: "Environment to submit to with --url (default: the first one the gateway lists).")
    var environment: String?
    @Option(help: "Keep-alive connections for single submits.")
    var connections: Int = 64
    @Option(help: "Seconds per measured phase.")
    var duration: Int = 10
    @Option(help: "Connections for batch submits.")
    var batchConnections: Int = 8
    @Option(help: "Jobs per batch request.")
    var batchSize: Int = 500
    @Option(help: "Jobs in the single large batch (0 skips it).")
    var largeBatch: Int = 10_000
    @Option(help: "Offered rate (submits/s) of the open-loop latency phase (0 skips it).")
    var openRate: Int = 1_000

    func run() async throws {
        let settings = try Launcher.settings()
        var logger = Logger(label: "c2d-bench")
        logger.logLevel = .warning
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        let store = PostgresJobStore(client: postgres)
        defer { Task { await postgres.shutdown() } }
        if let url {
            var token = self.token
            if token == nil { token = try await Self.createToken(store).value }
            var environment = self.environment
            if environment == nil { environment = try await Self.firstEnvironment(url: url) }
            try await measure(url: url, token: token ?? "", environment: environment ?? "")
            return
        }
        await BenchCleanCommand.warnAboutLeftovers(store)
        let environment = ComputeEnvironment(id: "bench-\(UInt32.random(in: 0...UInt32.max))")
        let lock = try await BenchEnvironmentLock.take(environment.id, postgres: settings.postgres)
        try await store.upsertEnvironments([environment])
        let port = try LoopbackPort.free()
        var configuration = GatewayConfiguration(
            port: port, environments: [environment], limits: settings.gateway.limits)
        configuration.maxBatchJobs = max(largeBatch, batchSize, settings.gateway.maxBatchJobs)
        // No worker serves the bench's environment, so nothing is admitted: the bench measures acceptance alone.
        let gateway = Gateway.buildApplication(
            configuration: configuration, store: store, resultStore: FileResultStore(root: settings.resultsDirectory),
            logger: logger)
        let group = ServiceGroup(services: [gateway], logger: logger)
        let token = try await Self.createToken(store)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let url = "http://127.0.0.1:\(port)"
                try await Self.waitUntilHealthy(url)
                try await BenchInterruption.cancellingOnSignals {
                    try await measure(url: url, token: token.value, environment: environment.id)
                }
            } catch {
                // The gateway first finishes the submits it is still serving: one that committed after the clean-up
                // would leave a job behind.
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                try? await Self.cleanUp(environment.id, token: token.id, store: store)
                await lock.release()
                throw error
            }
            try await Self.cleanUp(environment.id, token: token.id, store: store)
            await lock.release()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    func measure(url: String, token: String, environment: String) async throws {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(connections, batchConnections)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(60))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        defer { _ = client.shutdown() }
        let single = try Self.body(["environment": environment, "workflow": Self.workflow()])
        print("submit benchmark against \(url), environment \(environment); ~\(single.count)-byte job spec")

        // Warm the connections and the gateway's statement cache, then measure.
        _ = try await load(
            client, url: url + "/v1/jobs", token: token, body: single, connections: connections, seconds: 1)
        let singles = try await load(
            client, url: url + "/v1/jobs", token: token, body: single, connections: connections,
            seconds: Double(duration))
        print(
            "single submits, \(connections) connections back to back: \(Self.rate(singles.count, singles.elapsed)) "
                + "accepted/s, p50 \(Self.ms(singles.percentile(0.5))) ms, p99 \(Self.ms(singles.percentile(0.99))) ms, "
                + "\(singles.errors) errors  (target ≥ 2,000/s)")
        if openRate > 0 {
            let open = try await openLoop(
                client, url: url + "/v1/jobs", token: token, body: single, rate: openRate, seconds: Double(duration))
            print(
                "single submits offered at \(openRate)/s (open loop, latency from each submit's scheduled time): "
                    + "\(Self.rate(open.count, open.elapsed)) accepted/s, p50 \(Self.ms(open.percentile(0.5))) ms, "
                    + "p99 \(Self.ms(open.percentile(0.99))) ms, \(open.errors) errors  (target p99 ≤ 25 ms)")
        }
        let ceiling = try await httpCeiling(client, body: single)
        print(
            "ceiling: the same client and \(connections) connections against a route that only reads the body and "
                + "answers 201: \(Self.rate(ceiling.count, ceiling.elapsed)) answers/s, "
                + "p50 \(Self.ms(ceiling.percentile(0.5))) ms, p99 \(Self.ms(ceiling.percentile(0.99))) ms")

        let batch = try Self.body([
            "environment": environment,
            "jobs": Array(repeating: ["workflow": Self.workflow()], count: batchSize),
        ])
        let batches = try await load(
            client, url: url + "/v1/batches", token: token, body: batch, connections: batchConnections,
            seconds: Double(duration))
        print(
            "batches of \(batchSize), \(batchConnections) connections: "
                + "\(Self.rate(batches.count * batchSize, batches.elapsed)) jobs/s, per request p50 "
                + "\(Self.ms(batches.percentile(0.5))) ms, p99 \(Self.ms(batches.percentile(0.99))) ms, "
                + "\(batches.errors) errors  (target ≥ 15,000 jobs/s)")

        if largeBatch > 0 {
            let large = try Self.body([
                "environment": environment,
                "jobs": Array(repeating: ["workflow": Self.workflow()], count: largeBatch),
            ])
            var times: [Duration] = []
            for _ in 0..<3 {
                let started = ContinuousClock.now
                let status = try await Self.post(client, url: url + "/v1/batches", token: token, body: large)
                guard status == 201 else { throw ValidationError("the \(largeBatch)-job batch answered \(status)") }
                times.append(ContinuousClock.now - started)
            }
            print(
                "one batch of \(largeBatch) (\(large.count / 1024) KiB): "
                    + times.map { "\(Self.ms($0)) ms" }.joined(separator: ", ") + "  (target ≤ 1,500 ms)")
        }
    }

    struct Samples {
        var latencies: [Duration] = []
        var errors = 0
        var elapsed: Duration = .zero
        var count: Int { latencies.count }

        func percentile(_ p: Double) -> Duration {
            guard !latencies.isEmpty else { return .zero }
            let sorted = latencies.sorted()
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
        }
    }

    /// `connections` callers, each sending its next request when the previous one is answered, for `seconds`.
    func load(
        _ client: HTTPClient, url: String, token: String, body: [UInt8], connections: Int, seconds: Double
    ) async throws -> Samples {
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int(seconds * 1000))
        var total = Samples()
        try await withThrowingTaskGroup(of: Samples.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    var samples = Samples()
                    while ContinuousClock.now < deadline {
                        let sent = ContinuousClock.now
                        let status = try await Self.post(client, url: url, token: token, body: body)
                        if status == 201 {
                            samples.latencies.append(ContinuousClock.now - sent)
                        } else {
                            samples.errors += 1
                        }
                    }
                    return samples
                }
            }
            for try await samples in group {
                total.latencies += samples.latencies
                total.errors += samples.errors
            }
        }
        total.elapsed = ContinuousClock.now - started
        return total
    }

    /// Submits at `rate` per second for `seconds`, each at its scheduled time whether or not earlier ones were
    /// answered; a latency counts from the scheduled time, so a stall shows in every submit it delays.
    func openLoop(
        _ client: HTTPClient, url: String, token: String, body: [UInt8], rate: Int, seconds: Double
    ) async throws -> Samples {
        let started = ContinuousClock.now
        let count = Int(Double(rate) * seconds)
        var total = Samples()
        try await withThrowingTaskGroup(of: Duration?.self) { group in
            for index in 0..<count {
                let scheduled = started + .nanoseconds(Int64(index) * 1_000_000_000 / Int64(rate))
                try await Task.sleep(until: scheduled, clock: .continuous)
                group.addTask {
                    let status = try await Self.post(client, url: url, token: token, body: body)
                    return status == 201 ? ContinuousClock.now - scheduled : nil
                }
            }
            for try await latency in group {
                if let latency { total.latencies.append(latency) } else { total.errors += 1 }
            }
        }
        total.elapsed = ContinuousClock.now - started
        return total
    }

    /// The single-submit load against an HTTP server in this process whose one route reads the body and answers 201
    /// with a small JSON body: no authentication, validation or database.
    func httpCeiling(_ client: HTTPClient, body: [UInt8]) async throws -> Samples {
        let port = try LoopbackPort.free()
        let router = Router()
        router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
        router.post("/v1/jobs") { request, _ -> Response in
            _ = try await request.body.collect(upTo: 1 << 20)
            let answer = #"{"id":"00000000-0000-0000-0000-000000000000","status":1}"#
            return Response(
                status: .created, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        var logger = Logger(label: "c2d-bench-ceiling")
        logger.logLevel = .warning
        let server = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        let group = ServiceGroup(services: [server], logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { tasks.cancelAll() }
            let url = "http://127.0.0.1:\(port)"
            do {
                try await Self.waitUntilHealthy(url)
                _ = try await load(
                    client, url: url + "/v1/jobs", token: "", body: body, connections: connections, seconds: 1)
                let samples = try await load(
                    client, url: url + "/v1/jobs", token: "", body: body, connections: connections,
                    seconds: Double(duration))
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return samples
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
    }

    static func post(_ client: HTTPClient, url: String, token: String, body: [UInt8]) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "authorization", value: "Bearer " + token)
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await client.execute(request, timeout: .seconds(60))
        _ = try await response.body.collect(upTo: 16 << 20)
        return Int(response.status.code)
    }

    /// A job of about 1 KiB: a raw algorithm and one pinned input.
    static func workflow() -> [String: Any] {
        let code = "import json, os\n# " + String(repeating: "c2d benchmark ", count: 40) + "\nprint('ok')\n"
        return [
            "stages": [
                [
                    "index": 0,
                    "input": [
                        [
                            "index": 0, "id": "did:op:bench", "url": "https://example.org/data.csv",
                            "checksum": String(repeating: "ab", count: 32),
                        ]
                    ],
                    "algorithm": ["rawcode": code, "container": ["entrypoint": "python3 $ALGO"]],
                    "compute": ["maxtime": 60],
                ]
            ]
        ]
    }

    static func body(_ object: [String: Any]) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: object))
    }

    static func createToken(_ store: PostgresJobStore) async throws -> (id: UUID, value: String) {
        let value = APIToken.generate()
        let stored = try await Launcher.failClearly("cannot create a token (is `c2d migrate` done?)") {
            try await store.createToken(
                name: "bench", owner: "bench", scopes: ["submit", "read"], hash: APIToken.hash(value))
        }
        return (stored.id, value)
    }

    static func firstEnvironment(url: String) async throws -> String {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: url + "/v1/environments"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        guard let first = (object?["environments"] as? [[String: Any]])?.first?["id"] as? String else {
            throw ValidationError("\(url)/v1/environments lists no environment; pass --environment")
        }
        return first
    }

    static func waitUntilHealthy(_ url: String) async throws {
        for _ in 0..<100 {
            if let response = try? await HTTPClient.shared.execute(
                HTTPClientRequest(url: url + "/healthz"), timeout: .seconds(1)), response.status == .ok
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("\(url) did not start")
    }

    static func cleanUp(_ environment: String, token: UUID, store: PostgresJobStore) async throws {
        try await store.removeEnvironment(environment)
        _ = try await store.revokeToken(id: token)
    }

    static func rate(_ count: Int, _ elapsed: Duration) -> String {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return String(format: "%.0f", Double(count) / max(seconds, 1e-9))
    }

    static func ms(_ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%.1f", seconds * 1000)
    }
}
