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

    package init(configuration: GatewayConfiguration, store: PostgresJobStore, amqp: AMQPClient, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.amqp = amqp
        self.validator = WorkflowValidator(limits: configuration.limits)
        self.logger = logger
    }

    /// A job to create, as the native API receives it.
    package struct Request: Sendable, Decodable {
        package var environment: String
        package var owner: String?
        package var workflow: Workflow
    }

    package func submit(_ request: Request, requestID: String) async throws -> Job {
        try await submit(request, requestID: requestID, idempotencyKey: nil).job
    }

    /// Longest `Idempotency-Key` accepted, in characters.
    static let maxIdempotencyKeyLength = 200

    /// Submits like ``submit(_:requestID:)``, unless the owner already submitted a job under `idempotencyKey`:
    /// then that job is returned with `created` false, and nothing is written or published.
    package func submit(
        _ request: Request, requestID: String, idempotencyKey: String?
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
            try validator.validate(request.workflow, environment: environment)
        } catch {
            throw APIError(error)
        }
        let owner = request.owner ?? "anonymous"
        guard owner.utf8.count <= configuration.limits.maxFieldBytes else {
            throw APIError(.badRequest, code: "field_too_long", message: "owner is too long")
        }
        guard !owner.contains("\0") else {
            throw APIError(.badRequest, code: "invalid_character", message: "owner may not contain NUL characters")
        }
        let job = Job(id: JobID(), environment: environment.id, owner: owner, workflow: request.workflow)
        let body = String(
            decoding: try JSONEncoder().encode(JobMessage(jobId: job.id, environment: job.environment)), as: UTF8.self)
        let message = PostgresJobStore.OutboxMessage(
            jobID: job.id, exchange: JobQueueNames.jobsExchange, routingKey: environment.id,
            headers: [
                JobMessage.Header.jobID: job.id.description, JobMessage.Header.requestID: requestID,
                JobMessage.Header.traceparent: Self.traceparent(),
            ],
            body: body)
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
        do {
            try await store.markOutboxSent(ids: [message.id])
        } catch {
            // The message is out; the relay may publish it again, and the worker's claim drops the duplicate.
            logger.warning(
                "marking outbox row sent failed", metadata: ["job": "\(message.jobID)", "error": "\(error)"])
        }
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
