import Domain
import Foundation
import Kubernetes
import Logging
import NIOCore
import Persistence
import Storage

/// Runs a job's attempt as Kubernetes objects (docs/architecture.md, "A job's life on Kubernetes"): the attempt's
/// Job (configure, then publish, in c2d's image) and its algorithm pod, launched with two creates, named from job id
/// and attempt so that a retried create finds its own object ("already exists" means adopt after checking labels).
/// The ``AttemptMonitor`` follows the attempt through the shared informer and settles its verdict with
/// `AttemptOutcome`; the results are what the publish step uploaded (plus step logs read from the API when publish
/// could not upload them); once the worker recorded the end, the attempt's Job is deleted (the third write), which
/// takes the rest with it.
package final class KubernetesExecutor: Executor {
    let client: KubernetesClient
    let monitor: AttemptMonitor
    let store: PostgresJobStore
    let resultStore: any ResultStore
    let configuration: KubernetesExecutorConfiguration
    let workerID: String
    let logger: Logger

    package init(
        client: KubernetesClient, monitor: AttemptMonitor, store: PostgresJobStore, resultStore: any ResultStore,
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

    /// Makes sure the namespace's algorithm network policies exist and say what they should (create, else
    /// replace): each selects algorithm pods by label, so no attempt needs its own. Call before taking jobs.
    package func prepare() async throws {
        for policy in JobManifests.namespacePolicies(namespace: configuration.namespace) {
            let name = policy.metadata.name ?? ""
            do {
                _ = try await client.create(policy, namespace: configuration.namespace, priority: .finishing)
            } catch let error as KubernetesError where error.code == .alreadyExists {
                let existing = try await client.get(NetworkPolicy.self, name: name, namespace: configuration.namespace)
                guard existing.spec != policy.spec else { continue }
                _ = try await client.patch(
                    NetworkPolicy.self, name: name, namespace: configuration.namespace,
                    mergePatch: ["spec": policy.spec])
            }
        }
    }

    /// Launches (or adopts) the attempt in the calling task, then leaves it to the monitor and returns: the
    /// monitored attempt is a value in the monitor's state machine, and `ended` runs on one of the monitor's tasks
    /// once its end is settled. Nothing of the launch (manifests, HTTP, JSON) outlives this call.
    package func start(_ attempt: AttemptRun, ended: @escaping @Sendable (AttemptEnding) async -> Void) async {
        let key = AttemptKey(jobID: attempt.job.id, attempt: attempt.job.attempt)
        switch await start(attempt, key: key) {
        case .failure(let early):
            await ended(early.ending)
        case .success(let timeLimit):
            // The end handler keeps references only (the executor is a class: no copy of its configuration).
            monitor.follow(
                key, status: attempt.job.status, algorithmTimeLimit: timeLimit, control: attempt.control,
                progress: attempt.progress
            ) { [self] ending in await ended(await end(key, ending)) }
        }
    }

    /// The attempt run to its end in the calling task (``start(_:ended:)`` awaited).
    package func run(_ attempt: AttemptRun) async -> AttemptEnding {
        let (endings, continuation) = AsyncStream.makeStream(of: AttemptEnding.self)
        await start(attempt) { ending in
            continuation.yield(ending)
            continuation.finish()
        }
        for await ending in endings { return ending }
        return .handBack
    }

    /// An ending reached before the attempt could be monitored.
    struct EarlyEnding: Error {
        var ending: AttemptEnding
    }

    /// Launches or adopts the attempt; answers the algorithm's time limit in seconds.
    private func start(_ attempt: AttemptRun, key: AttemptKey) async -> Result<Int, EarlyEnding> {
        let manifests = JobManifests(job: attempt.job, environment: attempt.environment, configuration: configuration)
        if let ending = await waitForInformer(attempt.control) { return .failure(EarlyEnding(ending: ending)) }
        let logger = self.logger(key)
        do {
            try await launch(manifests, key: key, logger: logger)
        } catch let error as FencingError {
            return .failure(EarlyEnding(ending: .lostLease(error.description)))
        } catch {
            if let interruption = attempt.control.interruption {
                return .failure(EarlyEnding(ending: Self.ending(interruption)))
            }
            logger.error("launching the attempt failed", metadata: ["error": "\(error)"])
            return .failure(
                EarlyEnding(
                    ending: .finished(
                        ExecutionResult(
                            status: .finished, outcome: .failed, failureReason: "execution failed: \(error)"))))
        }
        return .success(manifests.algorithmDeadlineSeconds)
    }

    /// What monitoring ended with, as the worker records it.
    private func end(_ key: AttemptKey, _ ending: AttemptMonitor.Ending) async -> AttemptEnding {
        switch ending {
        case .interrupted(let interruption):
            return Self.ending(interruption)
        case .superseded(let reason):
            return .lostLease(reason)
        case .verdict(let verdict):
            let logger = self.logger(key)
            do {
                let results = try await results(of: key, logger: logger)
                return .finished(verdict.result(with: results))
            } catch let error as FencingError {
                return .lostLease(error.description)
            } catch {
                logger.error("reading the attempt's results failed", metadata: ["error": "\(error)"])
                return .finished(verdict.result(with: []))
            }
        }
    }

    private func logger(_ key: AttemptKey) -> Logger {
        var logger = self.logger
        logger[metadataKey: "job"] = "\(key.jobID)"
        logger[metadataKey: "attempt"] = "\(key.attempt)"
        return logger
    }

    package func attemptRecorded(_ claim: JobClaim, ending: AttemptEnding) async {
        guard case .finished = ending else { return }
        await monitor.deleteRecorded(AttemptKey(jobID: claim.jobID, attempt: claim.attempt))
    }

    static func ending(_ interruption: AttemptInterruption) -> AttemptEnding {
        switch interruption {
        case .stopRequested:
            .finished(
                ExecutionResult(
                    status: .finished, outcome: .stopped, failureReason: "the job was stopped on request",
                    stopRequest: 1))
        case .leaseLost(let reason): .lostLease(reason)
        case .shutdown: .handBack
        }
    }

    /// The informer must have listed the cluster before an attempt is launched or adopted: only then does "not
    /// there" mean not there.
    private func waitForInformer(_ control: AttemptControl) async -> AttemptEnding? {
        while !monitor.informer.isSynced {
            if let interruption = control.interruption { return Self.ending(interruption) }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    // MARK: Launching

    /// Launches the attempt, or adopts it when another worker launched it: the upload token is registered only by
    /// the worker that creates the attempt's Job, so an adopted attempt keeps the token its running pods hold.
    private func launch(_ manifests: JobManifests, key: AttemptKey, logger: Logger) async throws {
        let job = manifests.job
        let token = UploadToken.generate()
        let fresh = try await retrying("registering the upload token", logger: logger) {
            try await store.registerUploadToken(jobID: job.id, attempt: job.attempt, hash: UploadToken.hash(token))
        }
        let observed = monitor.informer.observed(key)?.observation
        if !fresh {
            // Adopting: the attempt's Job exists (it was created before the launch was recorded). Create its
            // algorithm pod if the previous worker died before it could.
            guard observed?.root == .present, observed?.algorithmPod.presence == .notSeen else { return }
            logger.info("adopting the attempt; creating its algorithm pod")
            let root = try await retrying("reading the attempt's Job", logger: logger) {
                try await client.get(
                    Kubernetes.Job.self, as: CreatedObject.self, name: manifests.rootName,
                    namespace: configuration.namespace)
            }
            try await createAlgorithmPod(manifests, root: root, logger: logger)
            return
        }
        let root = try await retrying("creating the attempt's Job", logger: logger) {
            try await createOrAdopt(manifests.rootJob(uploadToken: token), manifests)
        }
        // Recording the launch and creating the algorithm pod need not wait for each other: both follow the Job.
        async let launched: Void = retrying("recording the launch", logger: logger) {
            try await store.markLaunched(JobClaim(job))
        }
        try await createAlgorithmPod(manifests, root: root, logger: logger)
        try await launched
    }

    private func createAlgorithmPod(_ manifests: JobManifests, root: CreatedObject, logger: Logger) async throws {
        guard let uid = root.metadata.uid else {
            throw KubernetesExecutorError(.unexpectedResponse, "the API returned a Job without a uid")
        }
        let owner = OwnerReference(
            apiVersion: Kubernetes.Job.resource.apiVersion, kind: Kubernetes.Job.resource.kind,
            name: manifests.rootName, uid: uid)
        _ = try await retrying("creating the algorithm pod", logger: logger) {
            try await createOrAdopt(manifests.algorithmPod(owner: owner), manifests)
        }
    }

    /// What a launch reads of an object it created or adopted.
    struct CreatedObject: Decodable, Sendable {
        struct Metadata: Decodable, Sendable {
            var uid: String?
            var labels: AttemptLabels?
        }
        var metadata: Metadata
    }

    /// Creates the object; if one of that name exists it is adopted when its labels say it is this attempt's, and
    /// refused otherwise (never a duplicate, never someone else's object).
    private func createOrAdopt<R: KubernetesResource>(
        _ object: R, _ manifests: JobManifests
    ) async throws -> CreatedObject {
        do {
            return try await client.create(object, as: CreatedObject.self, namespace: configuration.namespace)
        } catch let error as KubernetesError where error.code == .alreadyExists {
            let name = object.metadata.name ?? ""
            let existing = try await client.get(
                R.self, as: CreatedObject.self, name: name, namespace: configuration.namespace)
            let labels = existing.metadata.labels
            guard labels?.jobID == manifests.job.id.description,
                labels?.attempt == String(manifests.job.attempt)
            else {
                throw KubernetesExecutorError(
                    .foreignObject, "\(R.resource.kind) \(name) exists but belongs to another job or attempt")
            }
            return existing
        }
    }

    // MARK: Results

    /// What the publish step uploaded, after archiving the logs of c2d's steps that it could not upload (configure
    /// failed before publish ran, or publish failed): the same path the scheduler takes when it finalizes.
    private func results(of key: AttemptKey, logger: Logger) async throws -> [ResultFile] {
        var uploads = try await retrying("reading the attempt's results", logger: logger) {
            try await store.uploads(jobID: key.jobID, attempt: key.attempt)
        }
        guard let observed = monitor.informer.observed(key) else { return uploads }
        let missing = AttemptLogs.missing(observed, uploaded: Set(uploads.map(\.name)))
        guard !missing.isEmpty else { return uploads }
        for log in missing {
            do {
                guard
                    let bytes = try await AttemptLogs.read(
                        log, client: client, namespace: configuration.namespace, limit: configuration.logLimitBytes)
                else { continue }
                try await store.archiveStepLog(
                    bytes, name: log.name, kind: log.kind, jobID: key.jobID, attempt: key.attempt,
                    resultStore: resultStore)
            } catch {
                logger.warning(
                    "archiving a step's log failed", metadata: ["container": "\(log.container)", "error": "\(error)"])
            }
        }
        uploads = try await store.uploads(jobID: key.jobID, attempt: key.attempt)
        return uploads
    }

    /// Rides out short outages of Postgres or the API server (a pool exhausted under load, a restart, 429s beyond
    /// the client's own retries) for up to ``KubernetesExecutorConfiguration/transientRetryBudget``, so that an
    /// infrastructure blip is not reported as the job's failure. Creates are safe to repeat: a create that did land
    /// answers 409 the second time and is adopted.
    private func retrying<T: Sendable>(
        _ what: String, logger: Logger, _ body: () async throws -> T
    ) async throws -> T {
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
        if let error = error as? PostgresError { return error.isTransient }
        if let error = error as? KubernetesError { return error.isTransient }
        return false
    }
}

/// The executor could not carry out the attempt (not a failure of the job itself); the worker records it as a
/// failed execution with this message.
package struct KubernetesExecutorError: Error, CustomStringConvertible, Sendable {
    package enum Code: String, Sendable {
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
