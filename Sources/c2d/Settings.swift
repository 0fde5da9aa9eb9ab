import AMQP
import Domain
import Foundation
import Gateway
import Logging
import Persistence
import Runtime
import Signatures

/// Everything the `c2d` command reads from its environment, with the defaults README's configuration table
/// lists. Bad values stop the process with one clear message.
struct Settings {
    var postgres: PostgresConfiguration
    var amqp: AMQPConfiguration
    var environments: [ComputeEnvironment]
    /// Where `path` inputs are read from (the publisher's data).
    var dataDirectory: URL
    /// Whether input and algorithm URLs may point at loopback, private or link-local addresses.
    var allowPrivateURLs: Bool
    /// Non-public networks input and algorithm URLs may reach even so (`C2D_ALLOWED_PRIVATE_NETWORKS`, CIDR list;
    /// local executor).
    var allowedPrivateNetworks: [IPNetwork]
    /// Hard limits of the local sandbox (`C2D_SANDBOX_ISOLATION`, `C2D_SANDBOX_CGROUP`, `C2D_SANDBOX_NETWORK_POOL`,
    /// `C2D_SANDBOX_DNS`, `C2D_SANDBOX_ALLOWED_NETWORKS`).
    var sandboxIsolation: SandboxIsolationConfiguration
    /// Where job workspaces are made.
    var workDirectory: URL
    /// Where the filesystem result store keeps outputs and logs.
    var resultsDirectory: URL
    /// Which result store: the filesystem at `resultsDirectory`, or S3 (`C2D_RESULT_STORE`).
    var resultStore: ResultStoreSettings
    /// Local executor: where OCI image layouts are (`C2D_IMAGES_DIR`, default `.data/images`).
    var imagesDirectory: URL
    /// Local executor: where unpacked images are cached (`C2D_IMAGE_CACHE_DIR`, default `.data/image-cache`).
    var imageCacheDirectory: URL
    var migrationsDirectory: URL
    var workerSlots: Int
    var leaseDuration: Duration
    /// How long after a worker's lease lapsed the scheduler hands its job to another worker.
    var leaseGrace: Duration
    /// Size and count limits on submissions (`C2D_MAX_BODY_BYTES`, `C2D_MAX_INPUTS`, `C2D_MAX_FILES_PER_INPUT`,
    /// `C2D_MAX_FIELD_BYTES`, `C2D_MAX_RAWCODE_BYTES`, `C2D_MAX_WORKFLOW_BYTES`).
    var limits: SubmissionLimits
    /// Native API authentication (`C2D_API_AUTH`: `token`, the default, or `none`).
    var authMode: APIAuthMode
    /// How long a token lookup is cached (`C2D_TOKEN_CACHE_SECONDS`, default 5).
    var tokenCacheTTL: Duration
    /// Native API: most jobs per `POST /v1/batches` (`C2D_MAX_BATCH_JOBS`, default 10,000).
    var maxBatchJobs: Int
    /// Native API: largest `POST /v1/batches` body (`C2D_MAX_BATCH_BODY_BYTES`, default 64 MiB).
    var maxBatchBodyBytes: Int
    /// Internal upload endpoint: largest file a publish pod may upload (`C2D_MAX_UPLOAD_BYTES`, default 10 GiB).
    var maxUploadBytes: Int64
    /// Internal upload endpoint: where upload bodies are spooled (`C2D_UPLOAD_SPOOL_DIR`, default `<tmp>/c2d-uploads`).
    var uploadSpoolDirectory: URL
    /// Native API: event streams per caller and in total (`C2D_SSE_MAX_STREAMS_PER_CALLER` 16,
    /// `C2D_SSE_MAX_STREAMS` 256).
    var eventStreams: EventStreamLimiter.Limits
    /// `/metrics` on a listener of its own (`C2D_METRICS_ADDRESS`, `host:port`; default none: on the API's port).
    var metricsListener: (host: String, port: Int)?
    /// A bearer token `/metrics` requires (`C2D_METRICS_TOKEN`; default none).
    var metricsToken: String?
    /// Ocean API: off, on for the Providers in `C2D_ALLOWED_PROVIDERS` (comma-separated), or open to any signer
    /// with `C2D_OCEAN_OPEN_DEVELOPMENT=1`. Default off.
    var oceanAccess: OceanAccess
    /// Ocean API: the operator's address (`C2D_OPERATOR_ADDRESS`; default none).
    var operatorAddress: String?
    /// Workers: the operator's key that signs Ocean Provider downloads of `remote` sources
    /// (`C2D_OPERATOR_PRIVATE_KEY`, 64 hex digits; default none, which refuses `remote` sources).
    var operatorPrivateKey: [UInt8]?
    var logLevel: Logger.Level
    /// `C2D_EXECUTOR=kubernetes`: jobs run as Kubernetes objects; nil runs them in the local sandbox.
    var kubernetes: KubernetesSettings?
    var exitAfterClaimForTesting: Bool

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    static func load(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> Settings {
        func integer(_ key: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
            guard let text = env[key], !text.isEmpty else { return value }
            guard let number = Int(text), range.contains(number) else {
                throw Invalid(description: "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        func networks(_ key: String) throws -> [IPNetwork] {
            do {
                return try OutboundAddressPolicy.parseNetworks(env[key])
            } catch {
                throw Invalid(description: "\(key): \(error)")
            }
        }
        func directory(_ key: String, default path: String) -> URL {
            URL(fileURLWithPath: env[key].flatMap { $0.isEmpty ? nil : $0 } ?? path).standardizedFileURL
        }
        let useKubernetes: Bool
        switch env["C2D_EXECUTOR"] ?? "local" {
        case "", "local": useKubernetes = false
        case "kubernetes": useKubernetes = true
        case let other:
            throw Invalid(description: "C2D_EXECUTOR must be 'local' or 'kubernetes', not '\(other)'")
        }
        guard let authMode = APIAuthMode(rawValue: env["C2D_API_AUTH"].flatMap { $0.isEmpty ? nil : $0 } ?? "token")
        else {
            throw Invalid(description: "C2D_API_AUTH must be 'token' or 'none'")
        }
        let defaults = SubmissionLimits()
        var limits = SubmissionLimits()
        limits.maxBodyBytes = try integer("C2D_MAX_BODY_BYTES", default: defaults.maxBodyBytes, range: 1024...(1 << 30))
        limits.maxInputs = try integer("C2D_MAX_INPUTS", default: defaults.maxInputs, range: 1...10_000)
        limits.maxFilesPerInput = try integer(
            "C2D_MAX_FILES_PER_INPUT", default: defaults.maxFilesPerInput, range: 1...10_000)
        limits.maxFieldBytes = try integer(
            "C2D_MAX_FIELD_BYTES", default: defaults.maxFieldBytes, range: 64...(1 << 20))
        limits.maxRawCodeBytes = try integer(
            "C2D_MAX_RAWCODE_BYTES", default: defaults.maxRawCodeBytes, range: 1...(1 << 30))
        limits.maxWorkflowBytes = try integer(
            "C2D_MAX_WORKFLOW_BYTES", default: defaults.maxWorkflowBytes, range: 1024...(1 << 30))
        let level = env["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        var settings = Settings(
            postgres: PostgresConfiguration.fromEnvironment(env),
            amqp: AMQPConfiguration.fromEnvironment(env),
            environments: try loadEnvironments(env["C2D_ENVIRONMENTS"]),
            dataDirectory: directory("C2D_DATA_DIR", default: ".data/datasets"),
            allowPrivateURLs: env["C2D_ALLOW_PRIVATE_URLS"] == "1",
            allowedPrivateNetworks: try networks("C2D_ALLOWED_PRIVATE_NETWORKS"),
            sandboxIsolation: try loadSandboxIsolation(env),
            workDirectory: directory("C2D_WORK_DIR", default: ".data/work"),
            resultsDirectory: directory("C2D_RESULTS_DIR", default: ".data/results"),
            resultStore: try ResultStoreSettings.load(
                env, resultsDirectory: directory("C2D_RESULTS_DIR", default: ".data/results")),
            imagesDirectory: directory("C2D_IMAGES_DIR", default: ".data/images"),
            imageCacheDirectory: directory("C2D_IMAGE_CACHE_DIR", default: ".data/image-cache"),
            migrationsDirectory: env["C2D_MIGRATIONS_DIR"].map { URL(fileURLWithPath: $0) } ?? defaultMigrations(),
            workerSlots: try integer(
                "C2D_WORKER_SLOTS", default: defaultWorkerSlots(kubernetes: useKubernetes), range: 1...100_000),
            leaseDuration: .seconds(try integer("C2D_LEASE_SECONDS", default: 30, range: 2...3600)),
            leaseGrace: .seconds(try integer("C2D_LEASE_GRACE_SECONDS", default: 10, range: 0...3600)),
            limits: limits,
            authMode: authMode,
            tokenCacheTTL: .seconds(try integer("C2D_TOKEN_CACHE_SECONDS", default: 5, range: 0...3600)),
            maxBatchJobs: try integer("C2D_MAX_BATCH_JOBS", default: 10_000, range: 1...1_000_000),
            maxBatchBodyBytes: try integer("C2D_MAX_BATCH_BODY_BYTES", default: 64 << 20, range: 1024...(1 << 32)),
            maxUploadBytes: Int64(try integer("C2D_MAX_UPLOAD_BYTES", default: 10 << 30, range: 1...(1 << 50))),
            uploadSpoolDirectory: directory(
                "C2D_UPLOAD_SPOOL_DIR",
                default: FileManager.default.temporaryDirectory.appendingPathComponent("c2d-uploads").path),
            eventStreams: EventStreamLimiter.Limits(
                total: try integer("C2D_SSE_MAX_STREAMS", default: 256, range: 1...1_000_000),
                perCaller: try integer("C2D_SSE_MAX_STREAMS_PER_CALLER", default: 16, range: 1...1_000_000)),
            metricsListener: try parseListener("C2D_METRICS_ADDRESS", env["C2D_METRICS_ADDRESS"]),
            metricsToken: try parseMetricsToken(env["C2D_METRICS_TOKEN"]),
            oceanAccess: try GatewayConfiguration.parseOceanAccess(
                allowedProviders: env["C2D_ALLOWED_PROVIDERS"], openDevelopment: env["C2D_OCEAN_OPEN_DEVELOPMENT"]),
            operatorAddress: try GatewayConfiguration.parseOperatorAddress(env["C2D_OPERATOR_ADDRESS"]),
            operatorPrivateKey: try parsePrivateKey(env["C2D_OPERATOR_PRIVATE_KEY"]),
            logLevel: level,
            exitAfterClaimForTesting: env["C2D_FAULT_EXIT_AFTER_CLAIM"] == "1")
        settings.postgres.maximumConnections = try integer(
            "C2D_PG_MAX_CONNECTIONS", default: settings.postgres.maximumConnections, range: 1...1_000)
        if useKubernetes { settings.kubernetes = try KubernetesSettings.load(env, settings: settings) }
        return settings
    }

    /// Jobs a worker takes at once unless `C2D_WORKER_SLOTS` says otherwise. The local executor runs each job on this
    /// machine, so as many as it has cores (at least 2); on Kubernetes a slot is a job the worker monitors while the
    /// cluster runs it, so 10,000 (the environment's `maxJobs` is what bounds the cluster's load).
    static func defaultWorkerSlots(kubernetes: Bool) -> Int {
        kubernetes ? 10_000 : max(2, ProcessInfo.processInfo.activeProcessorCount)
    }

    static func loadSandboxIsolation(_ env: [String: String]) throws -> SandboxIsolationConfiguration {
        var isolation = SandboxIsolationConfiguration()
        if let text = env["C2D_SANDBOX_ISOLATION"], !text.isEmpty {
            guard let mode = SandboxIsolationConfiguration.Mode(rawValue: text) else {
                throw Invalid(
                    description: "C2D_SANDBOX_ISOLATION must be auto, strict or basic, not '\(text.prefix(32))'")
            }
            isolation.mode = mode
        }
        if let parent = env["C2D_SANDBOX_CGROUP"], !parent.isEmpty {
            guard parent.hasPrefix("/") else {
                throw Invalid(description: "C2D_SANDBOX_CGROUP must be an absolute path of a cgroup v2 directory")
            }
            isolation.cgroupParent = parent
        }
        if let text = env["C2D_SANDBOX_NETWORK_POOL"], !text.isEmpty {
            guard let pool = IPNetwork(text), pool.address.isIPv4, pool.prefixLength <= 28 else {
                throw Invalid(description: "C2D_SANDBOX_NETWORK_POOL must be an IPv4 network of /28 or larger")
            }
            isolation.networkPool = pool
        }
        if let text = env["C2D_SANDBOX_DNS"], !text.isEmpty {
            isolation.dnsServers = try text.split(separator: ",").map {
                let entry = $0.trimmingCharacters(in: .whitespaces)
                guard let address = IPAddress(entry), address.isIPv4 else {
                    throw Invalid(description: "C2D_SANDBOX_DNS: '\(entry.prefix(64))' is not an IPv4 address")
                }
                return address
            }
        }
        do {
            isolation.allowedNetworks = try OutboundAddressPolicy.parseNetworks(env["C2D_SANDBOX_ALLOWED_NETWORKS"])
        } catch {
            throw Invalid(description: "C2D_SANDBOX_ALLOWED_NETWORKS: \(error)")
        }
        return isolation
    }

    /// `host:port` (IPv6 hosts in brackets); empty means none.
    static func parseListener(_ key: String, _ text: String?) throws -> (host: String, port: Int)? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw Invalid(description: "\(key) must be host:port (e.g. 127.0.0.1:9100), not '\(text.prefix(64))'")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw Invalid(description: "\(key): the host is missing in '\(text.prefix(64))'") }
        return (host, port)
    }

    /// At least 16 characters of printable ASCII without spaces (what fits a header and resists guessing).
    static func parseMetricsToken(_ text: String?) throws -> String? {
        guard let text, !text.isEmpty else { return nil }
        guard text.utf8.count >= 16, text.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw Invalid(description: "C2D_METRICS_TOKEN must be at least 16 printable ASCII characters, no spaces")
        }
        return text
    }

    static func parsePrivateKey(_ text: String?) throws -> [UInt8]? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        guard let key = try? Hex.decode(text), key.count == 32, (try? Secp256k1.shared.address(privateKey: key)) != nil
        else {
            throw Invalid(description: "C2D_OPERATOR_PRIVATE_KEY must be a secp256k1 private key as 64 hex digits")
        }
        return key
    }

    /// `C2D_ENVIRONMENTS` names a JSON file holding an array of environments; without it c2d serves
    /// `ocean-compute` with default limits.
    static func loadEnvironments(_ path: String?) throws -> [ComputeEnvironment] {
        guard let path, !path.isEmpty else { return [.oceanCompute] }
        let environments: [ComputeEnvironment]
        do {
            environments = try JSONDecoder().decode(
                [ComputeEnvironment].self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw Invalid(description: "C2D_ENVIRONMENTS: cannot read environments from \(path): \(error)")
        }
        guard !environments.isEmpty else { throw Invalid(description: "C2D_ENVIRONMENTS: \(path) lists none") }
        for environment in environments where !ComputeEnvironment.isValidID(environment.id) {
            throw Invalid(
                description:
                    "C2D_ENVIRONMENTS: environment id '\(environment.id)' must be lowercase letters, digits and '-'")
        }
        for environment in environments {
            if let problem = environment.configurationProblem {
                throw Invalid(description: "C2D_ENVIRONMENTS: environment '\(environment.id)': \(problem)")
            }
        }
        return environments
    }

    /// `migrations/` of the checkout the binary was built in (…/.build/<config>/c2d), else of the working
    /// directory; the container image sets C2D_MIGRATIONS_DIR.
    static func defaultMigrations() -> URL {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidate = executable.deletingLastPathComponent()
        for _ in 0..<5 {
            candidate = candidate.deletingLastPathComponent()
            let migrations = candidate.appendingPathComponent("migrations")
            if FileManager.default.fileExists(atPath: migrations.appendingPathComponent("0001_jobs.sql").path) {
                return migrations
            }
        }
        return URL(fileURLWithPath: "migrations")
    }
}
