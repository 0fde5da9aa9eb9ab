import AMQP
import Domain
import Foundation
import HTTPTypes
import Logging
import Persistence

/// Accepts jobs: validate, then one transaction that writes the job and its outbox row, then a confirmed
/// publish, then the outbox row marked sent (DESIGN §2.1). If the publish fails the job is still accepted: the
/// scheduler's relay publishes the outbox row once RabbitMQ is back.
package struct JobSubmitter: Sendable {
    let configuration: GatewayConfiguration
    let store: PostgresJobStore
    let amqp: AMQPClient
    let validator: WorkflowValidator
    let logger: Logger
    let sentMarker: OutboxSentMarker

    package init(configuration: GatewayConfiguration, store: PostgresJobStore, amqp: AMQPClient, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.amqp = amqp
        self.validator = WorkflowValidator(limits: configuration.limits)
        self.logger = logger
        self.sentMarker = OutboxSentMarker(store: store, logger: logger)
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
        package var workflow: Workflow
    }

    package func submit(_ request: Request, principal: Principal, requestID: String) async throws -> Job {
        try await submit(request, principal: principal, requestID: requestID, idempotencyKey: nil).job
    }

    /// Longest `Idempotency-Key` accepted, in characters.
    static let maxIdempotencyKeyLength = 200

    /// Submits like ``submit(_:requestID:)``, unless the owner already submitted a job under `idempotencyKey`:
    /// then that job is returned with `created` false, and nothing is written or published.
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
        do {
            try validate(request.workflow, environment: environment, chainID: request.chainId)
        } catch {
            throw APIError(error)
        }
        let owner = try owner(requested: request.owner, principal: principal)
        let job = Job(
            id: JobID(), environment: environment.id, owner: owner, viewers: try viewers(request.viewers),
            workflow: request.workflow)
        let message = try outboxMessage(for: job, requestID: requestID)
        let outcome: PostgresJobStore.IdempotentInsert
        do {
            outcome = try await store.insert(job, idempotencyKey: idempotencyKey, outbox: message)
        } catch let error as PostgresError {
            logger.error("job insert failed", metadata: ["error": "\(error)"])
            throw APIError.unavailable
        }
        switch outcome {
        case .inserted(let stored):
            await publish(stored)
            return (job, true)
        case .existing(let existing):
            return (existing, false)
        }
    }

    /// The validator's checks, then the environment's policy, then whether the environment can run the named image.
    func validate(_ workflow: Workflow, environment: ComputeEnvironment, chainID: Int?) throws(SubmissionError) {
        try validator.validate(workflow, environment: environment)
        try SubmissionPolicy.check(workflow, environment: environment, chainID: chainID)
        _ = try ImagePolicy.decide(
            workflow.stage?.algorithm.container, environment: environment, executor: configuration.executor)
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

    /// The message that tells a worker to run `job`, as the outbox keeps it until it is confirmed.
    func outboxMessage(for job: Job, requestID: String) throws -> PostgresJobStore.OutboxMessage {
        let body = String(
            decoding: try JSONEncoder().encode(JobMessage(jobId: job.id, environment: job.environment)), as: UTF8.self)
        return PostgresJobStore.OutboxMessage(
            jobID: job.id, exchange: JobQueueNames.jobsExchange, routingKey: job.environment,
            headers: [
                JobMessage.Header.jobID: job.id.description, JobMessage.Header.requestID: requestID,
                JobMessage.Header.traceparent: Self.traceparent(),
            ],
            body: body)
    }

    /// Publishes with a confirm and marks the outbox row sent; any failure leaves the row to the relay.
    func publish(_ message: PostgresJobStore.OutboxMessage) async {
        let amqp = self.amqp
        do {
            try await withDeadline(configuration.publishTimeout, operation: "publish") {
                try await amqp.publish(
                    AMQPMessage(
                        body: Array(message.body.utf8), headers: message.headers, contentType: "application/json",
                        messageID: message.jobID.description),
                    exchange: message.exchange, routingKey: message.routingKey)
            }
        } catch {
            logger.warning(
                "publish failed; the outbox relay will retry",
                metadata: ["job": "\(message.jobID)", "error": "\(error)"])
            return
        }
        sentMarker.mark([message.id])
    }

    /// A fresh W3C trace context, so a job can be followed across gateway, queue and worker logs.
    static func traceparent() -> String {
        func hex(_ count: Int) -> String {
            (0..<count).map { _ in String(UInt8.random(in: 0...255), radix: 16) }
                .map { $0.count == 1 ? "0" + $0 : $0 }.joined()
        }
        return "00-\(hex(16))-\(hex(8))-01"
    }
}
