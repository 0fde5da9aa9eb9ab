import AMQP
import Domain
import Scheduler

extension AMQPTopology {
    /// c2d's job dispatch topology (docs/architecture.md, "Messages and events"): direct exchange `c2d.jobs`, one quorum queue per environment
    /// bound by the environment id, and a dead-letter path for messages past their delivery limit.
    static func jobs(environments: [String], deliveryLimit: Int = 5) -> AMQPTopology {
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
