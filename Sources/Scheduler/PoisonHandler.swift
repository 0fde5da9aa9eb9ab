import AMQP
import Domain
import Foundation
import Logging
import Persistence
import ServiceLifecycle

/// Turns dead-lettered job messages into failed jobs (docs/architecture.md, "Admission and dispatch").
///
/// A job queue's `x-delivery-limit` dead-letters a message that came back to the queue too often: its worker died
/// holding it (the worker acks only after the claim, so a job whose handling kills the worker returns every time). The
/// dead-letter exchange fans each such message out to `c2d.jobs.dead`, which keeps it for operators (`c2d queues`,
/// `c2d queues requeue-dead`), and to `c2d.jobs.poison`, which this service consumes. For each message it fails the
/// job with reason `poison: …` if the job is unfinished, unleased and was claimed at least `minimumAttempts` times;
/// a job that a live worker holds is waited for; one that died for another reason (claimed fewer times, e.g. Postgres
/// was down) is handed back to the dispatcher, which publishes it again. The message is acked once the outcome is
/// durable. (A job whose attempts keep killing their workers after they acknowledged is caught by the reconciler's
/// hand-over duty instead, which counts lost leases.)
package final class PoisonHandler: Service, Sendable {
    package struct Configuration: Sendable {
        /// Claims a job needs before a dead letter counts as poison. Default 5, the default delivery limit: a job
        /// that kills its worker every time is claimed once per delivery, delivery limit + 1 times.
        package var minimumAttempts: Int
        /// Dead letters handled at once. Default 16.
        package var concurrency: Int

        package init(minimumAttempts: Int = 5, concurrency: Int = 16) {
            self.minimumAttempts = max(1, minimumAttempts)
            self.concurrency = max(1, concurrency)
        }
    }

    /// The queue this service consumes: the dead-letter exchange's second binding.
    package static let queue = "c2d.jobs.poison"

    let configuration: Configuration
    let store: PostgresJobStore
    let amqp: AMQPClient
    let logger: Logger

    package init(
        configuration: Configuration = Configuration(), store: PostgresJobStore, amqp: AMQPClient, logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.amqp = amqp
        self.logger = logger
    }

    package func run() async throws {
        await withDiscardingTaskGroup { group in
            do {
                for try await delivery in amqp.consume(queue: Self.queue, prefetch: configuration.concurrency)
                    .cancelOnGracefulShutdown()
                {
                    group.addTask { await self.handle(delivery) }
                }
            } catch {
                logger.error("consuming dead letters stopped", metadata: ["error": "\(error)"])
            }
        }
    }

    func handle(_ delivery: AMQPDelivery) async {
        guard let message = try? JSONDecoder().decode(JobMessage.self, from: Data(delivery.message.body)) else {
            // Not a job message: nothing to fail. Its copy stays in c2d.jobs.dead for an operator.
            logger.error("undecodable dead letter; left in c2d.jobs.dead", metadata: ["key": "\(delivery.routingKey)"])
            try? await delivery.ack()
            return
        }
        var logger = self.logger
        logger[metadataKey: "job"] = "\(message.jobId)"
        if let requestID = delivery.message.headers[JobMessage.Header.requestID] {
            logger[metadataKey: "request_id"] = "\(requestID)"
        }
        let reason =
            "its message was dead-lettered after \(delivery.message.headers["x-delivery-count"] ?? "repeated") "
            + "deliveries whose workers died before finishing it"
        var observedLease: Date?
        var delay = Duration.milliseconds(500)
        while !Task.isCancelled {
            do {
                switch try await store.failPoisonedJob(
                    jobID: message.jobId, minimumAttempts: configuration.minimumAttempts, reason: reason)
                {
                case .failedAsPoison(let attempt):
                    logger.warning("job failed as poison", metadata: ["attempt": "\(attempt)"])
                case .finished, .notFound:
                    logger.debug("dead letter for a finished or unknown job; nothing to do")
                case .leased(let until):
                    if let observedLease, until > observedLease {
                        logger.info("dead letter for a job a live worker runs; dropping it")
                        break
                    }
                    // The last worker that died may still hold its lease: wait for it to lapse, then decide.
                    observedLease = until
                    try await Task.sleep(for: .milliseconds(Int(max(0, until.timeIntervalSinceNow) * 1000) + 500))
                    continue
                case .notPoison(let attempt):
                    logger.warning(
                        "dead letter for a job claimed only \(attempt) times; the dispatcher publishes it again")
                }
                try? await delivery.ack()
                return
            } catch is CancellationError {
                break
            } catch {
                logger.warning("handling a dead letter failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(30))
            }
        }
        // Shutting down: the broker redelivers it to the next scheduler.
        try? await delivery.nack(requeue: true)
    }
}
