import Foundation
import Gateway
import Logging
import Scheduler
import Storage
import Testing
import Worker

@testable import App

@Suite struct SettingsTests {
    /// README's configuration table is the declarations' (`c2d settings` prints it): a setting added, removed or
    /// given a new default in code without README following fails here.
    @Test func readmeTableIsTheDeclarations() throws {
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
                "../../README.md"
            ).standardizedFileURL, encoding: .utf8)
        let lines = readme.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: "| variable | default | meaning |"))
        let table = lines[start...].prefix { $0.hasPrefix("|") }.joined(separator: "\n") + "\n"
        #expect(table == Setting.markdownTable())
    }

    @Test func defaultsLoadFromAnEmptyEnvironment() throws {
        let settings = try Settings.load([:])
        #expect(settings.scheduler.reconciler.interval == .seconds(2))
        #expect(settings.scheduler.dispatcher.sweepInterval == .seconds(2))
        #expect(settings.scheduler.leaderLease == .seconds(10))
        #expect(settings.leaseDuration == .seconds(30))
        #expect(settings.leaseGrace == .seconds(10))
        #expect(settings.messaging.deliveryLimit == 5)
        #expect(settings.messaging.poisonAttempts == 5)
        #expect(settings.gateway.tokenCacheTTL == .seconds(5))
        #expect(settings.kubernetes == nil)
        #expect(settings.logLevel == .info)
    }

    @Test func fractionalSecondsAreKept() throws {
        let settings = try Settings.load(["C2D_SCHEDULER_RECONCILE_INTERVAL_SECONDS": "0.25"])
        #expect(settings.scheduler.reconciler.interval == .milliseconds(250))
    }

    /// Each bad value stops the load with one error naming the variable.
    @Test(arguments: [
        ("C2D_LEASE_SECONDS", "1", ConfigurationError.Code.outOfRange),
        ("C2D_LEASE_SECONDS", "thirty", .notANumber),
        ("C2D_SCHEDULER_BATCH_SIZE", "0", .outOfRange),
        ("C2D_DISPATCH_SWEEP_SECONDS", "fast", .notANumber),
        ("C2D_EXECUTOR", "docker", .notAChoice),
        ("C2D_API_AUTH", "basic", .notAChoice),
        ("LOG_LEVEL", "loud", .notAChoice),
        ("C2D_ALLOW_PRIVATE_URLS", "yes", .notAChoice),
        ("C2D_EVENTS_MAX_AGE", "7 days", .invalidValue),
        ("C2D_METRICS_ADDRESS", "9100", .invalidValue),
        ("C2D_METRICS_TOKEN", "short", .invalidValue),
        ("C2D_SANDBOX_NETWORK_POOL", "10.0.0.0/30", .invalidValue),
        ("C2D_OPERATOR_PRIVATE_KEY", "00", .invalidValue),
        ("C2D_ALLOWED_PROVIDERS", "0x12", .invalidValue),
    ])
    func badValueNamesItsVariable(variable: String, value: String, code: ConfigurationError.Code) {
        #expect {
            try Settings.load([variable: value])
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.variable == variable && error.code == code && error.description.hasPrefix(variable)
        }
    }

    /// The S3 store's variables, read by the same loader in gateways, workers and publish pods.
    @Test func s3StoreFromItsVariables() throws {
        let s3 = [
            "C2D_RESULT_STORE": "s3", "C2D_S3_BUCKET": "results", "C2D_S3_ENDPOINT": "http://127.0.0.1:9000",
            "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "eu-west-1",
            "C2D_S3_PRESIGN_SECONDS": "60",
        ]
        guard case .s3(let configuration) = try Settings.load(s3).resultStore else {
            Issue.record("not the S3 store")
            return
        }
        #expect(configuration.bucket == "results" && configuration.region == "eu-west-1")
        #expect(configuration.presignDuration == .seconds(60) && configuration.partSize == 16 << 20)
        #expect(try ResultStoreSettings.publishTarget(EnvironmentReader(s3))?.endpoint == "http://127.0.0.1:9000")
        #expect(try ResultStoreSettings.publishTarget(EnvironmentReader([:]))?.bucket == nil)

        for (change, variable, code) in [
            (["C2D_S3_BUCKET": ""], "C2D_RESULT_STORE", ConfigurationError.Code.missing),
            (["AWS_SECRET_ACCESS_KEY": ""], "C2D_RESULT_STORE", .missing),
            (["C2D_S3_PATH_STYLE": "yes"], "C2D_S3_PATH_STYLE", .notAChoice),
            (["C2D_S3_ENDPOINT": "ftp://host"], "C2D_S3_ENDPOINT", .invalidValue),
            (["C2D_S3_PART_BYTES": "1024"], "C2D_S3_PART_BYTES", .outOfRange),
            (["C2D_RESULT_STORE": "gcs"], "C2D_RESULT_STORE", .notAChoice),
        ] {
            #expect {
                try Settings.load(s3.merging(change) { $1 })
            } throws: { error in
                (error as? ConfigurationError).map { $0.variable == variable && $0.code == code } ?? false
            }
        }
    }

    /// A publish pod given `podVariables` and the credentials reads back the gateway's S3 store.
    @Test func podVariablesReadBackTheStore() throws {
        let configuration = S3Configuration(
            endpoint: "http://127.0.0.1:9000", bucket: "results", region: "eu-west-1",
            credentials: S3Credentials(accessKeyID: "key", secretAccessKey: "secret", sessionToken: nil),
            pathStyle: false, prefix: "c2d/", partSize: 8 << 20)
        var variables = ResultStoreSettings.podVariables(configuration)
        variables["AWS_ACCESS_KEY_ID"] = "key"
        variables["AWS_SECRET_ACCESS_KEY"] = "secret"
        let read = try #require(try ResultStoreSettings.publishTarget(EnvironmentReader(variables)))
        #expect(read.endpoint == configuration.endpoint && read.bucket == configuration.bucket)
        #expect(read.region == configuration.region && read.pathStyle == configuration.pathStyle)
        #expect(read.prefix == configuration.prefix && read.partSize == configuration.partSize)
    }

    /// `C2D_KUBERNETES_S3_SECRET` gives publish pods the bucket; without an S3 store it is a contradiction.
    @Test func kubernetesDirectUploadNeedsTheS3Store() throws {
        let kubeconfig = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-kubeconfig-\(UUID())")
        try """
        current-context: a
        clusters: [{name: c, cluster: {server: "https://k"}}]
        contexts: [{name: a, context: {cluster: c, user: u}}]
        users: [{name: u, user: {token: t}}]
        """.write(to: kubeconfig, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: kubeconfig) }
        let kubernetes = [
            "C2D_EXECUTOR": "kubernetes", "KUBECONFIG": kubeconfig.path, "C2D_KUBERNETES_S3_SECRET": "c2d-s3",
        ]
        #expect {
            try Settings.load(kubernetes)
        } throws: { error in
            (error as? ConfigurationError).map { $0.variable == "C2D_KUBERNETES_S3_SECRET" && $0.code == .conflicting }
                ?? false
        }
        let s3 = [
            "C2D_RESULT_STORE": "s3", "C2D_S3_BUCKET": "results", "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
        ]
        let upload = try #require(try Settings.load(kubernetes.merging(s3) { $1 }).kubernetes?.executor.directUpload)
        #expect(upload.credentialsSecret == "c2d-s3" && upload.variables["C2D_S3_BUCKET"] == "results")
        #expect(upload.variables["AWS_SECRET_ACCESS_KEY"] == nil)
    }

    /// A worker takes as many jobs as the machine has cores (at least 2) locally, and 10,000 on Kubernetes, where it
    /// only follows pods; `C2D_WORKER_SLOTS` overrides either.
    @Test func workerSlotsFollowTheExecutor() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        #expect(try Settings.load([:]).workerSlots == max(2, cores))
        #expect(try Settings.load(["C2D_WORKER_SLOTS": "7"]).workerSlots == 7)
        let kubeconfig = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-kubeconfig-\(UUID())")
        try """
        current-context: a
        clusters: [{name: c, cluster: {server: "https://k"}}]
        contexts: [{name: a, context: {cluster: c, user: u}}]
        users: [{name: u, user: {token: t}}]
        """.write(to: kubeconfig, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: kubeconfig) }
        let kubernetes = ["C2D_EXECUTOR": "kubernetes", "KUBECONFIG": kubeconfig.path]
        #expect(try Settings.load(kubernetes).workerSlots == 10_000)
        #expect(try Settings.load(kubernetes.merging(["C2D_WORKER_SLOTS": "16"]) { $1 }).workerSlots == 16)
    }

    @Test func openDevelopmentAndProvidersConflict() {
        #expect(throws: ConfigurationError.self) {
            try Settings.load([
                "C2D_OCEAN_OPEN_DEVELOPMENT": "1",
                "C2D_ALLOWED_PROVIDERS": "0x0000000000000000000000000000000000000001",
            ])
        }
    }

    /// A secret's value never appears in the message.
    @Test func privateKeyIsNotEchoed() {
        let key = String(repeating: "z", count: 64)
        #expect {
            try Settings.load(["C2D_OPERATOR_PRIVATE_KEY": key])
        } throws: { error in
            !"\(error)".contains(key)
        }
    }

    @Test func everyVariableIsDeclaredOnce() {
        let names = Setting.all.map(\.name)
        #expect(Set(names).count == names.count)
    }
}
