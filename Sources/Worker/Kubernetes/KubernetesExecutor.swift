import Domain
import Foundation
import Kubernetes
import Logging
import NIOCore
import NIOPosix
import Persistence
import Storage

/// Runs a job's attempt as Kubernetes objects (DESIGN §3): a Secret that owns the rest, a data volume, a
/// deny-egress NetworkPolicy, and the step Jobs configure → algorithm → publish, named from job id and attempt so
/// that a retried create finds its own object ("already exists" means adopt after checking labels). Progress comes
/// from the ``ClusterMonitor``'s watch, never from polling. Each step's log is archived to the result store
/// before anything may delete the step (then its Job gets `ttlSecondsAfterFinished`).
package struct KubernetesExecutor: Executor {
    let client: KubernetesClient
    let monitor: ClusterMonitor
    let store: PostgresJobStore
    let resultStore: any ResultStore
    let configuration: KubernetesExecutorConfiguration
    let workerID: String
    let logger: Logger

    package init(
        client: KubernetesClient, monitor: ClusterMonitor, store: PostgresJobStore, resultStore: any ResultStore,
        configuration: KubernetesExecutorConfiguration, workerID: String, logger: Logger
    ) {
        self.client = client
        self.monitor = monitor
        self.store = store
        self.resultStore = resultStore
        self.configuration = configuration
        self.workerID = workerID
        self.logger = logger
    }

    package func execute(
        job: Domain.Job, environment: ComputeEnvironment,
        progress: @escaping @Sendable (Domain.JobStatus) async throws -> Void
    ) async throws -> ExecutionResult {
        let manifests = JobManifests(job: job, environment: environment, configuration: configuration)
        var logger = self.logger
        logger[metadataKey: "job"] = "\(job.id)"
        logger[metadataKey: "attempt"] = "\(job.attempt)"
        await monitor.waitUntilReady()
        do {
            return try await run(manifests, from: job.status, progress: progress, logger: logger)
        } catch is CancellationError {
            // Cancelled: a stop request, a lost lease or shutdown. Only a stop removes the objects; otherwise the
            // attempt keeps running in the cluster for the worker that adopts it. Cleanup must not inherit our
            // cancellation, hence the unstructured task.
            let stopped = await Task { await stopIfRequested(manifests, logger: logger) }.value
            guard let stopped else { throw CancellationError() }
            return stopped
        }
    }

    private func run(
        _ manifests: JobManifests, from status: Domain.JobStatus,
        progress: @escaping @Sendable (Domain.JobStatus) async throws -> Void, logger: Logger
    ) async throws -> ExecutionResult {
        let job = manifests.job
        let owner = try await launch(manifests, logger: logger)

        // configure: skipped when an adopted attempt is already past it.
        if !Self.isPast(status, .provisioningSuccess) {
            let outcome = try await runStep(.configure, manifests, owner: owner)
            switch outcome {
            case .succeeded:
                try await progress(.provisioningSuccess)
            case .failed(let code, _, let message, _):
                let failed: Domain.JobStatus = code == 32 ? .algorithmProvisioningFailed : .dataProvisioningFailed
                return try await end(
                    manifests,
                    ExecutionResult(
                        status: failed, outcome: .failed,
                        failureReason: message.flatMap { $0.isEmpty ? nil : $0 }
                            ?? "configure step failed with exit code \(code.map(String.init) ?? "unknown")"))
            case .deadlineExceeded:
                return try await end(
                    manifests,
                    ExecutionResult(
                        status: .dataProvisioningFailed, outcome: .failed,
                        failureReason:
                            "configure step exceeded its \(configuration.configureDeadlineSeconds) s deadline"))
            case .imagePullFailed(let reason):
                return try await end(
                    manifests,
                    ExecutionResult(
                        status: .imagePullFailed, outcome: .failed,
                        failureReason: "pulling c2d's image \(configuration.podImage) failed: \(reason)"))
            case .vanished:
                throw KubernetesExecutorError(
                    .stepVanished, "the configure Job of \(job.id) vanished before it finished")
            }
        }

        // algorithm
        if !Self.isPast(status, .runningAlgorithm) { try await progress(.runningAlgorithm) }
        var result: ExecutionResult
        switch try await runStep(.algorithm, manifests, owner: owner) {
        case .succeeded:
            result = ExecutionResult(status: .finished, outcome: .succeeded, exitCode: 0)
        case .failed(let code, let reason, _, let oomKilled):
            let why =
                oomKilled
                ? "the algorithm ran out of memory (limit \(manifests.environment.memoryMiB) MiB)"
                : "algorithm exited with code \(code.map(String.init) ?? "unknown")"
                    + (reason.map { $0 == "Error" ? "" : " (\($0))" } ?? "")
            result = ExecutionResult(
                status: .finished, outcome: .failed, failureReason: why, exitCode: code, oomKilled: oomKilled)
        case .deadlineExceeded:
            result = ExecutionResult(
                status: .finished, outcome: .timedOut,
                failureReason: "algorithm exceeded its time limit of \(manifests.algorithmDeadlineSeconds) s",
                stopRequest: 2)
        case .imagePullFailed(let reason):
            let image = job.workflow.stage?.algorithm.container?.image ?? "?"
            return try await end(
                manifests,
                ExecutionResult(
                    status: .imagePullFailed, outcome: .failed,
                    failureReason: "the algorithm image \(image) could not be pulled within "
                        + "\(configuration.imagePullTimeout): \(reason)"))
        case .vanished:
            throw KubernetesExecutorError(.stepVanished, "the algorithm Job of \(job.id) vanished before it finished")
        }

        // publish: outputs and logs, whatever the algorithm's outcome.
        try await progress(.publishingResults)
        switch try await runStep(.publish, manifests, owner: owner) {
        case .succeeded:
            break
        case .failed(_, _, let message, _):
            result.status = .resultsUploadFailed
            result.outcome = .failed
            result.failureReason = "publishing results failed: " + (message ?? "publish step failed")
        case .deadlineExceeded:
            result.status = .resultsUploadFailed
            result.outcome = .failed
            result.failureReason = "publishing results exceeded \(configuration.publishDeadlineSeconds) s"
        case .imagePullFailed(let reason):
            result.status = .resultsUploadFailed
            result.outcome = .failed
            result.failureReason = "pulling c2d's image \(configuration.podImage) for publishing failed: \(reason)"
        case .vanished:
            throw KubernetesExecutorError(.stepVanished, "the publish Job of \(job.id) vanished before it finished")
        }
        return try await end(manifests, result)
    }

    /// The attempt's results as recorded (outputs uploaded by the publish step, logs archived by us), then the
    /// attempt's objects are removed: the Secret owns them all.
    private func end(_ manifests: JobManifests, _ result: ExecutionResult) async throws -> ExecutionResult {
        var result = result
        result.results = try await retrying("reading the attempt's results") {
            try await store.uploads(jobID: manifests.job.id, attempt: manifests.job.attempt)
        }
        await remove(manifests, propagation: .background)
        return result
    }

    private func remove(_ manifests: JobManifests, propagation: PropagationPolicy) async {
        do {
            try await client.delete(
                Secret.self, name: manifests.attemptName, namespace: configuration.namespace,
                propagationPolicy: propagation)
        } catch let error as KubernetesError where error.code == .notFound {
        } catch {
            // The scheduler deletes objects of finished jobs it finds (orphans); nothing is lost.
            logger.warning("deleting the attempt's objects failed", metadata: ["error": "\(error)"])
        }
        for step in ClusterNaming.Step.allCases { await monitor.forget(step: manifests.stepName(step)) }
    }

    /// On a stop request: archive what the current step logged, delete every object in the foreground, and return
    /// the stopped result. nil when the cancellation was not a stop (shutdown or a lost lease).
    private func stopIfRequested(_ manifests: JobManifests, logger: Logger) async -> ExecutionResult? {
        guard let current = try? await store.job(manifests.job.id), current.stopRequest == 1,
            current.attempt == manifests.job.attempt
        else { return nil }
        for step in ClusterNaming.Step.allCases {
            await archiveLog(step, manifests, logger: logger)
        }
        await remove(manifests, propagation: .foreground)
        let results = (try? await store.uploads(jobID: manifests.job.id, attempt: manifests.job.attempt)) ?? []
        logger.info("job stopped; its objects are being deleted")
        return ExecutionResult(
            status: .finished, outcome: .stopped, failureReason: "the job was stopped on request", stopRequest: 1,
            results: results)
    }

    // MARK: Objects

    /// Creates (or adopts) the Secret, the volume and the network policy; returns the owner reference the step Jobs
    /// carry. The upload token is registered before the Secret holding it exists, so a publish never meets an
    /// unknown token; an adopted Secret keeps its token.
    private func launch(_ manifests: JobManifests, logger: Logger) async throws -> OwnerReference {
        let job = manifests.job
        let token = UploadToken.generate()
        try await retrying("registering the upload token") {
            try await store.registerUploadToken(jobID: job.id, attempt: job.attempt, hash: UploadToken.hash(token))
        }
        let secret = try await retrying("creating the Secret") {
            try await createOrAdopt(try manifests.secret(uploadToken: token), manifests)
        }
        try await retrying("recording the launch") {
            try await store.markLaunched(JobClaim(job))
        }
        guard let uid = secret.metadata.uid else {
            throw KubernetesExecutorError(.unexpectedResponse, "the API returned a Secret without a uid")
        }
        let owner = OwnerReference(
            apiVersion: Secret.resource.apiVersion, kind: Secret.resource.kind, name: manifests.attemptName, uid: uid,
            controller: true, blockOwnerDeletion: true)
        _ = try await retrying("creating the volume") {
            try await createOrAdopt(manifests.volume(owner: owner), manifests)
        }
        if let policy = manifests.networkPolicy(owner: owner) {
            _ = try await retrying("creating the network policy") { try await createOrAdopt(policy, manifests) }
        }
        return owner
    }

    /// Creates the object; if one of that name exists it is adopted when its labels say it is this attempt's, and
    /// refused otherwise (never a duplicate, never someone else's object).
    private func createOrAdopt<R: KubernetesResource>(_ object: R, _ manifests: JobManifests) async throws -> R {
        do {
            return try await client.create(object, namespace: configuration.namespace)
        } catch let error as KubernetesError where error.code == .alreadyExists {
            let name = object.metadata.name ?? ""
            let existing = try await client.get(R.self, name: name, namespace: configuration.namespace)
            let labels = existing.metadata.labels ?? [:]
            guard labels[ClusterNaming.jobIDLabel] == manifests.job.id.description,
                labels[ClusterNaming.attemptLabel] == String(manifests.job.attempt)
            else {
                throw KubernetesExecutorError(
                    .foreignObject, "\(R.resource.kind) \(name) exists but belongs to another job or attempt")
            }
            return existing
        }
    }

    /// Runs (or adopts) one step's Job and waits for its end through the monitor, then archives its log.
    private func runStep(
        _ step: ClusterNaming.Step, _ manifests: JobManifests, owner: OwnerReference
    ) async throws -> StepOutcome {
        _ = try await retrying("creating the \(step.rawValue) Job") {
            try await createOrAdopt(manifests.stepJob(step, owner: owner), manifests)
        }
        let outcome = try await monitor.wait(forStep: manifests.stepName(step))
        await archiveLog(step, manifests, logger: logger)
        if case .imagePullFailed = outcome {
            // A pod that will never start holds its node's slot: remove the step now.
            try? await client.delete(
                Kubernetes.Job.self, name: manifests.stepName(step), namespace: configuration.namespace,
                propagationPolicy: .background)
        } else {
            do {
                _ = try await client.patch(
                    Kubernetes.Job.self, name: manifests.stepName(step), namespace: configuration.namespace,
                    mergePatch: ["spec": ["ttlSecondsAfterFinished": configuration.finishedStepTTLSeconds]])
            } catch {
                logger.debug("setting a finished step's TTL failed", metadata: ["error": "\(error)"])
            }
        }
        return outcome
    }

    /// Stores a step's pod log as the job's configure, algorithm or publish log. A step without a pod (never
    /// scheduled, or already gone) has no log; that is noted, not an error.
    private func archiveLog(_ step: ClusterNaming.Step, _ manifests: JobManifests, logger: Logger) async {
        let (name, kind): (String, ResultKind) =
            switch step {
            case .configure: ("configure.log", .configurationLog)
            case .algorithm: ("algorithm.log", .algorithmLog)
            case .publish: ("publish.log", .publishLog)
            }
        do {
            let pods = try await client.list(
                Pod.self, as: PodName.self, namespace: configuration.namespace,
                options: ListOptions(labelSelector: "job-name=\(manifests.stepName(step))"))
            guard let pod = pods.items.first?.metadata.name else { return }
            let bytes = try await client.podLogs(
                name: pod, namespace: configuration.namespace,
                options: PodLogOptions(limitBytes: configuration.logLimitBytes))
            // Files are written on NIO's thread pool: blocking I/O has no place on Swift's cooperative threads.
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-log-\(UUID().uuidString)")
            try await NIOThreadPool.singleton.runIfActive { try Data(bytes.readableBytesView).write(to: file) }
            let stored: StoredObject
            do {
                stored = try await resultStore.store(jobID: manifests.job.id, name: "logs/\(name)", from: file)
                try? await NIOThreadPool.singleton.runIfActive { try FileManager.default.removeItem(at: file) }
            } catch {
                try? await NIOThreadPool.singleton.runIfActive { try FileManager.default.removeItem(at: file) }
                throw error
            }
            try await store.recordUpload(
                jobID: manifests.job.id, attempt: manifests.job.attempt, name: name, kind: kind, stored: stored)
        } catch let error as KubernetesError where error.code == .badRequest || error.code == .notFound {
            logger.debug("no log for step", metadata: ["step": "\(step.rawValue)", "error": "\(error)"])
        } catch {
            logger.warning(
                "archiving a step's log failed", metadata: ["step": "\(step.rawValue)", "error": "\(error)"])
        }
    }

    /// Rides out short outages of Postgres or the API server (a pool exhausted under load, a restart, 429s beyond
    /// the client's own retries) for up to ``KubernetesExecutorConfiguration/transientRetryBudget``, so that an
    /// infrastructure blip is not reported as the job's failure. Creates are safe to repeat: a create that did land
    /// answers 409 the second time and is adopted.
    private func retrying<T: Sendable>(_ what: String, _ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + configuration.transientRetryBudget
        var delay = Duration.milliseconds(200)
        while true {
            do {
                return try await body()
            } catch let error where Self.isTransient(error) && ContinuousClock.now + delay < deadline {
                logger.warning("\(what) failed; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    static func isTransient(_ error: any Error) -> Bool {
        if let error = error as? PostgresError { return error.isRetriable || error.code == .acquireTimeout }
        if let error = error as? KubernetesError { return error.isTransient }
        return false
    }

    struct PodName: Decodable, Sendable {
        struct Meta: Decodable, Sendable { var name: String? }
        var metadata: Meta
    }

    /// Whether `status` shows the attempt already went beyond `stage` (an adopted attempt resumes after it).
    static func isPast(_ status: Domain.JobStatus, _ stage: Domain.JobStatus) -> Bool {
        let order: [Domain.JobStatus] = [
            .configuringVolumes, .provisioningSuccess, .runningAlgorithm, .publishingResults,
        ]
        guard let current = order.firstIndex(of: status), let target = order.firstIndex(of: stage) else {
            return false
        }
        return current >= target
    }
}

/// The executor could not carry out the attempt (not a failure of the job itself); the worker records it as a
/// failed execution with this message.
package struct KubernetesExecutorError: Error, CustomStringConvertible, Sendable {
    package enum Code: String, Sendable {
        /// A step's Job disappeared before it ended.
        case stepVanished
        /// An object of this attempt's name exists but belongs to another job or attempt.
        case foreignObject
        /// The API answered something unusable.
        case unexpectedResponse
    }

    package var code: Code
    package var message: String
    package var description: String { "\(code.rawValue): \(message)" }

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}
