import App
import ArgumentParser
import AsyncHTTPClient
import Domain
import Foundation
import NIOPosix
import Runtime
import Storage
import UnixSignals

/// `c2d pod configure|await-inputs|signal-end|relay-log|publish`: the steps the Kubernetes executor runs in an
/// attempt's two pods, on the attempt's `/data` volume (Ocean's layout, `JobWorkspace`). They need neither Postgres
/// nor RabbitMQ. The io pod runs `configure`, then `publish`; the algorithm pod runs `await-inputs`, the
/// `signal-end` and `relay-log` sidecars and the algorithm. The pods coordinate through marks in `/data/.c2d`, which
/// the algorithm container never sees. A failure exits with the Ocean status code it stands for and writes its
/// one-line reason to the container's termination message file (`--termination-log`, else `$C2D_TERMINATION_LOG`,
/// else `/dev/termination-log`), which the worker and the scheduler read back from the pod's `terminated.message`.
struct PodCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pod", abstract: "Job steps that run inside the Kubernetes executor's pods.",
        subcommands: [Configure.self, AwaitInputs.self, SignalEnd.self, RelayLog.self, Publish.self])

    /// Kubernetes reads at most 4096 bytes of a termination message.
    static let terminationMessageLimit = 4000

    /// Writes the reason where Kubernetes picks it up; a missing or read-only file (outside a pod) is skipped.
    static func writeTerminationMessage(_ reason: String, to path: String) {
        let line = String(reason.replacingOccurrences(of: "\n", with: " ").prefix(terminationMessageLimit))
        try? Data((line + "\n").utf8).write(to: URL(fileURLWithPath: path))
    }

    /// A variable the executor set on this step's container, if set and not empty.
    static func environment(_ variable: ClusterNaming.PodVariable) -> String? {
        ProcessInfo.processInfo.environment[variable.rawValue].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The termination message file: the option, else `$C2D_TERMINATION_LOG`, else Kubernetes' default.
    static func terminationLog(_ option: String?) -> String {
        option ?? environment(.terminationLog) ?? "/dev/termination-log"
    }

    /// The coordination marks of the attempt's two pods, under `<data>/.c2d`.
    static func marker(_ name: String, data: String) -> URL {
        URL(fileURLWithPath: data).appendingPathComponent(ClusterNaming.Marker.directory)
            .appendingPathComponent(name)
    }

    /// Writes a mark (and its directory), on NIO's thread pool.
    static func mark(_ name: String, data: String, contents: String = "") async throws {
        let url = marker(name, data: data)
        try await NIOThreadPool.singleton.runIfActive {
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: url)
        }
    }

    static func exists(_ url: URL) async -> Bool {
        (try? await NIOThreadPool.singleton.runIfActive { FileManager.default.fileExists(atPath: url.path) }) ?? false
    }

    /// Ends the step: the reason to stderr and the termination message, then the exit code.
    static func fail(_ code: Int32, _ reason: String, terminationLog: String) -> ExitCode {
        FileHandle.standardError.write(Data("c2d pod: \(reason)\n".utf8))
        writeTerminationMessage(reason, to: terminationLog)
        return ExitCode(code)
    }

    // MARK: Configure

    struct Configure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch the job's inputs and algorithm into the data volume, verifying checksums.",
            discussion: """
                Reads the workflow JSON, creates Ocean's layout under the data directory and provisions it, logging \
                to adminlogs/configure.log. Downloads follow the worker's settings: C2D_ALLOW_PRIVATE_URLS, \
                C2D_OPERATOR_PRIVATE_KEY (signs Provider downloads of 'remote' sources), C2D_DATA_DIR (where 'path' \
                inputs are read from; unset refuses them). Exit codes: 0 configured; 31 an input could not be \
                provisioned; 32 the algorithm could not be provisioned; 1 the step could not run (unreadable \
                workflow, bad settings, unwritable volume). The reason of a failure is written to --termination-log.
                """)

        @Option(
            help: """
                The workflow JSON file (default: $C2D_WORKFLOW_FILE; unset, the workflow is downloaded from the \
                gateway at $C2D_RESULTS_URL with the attempt's upload token).
                """)
        var workflow: String?
        @Option(help: "The job's data directory, mounted as /data (default: $VOLUME, else /data).")
        var data: String?
        @Option(help: "Where to write a failure's reason for the pod's termination message.")
        var terminationLog: String?

        func run() async throws {
            let terminationLog = PodCommand.terminationLog(self.terminationLog)
            let dataPath = data ?? PodCommand.environment(.volume) ?? "/data"
            do {
                try await configure(dataPath: dataPath, terminationLog: terminationLog)
                try await PodCommand.mark(ClusterNaming.Marker.configured, data: dataPath)
            } catch let exit as ExitCode {
                // The algorithm pod waits for one of the two marks; a failure must never leave it waiting.
                try? await PodCommand.mark(
                    ClusterNaming.Marker.configureFailed, data: dataPath, contents: "\(exit.rawValue)")
                throw exit
            }
        }

        private func configure(dataPath: String, terminationLog: String) async throws {
            var provisioning = ProvisionerConfiguration(
                dataDirectory: PodCommand.environment(.datasetsDirectory).map { URL(fileURLWithPath: $0) },
                allowPrivateNetworks: PodCommand.environment(.allowPrivateURLs) == "1")
            let parsedWorkflow: Workflow
            do {
                provisioning.operatorPrivateKey = try Settings.parsePrivateKey(
                    PodCommand.environment(.operatorPrivateKey))
            } catch {
                throw PodCommand.fail(1, "\(error)", terminationLog: terminationLog)
            }
            let bytes = try await workflowBytes(terminationLog: terminationLog)
            do {
                parsedWorkflow = try JSONDecoder().decode(Workflow.self, from: bytes)
            } catch {
                throw PodCommand.fail(
                    1, "the attempt's workflow is not a workflow: \(error)", terminationLog: terminationLog)
            }
            let workspace = JobWorkspace(data: URL(fileURLWithPath: dataPath))
            do {
                try await NIOThreadPool.singleton.runIfActive { try workspace.createLayoutBlocking() }
            } catch {
                throw PodCommand.fail(
                    1, "cannot create the data layout in \(dataPath): \(error)", terminationLog: terminationLog)
            }

            let httpClient = Provisioner.makeHTTPClient(configuration: provisioning)
            let provisioner = Provisioner(configuration: provisioning, httpClient: httpClient)
            var failure: ProvisioningError?
            do {
                try await provisioner.provision(parsedWorkflow, into: workspace)
            } catch {
                failure = error
            }
            try await httpClient.shutdown()
            if let failure {
                // The container's log stands in for configure.log when publish cannot upload it (it never runs
                // after a failed configure): repeat the admin log there.
                if let log = try? await NIOThreadPool.singleton.runIfActive({
                    try Data(contentsOf: workspace.configureLog)
                }) {
                    FileHandle.standardError.write(log)
                }
                throw PodCommand.fail(
                    Int32(failure.status.rawValue), failure.reason, terminationLog: terminationLog)
            }
            print("c2d pod configure: configured \(dataPath)")
        }

        /// The workflow from the file, or from the gateway.
        private func workflowBytes(terminationLog: String) async throws -> Data {
            if let path = workflow ?? PodCommand.environment(.workflowFile) {
                do {
                    return try await NIOThreadPool.singleton.runIfActive {
                        try Data(contentsOf: URL(fileURLWithPath: path))
                    }
                } catch {
                    throw PodCommand.fail(
                        1, "cannot read the workflow \(path): \(error.localizedDescription)",
                        terminationLog: terminationLog)
                }
            }
            let upload = try PodCommand.uploadConfiguration(terminationLog: terminationLog, code: 1)
            let httpClient = HTTPUploadResultStore.makeHTTPClient(configuration: upload)
            let result: Result<Data, any Error>
            do {
                result = .success(
                    try await HTTPUploadResultStore(configuration: upload, httpClient: httpClient).workflow())
            } catch {
                result = .failure(error)
            }
            try await httpClient.shutdown()
            switch result {
            case .success(let data): return data
            case .failure(let error):
                throw PodCommand.fail(1, "cannot download the workflow: \(error)", terminationLog: terminationLog)
            }
        }
    }

    /// The gateway, attempt and token from the environment (`C2D_RESULTS_URL`, `C2D_JOB_ID`, `C2D_ATTEMPT`,
    /// `C2D_UPLOAD_TOKEN`), or a failure with `code`.
    static func uploadConfiguration(
        resultsURL: String? = nil, token: String? = nil, jobID: String? = nil, attempt: Int? = nil,
        terminationLog: String, code: Int32
    ) throws -> HTTPUploadConfiguration {
        guard let baseURL = resultsURL ?? environment(.resultsURL),
            let scheme = URL(string: baseURL)?.scheme, scheme == "http" || scheme == "https"
        else {
            throw fail(
                code, "--results-url or C2D_RESULTS_URL must be the gateway's http(s) URL",
                terminationLog: terminationLog)
        }
        guard let token = token ?? environment(.uploadToken) else {
            throw fail(code, "--token or C2D_UPLOAD_TOKEN is missing", terminationLog: terminationLog)
        }
        guard let jobText = jobID ?? environment(.jobID), let job = JobID(jobText) else {
            throw fail(code, "--job-id or C2D_JOB_ID must be a job id", terminationLog: terminationLog)
        }
        guard let attempt = attempt ?? environment(.attempt).flatMap({ Int($0) }), attempt > 0 else {
            throw fail(code, "--attempt or C2D_ATTEMPT must be a positive integer", terminationLog: terminationLog)
        }
        return HTTPUploadConfiguration(baseURL: baseURL, jobID: job, attempt: attempt, token: token)
    }

    // MARK: Await inputs

    struct AwaitInputs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "await-inputs",
            abstract: "Wait until the configure step has put the inputs in place (the algorithm pod's init step).",
            discussion: """
                Exit codes: 0 configure succeeded; 1 configure failed (the algorithm must not run), or nothing \
                happened within --seconds.
                """)

        @Option(help: "The job's data directory (default: $VOLUME, else /data).")
        var data: String?
        @Option(help: "How long to wait (default: $C2D_AWAIT_SECONDS, else 1800).")
        var seconds: Int?
        @Option(help: "Where to write a failure's reason for the pod's termination message.")
        var terminationLog: String?

        func run() async throws {
            let terminationLog = PodCommand.terminationLog(self.terminationLog)
            let dataPath = data ?? PodCommand.environment(.volume) ?? "/data"
            let limit = seconds ?? PodCommand.environment(.awaitSeconds).flatMap { Int($0) } ?? 1800
            let deadline = ContinuousClock.now + .seconds(limit)
            while ContinuousClock.now < deadline {
                if await PodCommand.exists(PodCommand.marker(ClusterNaming.Marker.configured, data: dataPath)) {
                    return
                }
                if await PodCommand.exists(PodCommand.marker(ClusterNaming.Marker.configureFailed, data: dataPath)) {
                    throw PodCommand.fail(
                        1, "the configure step failed; the algorithm does not run", terminationLog: terminationLog)
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw PodCommand.fail(1, "the inputs were not ready within \(limit) s", terminationLog: terminationLog)
        }
    }

    // MARK: Signal end

    struct SignalEnd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "signal-end",
            abstract: "Mark the algorithm's end on the data volume when stopped (the algorithm pod's sidecar).",
            discussion: """
                Runs as a native sidecar: Kubernetes stops it (SIGTERM) once the algorithm container ended, for \
                whatever reason, or when the pod is deleted; it then writes the mark the publish step waits for.
                """)

        @Option(help: "The job's data directory (default: $VOLUME, else /data).")
        var data: String?

        @Flag(
            help: """
                Wait until the running signal-end handles SIGTERM, then exit 0 (the sidecar's postStart hook: the \
                kubelet starts the algorithm only after it returned, so an algorithm that ends at once is still seen).
                """)
        var waitUntilReady = false

        @Option(help: "With --wait-until-ready: give up (exit 1) after this many seconds.")
        var readyTimeoutSeconds = 60

        func run() async throws {
            let dataPath = data ?? PodCommand.environment(.volume) ?? "/data"
            let ready = PodCommand.marker(ClusterNaming.Marker.signalEndReady, data: dataPath)
            if waitUntilReady {
                let deadline = ContinuousClock.now + .seconds(readyTimeoutSeconds)
                while ContinuousClock.now < deadline {
                    if await PodCommand.exists(ready) { return }
                    try await Task.sleep(for: .milliseconds(20))
                }
                throw ExitCode(1)
            }
            // The handler is in place once the sequence exists; only then may the algorithm start.
            let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
            try await PodCommand.mark(ClusterNaming.Marker.signalEndReady, data: dataPath)
            for await _ in signals { break }
            try await PodCommand.mark(ClusterNaming.Marker.algorithmEnded, data: dataPath)
        }
    }

    // MARK: Publish

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload the job's outputs and logs to the gateway.",
            discussion: """
                Publishes outputs/, logs/ and adminlogs/{configure,publish}.log of the data directory in Ocean's \
                order, as the local executor does, each file to PUT <results-url>/internal/v1/jobs/<id>/attempts/\
                <attempt>/results/<kind>/<name> with the attempt's upload token; with C2D_RESULT_STORE=s3 (and the \
                C2D_S3_* and AWS_* settings) each file goes straight to the S3 store and is then registered at \
                .../stored-results/<kind>/<name>. Every upload has a timeout; \
                connection failures, 429 and 5xx are tried again with backoff. Exit codes: 0 everything uploaded; \
                62 an upload failed, or a setting is missing; 42 outputs over --disk-limit-bytes (the logs are still \
                uploaded). The reason of a failure is written to --termination-log.
                """)

        @Option(help: "The job's data directory, mounted as /data (default: $VOLUME, else /data).")
        var data: String?
        @Option(help: "The gateway's base URL (default: $C2D_RESULTS_URL).")
        var resultsURL: String?
        @Option(help: "The attempt's upload token (default: $C2D_UPLOAD_TOKEN).")
        var token: String?
        @Option(help: "The job's id (default: $C2D_JOB_ID).")
        var jobID: String?
        @Option(help: "The attempt number (default: $C2D_ATTEMPT).")
        var attempt: Int?
        @Option(
            help:
                "Outputs and logs above this size are a disk quota breach (default: $C2D_DISK_LIMIT_BYTES, else none).")
        var diskLimitBytes: Int64?
        @Flag(help: "Publish only the logs (after a failed configuration or a stop).")
        var logsOnly = false
        @Flag(
            help: """
                Wait until the algorithm pod marked the algorithm's end, then publish; SIGTERM before that (the \
                attempt was stopped) publishes the logs only.
                """)
        var afterAlgorithm = false
        @Option(help: "Where to write a failure's reason for the pod's termination message.")
        var terminationLog: String?

        func run() async throws {
            let terminationLog = PodCommand.terminationLog(self.terminationLog)
            let code = Int32(JobStatus.resultsUploadFailed.rawValue)
            let dataPath = data ?? PodCommand.environment(.volume) ?? "/data"
            let upload = try PodCommand.uploadConfiguration(
                resultsURL: resultsURL, token: token, jobID: jobID, attempt: attempt, terminationLog: terminationLog,
                code: code)
            let diskLimit = diskLimitBytes ?? PodCommand.environment(.diskLimitBytes).flatMap { Int64($0) }
            var includeOutputs = !logsOnly
            if afterAlgorithm {
                let ended = await Self.waitForAlgorithm(dataPath: dataPath)
                if !ended {
                    print("c2d pod publish: stopped before the algorithm ended; publishing the logs only")
                    includeOutputs = false
                }
            }

            let workspace = JobWorkspace(data: URL(fileURLWithPath: dataPath))
            // Idempotent; makes sure adminlogs/ exists for publish.log even if configuration never ran.
            try? await NIOThreadPool.singleton.runIfActive { try workspace.createLayoutBlocking() }
            let httpClient = HTTPUploadResultStore.makeHTTPClient(configuration: upload)
            // Through the gateway, or straight to the S3 store when the pod has C2D_RESULT_STORE=s3 and its settings.
            let target: (store: any ResultStore, objectStoreClient: HTTPClient?)
            do {
                target = try DirectUploadResultStore.publishStore(
                    upload: upload, httpClient: httpClient,
                    s3: try ResultStoreSettings.publishTarget(EnvironmentReader()))
            } catch {
                try? await httpClient.shutdown()
                throw PodCommand.fail(code, "\(error)", terminationLog: terminationLog)
            }
            let publisher = ResultPublisher(store: target.store)
            let report = await publisher.publish(
                jobID: upload.jobID, attempt: upload.attempt, workspace: workspace, diskLimitBytes: diskLimit ?? .max,
                includeOutputs: includeOutputs)
            try await httpClient.shutdown()
            try? await target.objectStoreClient?.shutdown()
            for file in report.results {
                print("c2d pod publish: \(file.kind.rawValue) \(file.name): \(file.size) bytes, sha256 \(file.sha256)")
            }
            if let failure = report.failure {
                throw PodCommand.fail(Int32(failure.status.rawValue), failure.reason, terminationLog: terminationLog)
            }
            print("c2d pod publish: uploaded \(report.results.count) file(s)")
        }

        /// True once the algorithm's end is marked; false when SIGTERM (or SIGINT) comes first.
        static func waitForAlgorithm(dataPath: String) async -> Bool {
            let mark = PodCommand.marker(ClusterNaming.Marker.algorithmEnded, data: dataPath)
            let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
            return await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        if await PodCommand.exists(mark) { return true }
                        try? await Task.sleep(for: .milliseconds(200))
                    }
                    return false
                }
                group.addTask {
                    for await _ in signals { return false }
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
        }
    }
}
