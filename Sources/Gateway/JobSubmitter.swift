import Domain
import Foundation
import HTTPTypes
import Logging
import Persistence

/// Accepts jobs: validate, then one statement that writes the job (waiting for admission) and its first event. The
/// answer is sent after the commit, so an accepted job is never lost; the scheduler's dispatcher, woken by the
/// commit, admits it and publishes its message (docs/architecture.md, "Admission and dispatch"). The gateway needs
/// Postgres only: a submit succeeds while RabbitMQ is down.
package struct JobSubmitter: Sendable {
    let configuration: GatewayConfiguration
    let store: PostgresJobStore
    let validator: WorkflowValidator
    let logger: Logger

    package init(configuration: GatewayConfiguration, store: PostgresJobStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.validator = WorkflowValidator(limits: configuration.limits)
        self.logger = logger
    }

    /// A job to create, as the native API receives it.
    package struct Request: Sendable, Decodable {
        package var environment: String
        /// Only an `admin` token (or a gateway without authentication) may name an owner other than itself.
        package var owner: String?
        /// Who else may read the job and its results.
        package var viewers: [String]?
        /// The Ocean chain the job is for, where the environment serves only some chains.
        package var chainId: Int?
        /// 0 (the default) to 9: higher priorities are admitted first.
        package var priority: Int?
        package var workflow: Workflow
    }

    package func submit(_ request: Request, principal: Principal, requestID: String) async throws -> Job {
        try await submit(request, principal: principal, requestID: requestID, idempotencyKey: nil).job
    }

    /// Longest `Idempotency-Key` accepted, in characters.
    static let maxIdempotencyKeyLength = 200

    /// Submits like ``submit(_:requestID:)``, unless the owner already submitted a job under `idempotencyKey`:
    /// then that job is returned with `created` false, and nothing is written or published; if that job has another
    /// environment, workflow or viewers, the request is refused (422 `idempotency_key_reused`).
    package func submit(
        _ request: Request, principal: Principal, requestID: String, idempotencyKey: String?
    ) async throws -> (job: Job, created: Bool) {
        if let idempotencyKey {
            guard !idempotencyKey.isEmpty, idempotencyKey.count <= Self.maxIdempotencyKeyLength,
                !idempotencyKey.contains("\0")
            else {
                throw APIError(
                    .badRequest, code: "invalid_idempotency_key",
                    message:
                        "Idempotency-Key must be 1 to \(Self.maxIdempotencyKeyLength) characters without NUL characters"
                )
            }
        }
        guard let environment = configuration.environment(request.environment) else {
            throw APIError(
                .badRequest, code: "unknown_environment",
                message: "environment '\(request.environment.prefix(64))' does not exist")
        }
        let workflowJSON: String?
        do {
            workflowJSON = try validate(request.workflow, environment: environment, chainID: request.chainId)
        } catch {
            throw APIError(error)
        }
        let owner = try owner(requested: request.owner, principal: principal)
        let job = Job(
            id: JobID(), environment: environment.id, owner: owner, viewers: try viewers(request.viewers),
            priority: try Self.priority(request.priority), workflow: request.workflow)
        let outcome: PostgresJobStore.IdempotentInsert
        do {
            outcome = try await store.insert(
                job, workflowJSON: workflowJSON, idempotencyKey: idempotencyKey, trace: .new(requestID: requestID))
        } catch let error as PostgresError {
            logger.error("job insert failed", metadata: ["error": "\(error)"])
            throw APIError.unavailable
        }
        switch outcome {
        case .inserted:
            return (job, true)
        case .existing(let existing):
            // A retry sends the same job; different content under a used key is a client's mistake, and answering
            // with the first job would hide it (as batches, and the IETF Idempotency-Key draft, answer 422). The
            // priority can have been changed since, and is not compared.
            guard existing.environment == job.environment, existing.workflow == job.workflow,
                Set(existing.viewers) == Set(job.viewers)
            else {
                throw APIError(
                    .unprocessableContent, code: "idempotency_key_reused",
                    message: "this Idempotency-Key was used for job \(existing.id) with another environment, "
                        + "workflow or viewers; use a new key for a new job")
            }
            return (existing, false)
        }
    }

    /// Priorities run from 0 to 9 (higher first); absent is 0.
    static func priority(_ value: Int?) throws -> Int {
        guard let value else { return 0 }
        guard (0...9).contains(value) else {
            throw APIError(.badRequest, code: "invalid_priority", message: "priority must be an integer from 0 to 9")
        }
        return value
    }

    /// The validator's checks, then the environment's policy, then whether the environment can run the named image.
    /// Returns the workflow as JSON for the store (see ``WorkflowValidator/validatedJSON(_:environment:)``).
    func validate(
        _ workflow: Workflow, environment: ComputeEnvironment, chainID: Int?
    ) throws(SubmissionError) -> String? {
        let workflowJSON = try validator.validatedJSON(workflow, environment: environment)
        try SubmissionPolicy.check(workflow, environment: environment, chainID: chainID)
        if configuration.executor == .kubernetes, environment.dataVolumeClaim == nil,
            workflow.stage?.input.contains(where: { !$0.path.isEmpty }) == true
        {
            throw SubmissionError(
                code: "path_inputs_unavailable",
                message: "environment '\(environment.id)' runs jobs on Kubernetes without a datasets volume, so "
                    + "'path' inputs cannot be read; use 'url' or 'remote' inputs, or give the environment a "
                    + "dataVolumeClaim")
        }
        _ = try ImagePolicy.decide(
            workflow.stage?.algorithm.container, environment: environment, executor: configuration.executor)
        return workflowJSON
    }

    /// The owner a new job gets: the caller's own, unless an admin (or a gateway without authentication) names
    /// another.
    func owner(requested: String?, principal: Principal) throws -> String {
        let owner: String
        if let requested, !Principal.sameOwner(requested, principal.owner) {
            guard principal.has(.admin) else {
                throw APIError(
                    .forbidden, code: "owner_mismatch",
                    message: "a token may submit only for its own owner '\(principal.owner)'; omit 'owner'")
            }
            owner = requested
        } else {
            owner = principal.owner
        }
        try checkName(owner, field: "owner")
        return owner
    }

    /// Most viewers one job may list.
    static let maxViewers = 64

    func viewers(_ viewers: [String]?) throws -> [String] {
        let viewers = viewers ?? []
        guard viewers.count <= Self.maxViewers else {
            throw APIError(
                .badRequest, code: "too_many_viewers",
                message: "the job lists \(viewers.count) viewers; the limit is \(Self.maxViewers)")
        }
        for viewer in viewers { try checkName(viewer, field: "viewers") }
        return viewers
    }

    private func checkName(_ name: String, field: String) throws {
        guard !name.isEmpty, name.utf8.count <= configuration.limits.maxFieldBytes else {
            throw APIError(
                .badRequest, code: "field_too_long",
                message: "\(field) must be 1 to \(configuration.limits.maxFieldBytes) bytes")
        }
        guard !name.contains("\0") else {
            throw APIError(.badRequest, code: "invalid_character", message: "\(field) may not contain NUL characters")
        }
    }
}
