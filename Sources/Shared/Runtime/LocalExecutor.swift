import AsyncHTTPClient
import Domain
import Foundation
import Logging
import NIOPosix
import Storage

/// Settings of the local executor (jobs as sandboxed processes on this machine).
package struct LocalExecutorConfiguration: Sendable, Hashable {
    /// Where per-attempt workspaces live (`<workRoot>/<jobID>-<attempt>/data`). Default `<tmp>/c2d-work`.
    package var workRoot: URL
    /// Keep workspaces after the job, for debugging. Default false.
    package var keepWorkspaces: Bool
    /// The configure step: data directory for `path` inputs (default none), download timeouts (connect 10 s,
    /// whole download 5 min), size cap (10 GiB), redirects (5).
    package var provisioner: ProvisionerConfiguration
    /// The algorithm step: bwrap and prlimit paths, process and file limits, visible system files.
    package var sandbox: SandboxConfiguration
    /// The publish step: output file count limit.
    package var publisher: ResultPublisherConfiguration
    /// Images: where OCI layouts are and where their unpacked roots are cached.
    package var images: ImageStoreConfiguration = ImageStoreConfiguration()

    package init(
        workRoot: URL = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-work", isDirectory: true),
        keepWorkspaces: Bool = false,
        provisioner: ProvisionerConfiguration = ProvisionerConfiguration(),
        sandbox: SandboxConfiguration = SandboxConfiguration(),
        publisher: ResultPublisherConfiguration = ResultPublisherConfiguration()
    ) {
        self.workRoot = workRoot
        self.keepWorkspaces = keepWorkspaces
        self.provisioner = provisioner
        self.sandbox = sandbox
        self.publisher = publisher
    }

    /// The settings operators set most, by name; everything else keeps its default.
    package init(
        workRoot: URL, dataDirectory: URL?, bwrapPath: String = "/usr/bin/bwrap",
        downloadConnectTimeout: Duration = .seconds(10), downloadTimeout: Duration = .seconds(300),
        keepWorkspaces: Bool = false, allowPrivateNetworks: Bool = false
    ) {
        self.init(
            workRoot: workRoot, keepWorkspaces: keepWorkspaces,
            provisioner: ProvisionerConfiguration(
                dataDirectory: dataDirectory, connectTimeout: downloadConnectTimeout, downloadTimeout: downloadTimeout,
                allowPrivateNetworks: allowPrivateNetworks),
            sandbox: SandboxConfiguration(bwrapPath: bwrapPath))
    }
}

/// Runs jobs on this machine: configure (Provisioner) → algorithm (Sandbox) → publish (ResultPublisher), in a
/// workspace per attempt that is removed afterwards. Cancelling the task that awaits `execute` is a stop: the
/// sandbox is killed, the logs are still published, and the outcome is `stopped`.
package struct LocalExecutor: TaskExecutor {
    package let configuration: LocalExecutorConfiguration
    private let provisioner: Provisioner
    private let sandbox: Sandbox
    private let publisher: ResultPublisher
    private let images: ImageStore
    private let threadPool: NIOThreadPool
    private let logger: Logger

    /// `httpClient` is the process's shared client (see `Provisioner.makeHTTPClient`).
    package init(
        configuration: LocalExecutorConfiguration, httpClient: HTTPClient, resultStore: any ResultStore,
        threadPool: NIOThreadPool = .singleton, logger: Logger = Logger(label: "c2d.runtime")
    ) {
        self.configuration = configuration
        self.provisioner = Provisioner(
            configuration: configuration.provisioner, httpClient: httpClient, threadPool: threadPool)
        self.sandbox = Sandbox(configuration: configuration.sandbox, threadPool: threadPool)
        self.publisher = ResultPublisher(
            store: resultStore, configuration: configuration.publisher, threadPool: threadPool)
        self.images = ImageStore(configuration: configuration.images, threadPool: threadPool)
        self.threadPool = threadPool
        self.logger = logger
    }

    /// Checks that the sandbox works on this machine and prepares its hard limits; call it before taking jobs. Also
    /// clears what workers that died left in the work root (workspaces, mounted output volumes). Returns what the
    /// sandbox enforces on this host, for the log.
    @discardableResult
    package func selfCheck() async throws(SandboxError) -> SandboxReport {
        let report = try await sandbox.selfCheck()
        let removed = await removeStaleWorkspaces()
        if removed > 0 { logger.info("removed workspaces of dead workers", metadata: ["count": "\(removed)"]) }
        return report
    }

    /// Removes what attempts whose lock nobody holds left in the work root — workspaces, mounted output volumes,
    /// cgroups — and returns how many. A killed worker's lock is released by the kernel, so this is safe at any
    /// time, beside live attempts of this and other workers sharing the work root.
    package func removeStaleWorkspaces() async -> Int {
        let workRoot = configuration.workRoot
        let tools = OutputVolume.Tools()
        let cgroups = await sandbox.prepared()?.cgroups
        return
            (try? await threadPool.runIfActive {
                AttemptLock.sweep(workRoot: workRoot, tools: tools, cgroups: cgroups)
            }) ?? 0
    }

    package func execute(
        job: Job, environment: ComputeEnvironment, progress: @escaping @Sendable (JobStatus) async throws -> Void
    ) async throws -> ExecutionResult {
        var logger = self.logger
        logger[metadataKey: "job-id"] = "\(job.id)"
        logger[metadataKey: "attempt"] = "\(job.attempt)"
        // Gateways refuse GPU jobs for the local executor at submit; one that got here anyway (submitted through a
        // gateway that thought the executor was Kubernetes) must not run without the GPU it asked for.
        if environment.gpuCount(of: job.workflow) > 0 {
            return ExecutionResult(
                status: .containerCreationFailed, outcome: .failed,
                failureReason: "gpu_not_available: the local executor has no GPUs")
        }
        let directory = JobWorkspace.directory(workRoot: configuration.workRoot, jobID: job.id, attempt: job.attempt)
        let threadPool = self.threadPool
        let volume = OutputVolume(attemptDirectory: directory)
        let volumeTools = await sandbox.prepared()?.volumeTools
        // Held until the workspace is gone, so a sweep by another worker never takes a live one.
        let lock = try await threadPool.runIfActive {
            let lock = try AttemptLock(directory: directory)
            // A volume left mounted by an earlier run of this attempt must go before its directory can.
            if let volumeTools, OutputVolume.isMountPoint(volume.mountPoint.path) { volume.remove(tools: volumeTools) }
            return lock
        }
        var workspace: JobWorkspace
        do {
            workspace = try await JobWorkspace.create(
                workRoot: configuration.workRoot, jobID: job.id, attempt: job.attempt, threadPool: threadPool)
        } catch {
            lock.release()
            throw error
        }
        // Outputs and logs on a volume of the environment's size, where the host allows.
        if let volumeTools {
            do {
                try await threadPool.runIfActive {
                    try volume.create(diskLimitBytes: Int64(environment.diskMiB) << 20, tools: volumeTools)
                }
                workspace = workspace.withWritable(volume.mountPoint)
            } catch {
                logger.error("cannot create the job's output volume", metadata: ["error": "\(error)"])
                await cleanUp(workspace, volume: volume, tools: volumeTools, lock: lock, logger: logger)
                // Ocean's "Volume creation failed" (21), reached from "Configuring volumes".
                try await progress(.configuringVolumes)
                return ExecutionResult(
                    status: .volumeCreationFailed, outcome: .failed,
                    failureReason: "the worker could not create the job's output volume; try again later")
            }
        }
        let result: ExecutionResult
        do {
            result = try await run(
                job: job, environment: environment, workspace: workspace, progress: progress,
                logger: logger)
        } catch {
            await cleanUp(workspace, volume: volume, tools: volumeTools, lock: lock, logger: logger)
            throw error
        }
        await cleanUp(workspace, volume: volume, tools: volumeTools, lock: lock, logger: logger)
        logger.info(
            "job ended",
            metadata: ["status": "\(result.status.rawValue)", "outcome": "\(result.outcome.rawValue)"])
        return result
    }

    private func run(
        job: Job, environment: ComputeEnvironment, workspace: JobWorkspace,
        progress: @escaping @Sendable (JobStatus) async throws -> Void, logger: Logger
    ) async throws -> ExecutionResult {
        let diskLimit = Int64(environment.diskMiB) << 20

        let image: PreparedImage?
        switch try await configure(
            job: job, environment: environment, workspace: workspace, progress: progress, logger: logger)
        {
        case .ready(let prepared): image = prepared
        case .ended(let result): return result
        }

        // Algorithm.
        try await progress(.runningAlgorithm)
        let specification = SandboxSpecification(
            job: job, environment: environment, workspace: workspace, image: image)
        let termination = await sandbox.run(specification)
        logger.info("algorithm ended", metadata: ["termination": "\(termination)"])

        var result: ExecutionResult
        switch termination {
        case .stopped:
            return await stopped(job: job, environment: environment, workspace: workspace, progress: progress)
        case .couldNotStart(let reason):
            // runningAlgorithm → algorithmFailed: the logs are archived without a publishing status.
            let report = await publishUncancelled(job: job, workspace: workspace, diskLimit: diskLimit, outputs: false)
            return ExecutionResult(
                status: .algorithmFailed, outcome: .failed, failureReason: "the algorithm could not start: \(reason)",
                results: report.results)
        case .exited, .killedBySignal, .outOfMemory, .timedOut:
            result = Self.result(ofAlgorithmEnd: termination)
        }

        // Disk quota, checked before the publishing status: runningAlgorithm → diskQuotaExceeded is the legal move.
        if let listing = try? await publisher.list(workspace, attempt: job.attempt),
            let problem = publisher.quotaProblem(listing, diskLimitBytes: diskLimit)
        {
            let report = await publishUncancelled(job: job, workspace: workspace, diskLimit: diskLimit, outputs: false)
            return ExecutionResult(
                status: .diskQuotaExceeded, outcome: .failed, failureReason: problem, exitCode: result.exitCode,
                results: report.results)
        }

        // Publish.
        try await progress(.publishingResults)
        let report = await publishUncancelled(job: job, workspace: workspace, diskLimit: diskLimit, outputs: true)
        result.results = report.results
        if let failure = report.failure {
            result.status = failure.status
            result.outcome = .failed
            result.failureReason = [result.failureReason, failure.reason].compactMap { $0 }.joined(separator: "; ")
        }
        return result
    }

    /// How configure went: the image to run in, or the job's end.
    private enum Configured {
        case ready(PreparedImage?)
        case ended(ExecutionResult)
    }

    /// Configure: the image first (never run a job in another image than it asked for), then the inputs. A failure
    /// ends the job with configure's logs archived.
    private func configure(
        job: Job, environment: ComputeEnvironment, workspace: JobWorkspace,
        progress: @escaping @Sendable (JobStatus) async throws -> Void, logger: Logger
    ) async throws -> Configured {
        // A failure archives configure's log; one caused by a stop is the stop.
        func failed(_ event: String, status: JobStatus, reason: String) async -> Configured {
            if Task.isCancelled {
                return .ended(
                    await stopped(job: job, environment: environment, workspace: workspace, progress: progress))
            }
            logger.info("\(event)", metadata: ["reason": "\(reason)"])
            let report = await publishUncancelled(
                job: job, workspace: workspace, diskLimit: Int64(environment.diskMiB) << 20, outputs: false)
            return .ended(
                ExecutionResult(status: status, outcome: .failed, failureReason: reason, results: report.results))
        }
        try await progress(.configuringVolumes)
        let image: PreparedImage?
        switch await prepareImage(job: job, environment: environment, workspace: workspace) {
        case .success(let prepared):
            image = prepared
        case .failure(let error):
            return await failed("image unavailable", status: .imagePullFailed, reason: error.reason)
        }
        do {
            try await provisioner.provision(job.workflow, into: workspace)
        } catch {
            return await failed("configuration failed", status: error.status, reason: error.reason)
        }
        if Task.isCancelled {
            return .ended(await stopped(job: job, environment: environment, workspace: workspace, progress: progress))
        }
        try await progress(.provisioningSuccess)
        return .ready(image)
    }

    /// What an algorithm that ran means for the job, before its outputs are checked and published.
    static func result(ofAlgorithmEnd termination: SandboxTermination) -> ExecutionResult {
        switch termination {
        case .exited(0):
            return ExecutionResult(status: .finished, outcome: .succeeded, exitCode: 0)
        case .exited(let code):
            var reason = "algorithm exited with code \(code)"
            if code > 128 && code < 128 + 65 { reason += " (killed by signal \(code - 128))" }
            return ExecutionResult(status: .finished, outcome: .failed, failureReason: reason, exitCode: Int(code))
        case .killedBySignal(let signal):
            return ExecutionResult(
                status: .finished, outcome: .failed, failureReason: "algorithm was killed by signal \(signal)")
        case .outOfMemory(let code, let limit):
            return ExecutionResult(
                status: .finished, outcome: .failed,
                failureReason: "algorithm ran out of memory (the environment's limit is \(limit) MiB)",
                exitCode: Int(code), oomKilled: true)
        case .timedOut(let limit):
            return ExecutionResult(
                status: .finished, outcome: .timedOut,
                failureReason: "algorithm exceeded its time limit of \(limit) s", stopRequest: 2)
        case .stopped, .couldNotStart:
            preconditionFailure("\(termination) is not an end of a running algorithm")
        }
    }

    /// The root the algorithm runs in, as `ImagePolicy` decides for the local executor: none (the worker's own
    /// system) when the workflow names no image or the environment maps the image to the host, else the image's
    /// unpacked root. The decision goes to the configure log, so the job's owner can see where it ran.
    private func prepareImage(
        job: Job, environment: ComputeEnvironment, workspace: JobWorkspace
    ) async -> Result<PreparedImage?, ImageError> {
        let container = job.workflow.stage?.algorithm.container
        let named = "\(container?.image ?? ""):\(container?.tag.flatMap { $0.isEmpty ? nil : $0 } ?? "latest")"
        let log = try? await AdminLog(file: workspace.configureLog, threadPool: threadPool)
        let outcome: Result<PreparedImage?, ImageError>
        do {
            switch try ImagePolicy.decide(container, environment: environment, executor: .local) {
            case .workerSystem, .cluster:
                await log?.line("no image named: the algorithm runs on the worker's own system")
                outcome = .success(nil)
            case .hostMapped:
                await log?.line(
                    "image \(named) runs on the worker's own system, as environment '\(environment.id)' declares")
                outcome = .success(nil)
            case .layout(let entry, let reference, let checksum):
                do {
                    let prepared = try await images.prepare(entry, reference: reference, checksum: checksum)
                    await log?.line(
                        "image \(named): OCI layout '\(entry.layout ?? "")' at '\(reference)', \(prepared.digest)")
                    outcome = .success(prepared)
                } catch {
                    await log?.line("image \(named) is not available: \(error.reason)")
                    outcome = .failure(error)
                }
            }
        } catch {
            await log?.line("image \(named) cannot run here: \(error.message)")
            outcome = .failure(ImageError(error.message))
        }
        await log?.close()
        return outcome
    }

    /// The end of a stopped job: logs are still published, then `finished` with outcome `stopped`.
    private func stopped(
        job: Job, environment: ComputeEnvironment, workspace: JobWorkspace,
        progress: @escaping @Sendable (JobStatus) async throws -> Void
    ) async -> ExecutionResult {
        let publisher = self.publisher
        let diskLimit = Int64(environment.diskMiB) << 20
        let logger = self.logger
        // A new task is not cancelled with ours: the stop must not also cancel archiving the logs.
        let report = await Task {
            do {
                try await progress(.publishingResults)
            } catch {
                logger.debug("progress after a stop failed", metadata: ["error": "\(error)"])
            }
            return await publisher.publish(
                jobID: job.id, attempt: job.attempt, workspace: workspace, diskLimitBytes: diskLimit,
                includeOutputs: false)
        }.value
        return ExecutionResult(
            status: .finished, outcome: .stopped, failureReason: "the job was stopped on request", stopRequest: 1,
            results: report.results)
    }

    private func publishUncancelled(
        job: Job, workspace: JobWorkspace, diskLimit: Int64, outputs: Bool
    ) async -> PublishReport {
        let publisher = self.publisher
        return await Task {
            await publisher.publish(
                jobID: job.id, attempt: job.attempt, workspace: workspace, diskLimitBytes: diskLimit,
                includeOutputs: outputs)
        }.value
    }

    /// Unmounts the output volume (its files are published by now), removes the workspace unless kept, and lets
    /// go of the attempt's lock.
    private func cleanUp(
        _ workspace: JobWorkspace, volume: OutputVolume, tools: OutputVolume.Tools?, lock: AttemptLock, logger: Logger
    ) async {
        let threadPool = self.threadPool
        defer { lock.release() }
        guard !configuration.keepWorkspaces else {
            logger.debug("workspace kept", metadata: ["path": "\(workspace.root.path)"])
            return
        }
        do {
            try await Task {
                if let tools { try await threadPool.runIfActive { volume.remove(tools: tools) } }
                try await workspace.remove(threadPool: threadPool)
            }.value
        } catch {
            logger.warning(
                "cannot remove the workspace", metadata: ["path": "\(workspace.root.path)", "error": "\(error)"])
        }
    }
}
