import AMQP
import Domain
import Scheduler

extension AMQPTopology {
    /// c2d's job dispatch topology (docs/architecture.md, "Messages and events"): direct exchange `c2d.jobs`, one quorum queue per environment
    /// bound by the environment id, and a dead-letter path for messages past their delivery limit.
    package static func jobs(environments: [String], deliveryLimit: Int = 5) -> AMQPTopology {
        AMQPTopology(
            exchanges: [
                AMQPExchange(name: JobQueueNames.jobsExchange, type: "direct"),
                AMQPExchange(name: JobQueueNames.deadLetterExchange, type: "fanout"),
            ],
            // The dead-letter fanout feeds two queues: one kept for operators, one the scheduler's poison handler
            // consumes.
            queues: [AMQPQueue.quorum(JobQueueNames.deadLetterQueue), AMQPQueue.quorum(PoisonHandler.queue)]
                + environments.map {
                    AMQPQueue.quorum(
                        JobQueueNames.queue(environment: $0), deliveryLimit: deliveryLimit,
                        deadLetterExchange: JobQueueNames.deadLetterExchange)
                },
            bindings: [
                AMQPBinding(
                    queue: JobQueueNames.deadLetterQueue, exchange: JobQueueNames.deadLetterExchange, routingKey: ""),
                AMQPBinding(queue: PoisonHandler.queue, exchange: JobQueueNames.deadLetterExchange, routingKey: ""),
            ]
                + environments.map {
                    AMQPBinding(
                        queue: JobQueueNames.queue(environment: $0), exchange: JobQueueNames.jobsExchange,
                        routingKey: $0)
                })
    }
}

extension AMQPTopology {
    /// The event path (docs/architecture.md, "Messages and events"): topic exchange `c2d.events` and the stream
    /// `c2d.events.stream` bound with `#`, which keeps every event for `maxAge` so `c2d tail --from` can replay.
    package static func events(maxAge: String) -> AMQPTopology {
        AMQPTopology(
            exchanges: [AMQPExchange(name: EventNames.exchange, type: "topic")],
            queues: [
                AMQPQueue(
                    name: EventNames.stream,
                    arguments: ["x-queue-type": .string("stream"), "x-max-age": .string(maxAge)])
            ],
            bindings: [AMQPBinding(queue: EventNames.stream, exchange: EventNames.exchange, routingKey: "#")])
    }

    /// Both declarations, this one's first.
    package func adding(_ other: AMQPTopology) -> AMQPTopology {
        AMQPTopology(
            exchanges: exchanges + other.exchanges, queues: queues + other.queues, bindings: bindings + other.bindings)
    }
}
