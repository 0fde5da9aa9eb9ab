import AMQP
import Domain
import Foundation
import Gateway
import Logging
import Persistence
import Runtime
import Signatures

/// Everything c2d reads from its environment, loaded once at start by ``load(_:)``: the one place that reads the
/// variables declared in ``Setting/all`` (README's configuration table). A bad value stops the process with one
/// ``ConfigurationError`` naming the variable. Defaults come from the declarations, which take them from the modules'
/// configuration structs where those have them.
package struct Settings: Sendable {
    package var postgres: PostgresConfiguration
    package var amqp: AMQPConfiguration
    package var environments: [ComputeEnvironment]
    /// Where `path` inputs are read from (the publisher's data).
    package var dataDirectory: URL
    /// Whether input and algorithm URLs may point at loopback, private or link-local addresses.
    package var allowPrivateURLs: Bool
    /// Non-public networks input and algorithm URLs may reach even so (local executor).
    package var allowedPrivateNetworks: [IPNetwork]
    /// Hard limits of the local sandbox.
    package var sandboxIsolation: SandboxIsolationConfiguration
    /// Where job workspaces are made.
    package var workDirectory: URL
    /// Where the filesystem result store keeps outputs and logs.
    package var resultsDirectory: URL
    /// Which result store: the filesystem at `resultsDirectory`, or S3.
    package var resultStore: ResultStoreSettings
    /// Local executor: where OCI image layouts are.
    package var imagesDirectory: URL
    /// Local executor: where unpacked images are cached.
    package var imageCacheDirectory: URL
    package var migrationsDirectory: URL
    package var workerSlots: Int
    package var leaseDuration: Duration
    /// How long after a worker's lease lapsed the scheduler hands its job to another worker.
    package var leaseGrace: Duration
    /// The gateway's settings but for the listener, which the command line gives.
    package var gateway: GatewayConfiguration
    /// Workers: the operator's key that signs Ocean Provider downloads of `remote` sources (none refuses them).
    package var operatorPrivateKey: [UInt8]?
    package var logLevel: Logger.Level
    /// Delivery limit, poison attempts, the event stream's retention.
    package var messaging: MessagingSettings
    /// The scheduler's dispatcher, leadership and reconcile settings.
    package var scheduler: SchedulerSettings
    /// `C2D_EXECUTOR=kubernetes`: jobs run as Kubernetes objects; nil runs them in the local sandbox.
    package var kubernetes: KubernetesSettings?
    package var exitAfterClaimForTesting: Bool
    /// How long a starting process waits for Postgres to answer before it gives up (`C2D_STARTUP_WAIT_SECONDS`):
    /// a process started while the database restarts comes up when it is back, rather than exiting into a crash
    /// loop's growing back-off.
    package var startupWait: Duration = Settings.defaultStartupWait
    package static let defaultStartupWait = Duration.seconds(30)

    /// Where workers run jobs (`C2D_EXECUTOR`).
    enum ExecutorChoice: String, CaseIterable {
        case local, kubernetes
    }

    /// Jobs a Kubernetes worker monitors at once by default: a slot is a job the cluster runs, so many (the
    /// environment's `maxJobs` is what bounds the cluster's load).
    package static let kubernetesWorkerSlots = 10_000

    package static func load(_ variables: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> Settings
    {
        let env = EnvironmentReader(variables)
        let useKubernetes = try env.choice(.executor, as: ExecutorChoice.self) == .kubernetes
        var postgres = PostgresConfiguration(connectionString: env.text(.databaseUrl) ?? "")
        postgres.maximumConnections = try env.integer(.pgMaxConnections, in: 1...1_000) ?? postgres.maximumConnections
        let resultsDirectory = env.path(.resultsDir)!
        let leaseDuration = try env.seconds(.leaseSeconds, in: 2...3600)!
        let leaseGrace = try env.seconds(.leaseGraceSeconds, in: 0...3600)!
        let messaging = try MessagingSettings.load(env)
        var settings = Settings(
            postgres: postgres,
            amqp: AMQPConfiguration(url: env.text(.amqpUrl)!),
            environments: try loadEnvironments(env),
            dataDirectory: env.path(.dataDir)!,
            allowPrivateURLs: try env.flag(.allowPrivateUrls),
            allowedPrivateNetworks: try networks(env, .allowedPrivateNetworks),
            sandboxIsolation: try loadSandboxIsolation(env),
            workDirectory: env.path(.workDir)!,
            resultsDirectory: resultsDirectory,
            resultStore: try ResultStoreSettings.load(env, resultsDirectory: resultsDirectory),
            imagesDirectory: env.path(.imagesDir)!,
            imageCacheDirectory: env.path(.imageCacheDir)!,
            migrationsDirectory: env.path(.migrationsDir) ?? defaultMigrations(),
            workerSlots: try env.integer(.workerSlots, in: 1...100_000)
                ?? defaultWorkerSlots(kubernetes: useKubernetes),
            leaseDuration: leaseDuration,
            leaseGrace: leaseGrace,
            gateway: try loadGateway(env),
            operatorPrivateKey: try env.value(.operatorPrivateKey, mustBe: "a secp256k1 private key as 64 hex digits") {
                try parsePrivateKey($0)
            },
            logLevel: try env.choice(.logLevel, as: Logger.Level.self)!,
            messaging: messaging,
            scheduler: try SchedulerSettings.load(
                env, leaseGrace: leaseGrace, workerLease: leaseDuration, poisonAttempts: messaging.poisonAttempts),
            exitAfterClaimForTesting: try env.flag(.faultExitAfterClaim))
        settings.startupWait = try env.seconds(.startupWaitSeconds, in: 0...3600)!
        settings.gateway.executor = useKubernetes ? .kubernetes : .local
        settings.gateway.presignedURLLifetime =
            settings.resultStore.presignDuration ?? settings.gateway.presignedURLLifetime
        if useKubernetes { settings.kubernetes = try KubernetesSettings.load(env, settings: settings) }
        return settings
    }

    /// Jobs a worker takes at once unless `C2D_WORKER_SLOTS` says otherwise. The local executor runs each job on this
    /// machine, so as many as it has cores (at least 2); on Kubernetes ``kubernetesWorkerSlots``.
    package static func defaultWorkerSlots(kubernetes: Bool) -> Int {
        kubernetes ? kubernetesWorkerSlots : max(2, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Everything of ``GatewayConfiguration`` that comes from the environment; host and port come from the command.
    static func loadGateway(_ env: EnvironmentReader) throws(ConfigurationError) -> GatewayConfiguration {
        var limits = SubmissionLimits()
        limits.maxBodyBytes = try env.integer(.maxBodyBytes, in: 1024...(1 << 30))!
        limits.maxInputs = try env.integer(.maxInputs, in: 1...10_000)!
        limits.maxFilesPerInput = try env.integer(.maxFilesPerInput, in: 1...10_000)!
        limits.maxFieldBytes = try env.integer(.maxFieldBytes, in: 64...(1 << 20))!
        limits.maxRawCodeBytes = try env.integer(.maxRawcodeBytes, in: 1...(1 << 30))!
        limits.maxWorkflowBytes = try env.integer(.maxWorkflowBytes, in: 1024...(1 << 30))!
        var gateway = GatewayConfiguration(limits: limits)
        gateway.authMode = try env.choice(.apiAuth, as: APIAuthMode.self)!
        gateway.tokenCacheTTL = try env.seconds(.tokenCacheSeconds, in: 0...3600)!
        gateway.maxBatchJobs = try env.integer(.maxBatchJobs, in: 1...1_000_000)!
        gateway.maxBatchBodyBytes = try env.integer(.maxBatchBodyBytes, in: 1024...(1 << 32))!
        gateway.maxUploadBytes = Int64(try env.integer(.maxUploadBytes, in: 1...(1 << 50))!)
        gateway.uploadSpoolDirectory = env.path(.uploadSpoolDir) ?? gateway.uploadSpoolDirectory
        gateway.eventStreams = EventStreamLimiter.Limits(
            total: try env.integer(.sseMaxStreams, in: 1...1_000_000)!,
            perCaller: try env.integer(.sseMaxStreamsPerCaller, in: 1...1_000_000)!)
        gateway.metricsListener = try env.value(.metricsAddress, mustBe: "host:port (e.g. 127.0.0.1:9100)") {
            parseListener($0)
        }
        gateway.metricsToken = try env.value(
            .metricsToken, mustBe: "at least 16 printable ASCII characters, no spaces"
        ) { text in
            text.utf8.count >= 16 && text.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) ? text : nil
        }
        gateway.oceanAccess = try loadOceanAccess(env)
        if let text = env.explicit(.operatorAddress)?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
            do {
                gateway.operatorAddress = try EthereumAddress(text).description
            } catch {
                throw ConfigurationError(
                    .invalidValue, Setting.operatorAddress.name, ": '\(text.prefix(64))' — \(error.message)")
            }
        }
        return gateway
    }

    /// The Ocean API's access: the Providers listed in `C2D_ALLOWED_PROVIDERS` (addresses, EIP-55 checked when mixed
    /// case, kept lowercase), open to any signer with `C2D_OCEAN_OPEN_DEVELOPMENT=1`, else disabled.
    static func loadOceanAccess(_ env: EnvironmentReader) throws(ConfigurationError) -> OceanAccess {
        var providers: Set<String> = []
        for entry in env.list(.allowedProviders) {
            do {
                providers.insert(try EthereumAddress(entry).lowercased)
            } catch {
                throw ConfigurationError(
                    .invalidValue, Setting.allowedProviders.name, ": '\(entry.prefix(64))' — \(error.message)")
            }
        }
        switch (providers.isEmpty, try env.flag(.oceanOpenDevelopment)) {
        case (false, true):
            throw ConfigurationError(
                .conflicting, Setting.oceanOpenDevelopment.name,
                "=1 and C2D_ALLOWED_PROVIDERS exclude each other: set one of them")
        case (false, false): return .providers(providers)
        case (true, true): return .openDevelopment
        case (true, false): return .disabled
        }
    }

    static func loadSandboxIsolation(_ env: EnvironmentReader) throws(ConfigurationError)
        -> SandboxIsolationConfiguration
    {
        var isolation = SandboxIsolationConfiguration()
        isolation.mode = try env.choice(.sandboxIsolation, as: SandboxIsolationConfiguration.Mode.self)!
        isolation.cgroupParent = try env.value(.sandboxCgroup, mustBe: "an absolute path of a cgroup v2 directory") {
            $0.hasPrefix("/") ? $0 : nil
        }
        isolation.networkPool = try env.value(.sandboxNetworkPool, mustBe: "an IPv4 network of /28 or larger") {
            IPNetwork($0).flatMap { $0.address.isIPv4 && $0.prefixLength <= 28 ? $0 : nil }
        }!
        if env.explicit(.sandboxDns) != nil {
            isolation.dnsServers = try env.list(.sandboxDns).map { (entry) throws(ConfigurationError) in
                guard let address = IPAddress(entry), address.isIPv4 else {
                    throw ConfigurationError(
                        .invalidValue, Setting.sandboxDns.name, ": '\(entry.prefix(64))' is not an IPv4 address")
                }
                return address
            }
        }
        isolation.allowedNetworks = try networks(env, .sandboxAllowedNetworks)
        return isolation
    }

    /// A comma-separated list of CIDR networks.
    static func networks(_ env: EnvironmentReader, _ setting: Setting) throws(ConfigurationError) -> [IPNetwork] {
        do {
            return try OutboundAddressPolicy.parseNetworks(env.explicit(setting))
        } catch {
            throw ConfigurationError(.invalidValue, setting.name, ": \(error)")
        }
    }

    /// `host:port` (IPv6 hosts in brackets).
    static func parseListener(_ text: String) -> (host: String, port: Int)? {
        let text = text.trimmingCharacters(in: .whitespaces)
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    /// A secp256k1 private key as 64 hex digits; nil for an empty text. Also read by `c2d pod configure`.
    package static func parsePrivateKey(_ text: String?) throws(ConfigurationError) -> [UInt8]? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        guard let key = try? Hex.decode(text), key.count == 32, (try? Secp256k1.shared.address(privateKey: key)) != nil
        else {
            throw ConfigurationError(
                .invalidValue, Setting.operatorPrivateKey.name, "must be a secp256k1 private key as 64 hex digits")
        }
        return key
    }

    /// `C2D_ENVIRONMENTS` names a JSON file holding an array of environments; without it c2d serves
    /// `ocean-compute` with default limits.
    static func loadEnvironments(_ env: EnvironmentReader) throws(ConfigurationError) -> [ComputeEnvironment] {
        let name = Setting.environments.name
        guard let path = env.explicit(.environments) else { return [.oceanCompute] }
        let environments: [ComputeEnvironment]
        do {
            environments = try JSONDecoder().decode(
                [ComputeEnvironment].self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ConfigurationError(.unreadable, name, ": cannot read environments from \(path): \(error)")
        }
        guard !environments.isEmpty else { throw ConfigurationError(.invalidValue, name, ": \(path) lists none") }
        for environment in environments where !ComputeEnvironment.isValidID(environment.id) {
            throw ConfigurationError(
                .invalidValue, name, ": environment id '\(environment.id)' must be lowercase letters, digits and '-'")
        }
        for environment in environments {
            if let problem = environment.configurationProblem {
                throw ConfigurationError(.invalidValue, name, ": environment '\(environment.id)': \(problem)")
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
