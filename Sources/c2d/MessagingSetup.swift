import AMQP
import ArgumentParser
import Domain
import Foundation
import Logging
import Persistence
import Scheduler
import ServiceLifecycle

/// The messaging settings beyond the AMQP URL, read from the environment with documented defaults.
struct MessagingSettings: Sendable {
    /// `C2D_DELIVERY_LIMIT`: how often a job message may return to its queue (worker died holding it) before it is
    /// dead-lettered; the queue's `x-delivery-limit`. Default 5. Changing it for an existing queue is a declaration
    /// conflict: delete the queue (or use a new environment) first.
    var deliveryLimit: Int
    /// `C2D_POISON_ATTEMPTS`: claims a dead-lettered job needs to be failed as poison. Default: the delivery limit.
    var poisonAttempts: Int
    /// `C2D_EVENTS_MAX_AGE`: how long the event stream keeps events, in RabbitMQ's `x-max-age` form (a number and
    /// one of Y M D h m s). Default `7D`.
    var eventsMaxAge: String

    static func load(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> MessagingSettings {
        func integer(_ key: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
            guard let text = env[key], !text.isEmpty else { return value }
            guard let number = Int(text), range.contains(number) else {
                throw ValidationError("\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        let deliveryLimit = try integer("C2D_DELIVERY_LIMIT", default: 5, range: 1...1000)
        let maxAge = env["C2D_EVENTS_MAX_AGE"].flatMap { $0.isEmpty ? nil : $0 } ?? "7D"
        guard let unit = maxAge.last, "YMDhms".contains(unit), let number = Int(maxAge.dropLast()), number > 0 else {
            throw ValidationError("C2D_EVENTS_MAX_AGE must be a positive number followed by Y, M, D, h, m or s")
        }
        return MessagingSettings(
            deliveryLimit: deliveryLimit,
            poisonAttempts: try integer("C2D_POISON_ATTEMPTS", default: deliveryLimit, range: 1...1000),
            eventsMaxAge: maxAge)
    }

    /// The event relay and the poison handler, for the scheduler role.
    func schedulerServices(store: PostgresJobStore, amqp: AMQPClient, logger: Logger) -> [any Service] {
        [
            EventRelay(store: store, amqp: amqp, logger: logger),
            PoisonHandler(
                configuration: PoisonHandler.Configuration(minimumAttempts: poisonAttempts), store: store, amqp: amqp,
                logger: logger),
        ]
    }
}

extension AMQPTopology {
    /// The event path (docs/architecture.md, "Messages and events"): topic exchange `c2d.events` and the stream `c2d.events.stream` bound with `#`,
    /// which keeps every event for `maxAge` so `c2d tail --from` can replay.
    static func events(maxAge: String) -> AMQPTopology {
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
    func adding(_ other: AMQPTopology) -> AMQPTopology {
        AMQPTopology(
            exchanges: exchanges + other.exchanges, queues: queues + other.queues, bindings: bindings + other.bindings)
    }
}
