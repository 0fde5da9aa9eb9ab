import ArgumentParser
import AsyncHTTPClient
import Domain
import Foundation
import NIOPosix
import Runtime
import Storage

/// `c2d pod configure|publish`: the steps the Kubernetes executor runs in a job's configure and publish pods, on the
/// job's `/data` volume (Ocean's layout, `JobWorkspace`). They need neither Postgres nor RabbitMQ. A failure exits
/// with the Ocean status code it stands for and writes its one-line reason to the container's termination message
/// file, which the executor reads back from the pod's `terminated.message`.
struct PodCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pod", abstract: "Job steps that run inside the Kubernetes executor's pods.",
        subcommands: [Configure.self, Publish.self])

    /// Kubernetes reads at most 4096 bytes of a termination message.
    static let terminationMessageLimit = 4000

    /// Writes the reason where Kubernetes picks it up; a missing or read-only file (outside a pod) is skipped.
    static func writeTerminationMessage(_ reason: String, to path: String) {
        let line = String(reason.replacingOccurrences(of: "\n", with: " ").prefix(terminationMessageLimit))
        try? Data((line + "\n").utf8).write(to: URL(fileURLWithPath: path))
    }

    static func environment(_ key: String) -> String? {
        ProcessInfo.processInfo.environment[key].flatMap { $0.isEmpty ? nil : $0 }
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

        @Option(help: "The workflow JSON file (default: $C2D_WORKFLOW_FILE, else /c2d/secret/workflow.json).")
        var workflow: String?
        @Option(help: "The job's data directory, mounted as /data (default: $VOLUME, else /data).")
        var data: String?
        @Option(help: "Where to write a failure's reason for the pod's termination message.")
        var terminationLog = "/dev/termination-log"

        func run() async throws {
            let workflowPath = workflow ?? PodCommand.environment("C2D_WORKFLOW_FILE") ?? "/c2d/secret/workflow.json"
            let dataPath = data ?? PodCommand.environment("VOLUME") ?? "/data"
            var provisioning = ProvisionerConfiguration(
                dataDirectory: PodCommand.environment("C2D_DATA_DIR").map { URL(fileURLWithPath: $0) },
                allowPrivateNetworks: PodCommand.environment("C2D_ALLOW_PRIVATE_URLS") == "1")
            let parsedWorkflow: Workflow
            do {
                provisioning.operatorPrivateKey = try Settings.parsePrivateKey(
                    PodCommand.environment("C2D_OPERATOR_PRIVATE_KEY"))
            } catch {
                throw PodCommand.fail(1, "\(error)", terminationLog: terminationLog)
            }
            let bytes: Data
            do {
                bytes = try await NIOThreadPool.singleton.runIfActive {
                    try Data(contentsOf: URL(fileURLWithPath: workflowPath))
                }
            } catch {
                throw PodCommand.fail(
                    1, "cannot read the workflow \(workflowPath): \(error.localizedDescription)",
                    terminationLog: terminationLog)
            }
            do {
                parsedWorkflow = try JSONDecoder().decode(Workflow.self, from: bytes)
            } catch {
                throw PodCommand.fail(
                    1, "the workflow in \(workflowPath) is not a workflow: \(error)", terminationLog: terminationLog)
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
                throw PodCommand.fail(
                    Int32(failure.status.rawValue), failure.reason, terminationLog: terminationLog)
            }
            print("c2d pod configure: configured \(dataPath)")
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
        @Option(help: "Where to write a failure's reason for the pod's termination message.")
        var terminationLog = "/dev/termination-log"

        func run() async throws {
            let code = Int32(JobStatus.resultsUploadFailed.rawValue)
            let dataPath = data ?? PodCommand.environment("VOLUME") ?? "/data"
            guard let baseURL = resultsURL ?? PodCommand.environment("C2D_RESULTS_URL"),
                let scheme = URL(string: baseURL)?.scheme, scheme == "http" || scheme == "https"
            else {
                throw PodCommand.fail(
                    code, "--results-url or C2D_RESULTS_URL must be the gateway's http(s) URL",
                    terminationLog: terminationLog)
            }
            guard let token = token ?? PodCommand.environment("C2D_UPLOAD_TOKEN") else {
                throw PodCommand.fail(code, "--token or C2D_UPLOAD_TOKEN is missing", terminationLog: terminationLog)
            }
            guard let jobText = jobID ?? PodCommand.environment("C2D_JOB_ID"), let job = JobID(jobText) else {
                throw PodCommand.fail(code, "--job-id or C2D_JOB_ID must be a job id", terminationLog: terminationLog)
            }
            guard let attempt = attempt ?? PodCommand.environment("C2D_ATTEMPT").flatMap({ Int($0) }), attempt > 0
            else {
                throw PodCommand.fail(
                    code, "--attempt or C2D_ATTEMPT must be a positive integer", terminationLog: terminationLog)
            }
            let diskLimit = diskLimitBytes ?? PodCommand.environment("C2D_DISK_LIMIT_BYTES").flatMap { Int64($0) }

            let workspace = JobWorkspace(data: URL(fileURLWithPath: dataPath))
            // Idempotent; makes sure adminlogs/ exists for publish.log even if configuration never ran.
            try? await NIOThreadPool.singleton.runIfActive { try workspace.createLayoutBlocking() }
            let upload = HTTPUploadConfiguration(baseURL: baseURL, jobID: job, attempt: attempt, token: token)
            let httpClient = HTTPUploadResultStore.makeHTTPClient(configuration: upload)
            // Through the gateway, or straight to the S3 store when the pod has C2D_RESULT_STORE=s3 and its settings.
            let target: (store: any ResultStore, objectStoreClient: HTTPClient?)
            do {
                target = try DirectUploadResultStore.publishStore(
                    upload: upload, httpClient: httpClient, environment: ProcessInfo.processInfo.environment)
            } catch {
                try? await httpClient.shutdown()
                throw PodCommand.fail(code, "\(error)", terminationLog: terminationLog)
            }
            let publisher = ResultPublisher(store: target.store)
            let report = await publisher.publish(
                jobID: job, attempt: attempt, workspace: workspace, diskLimitBytes: diskLimit ?? .max,
                includeOutputs: !logsOnly)
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
    }
}
