import Foundation

/// A value in a queue's or exchange's declaration arguments, or in a consumer's arguments.
package enum AMQPArgument: Sendable, Hashable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    /// An AMQP timestamp (whole seconds since 1970), e.g. a stream consumer's `x-stream-offset`.
    case timestamp(Date)
}

/// What a passive `queue.declare` reports about an existing queue.
package struct AMQPQueueStatus: Sendable, Hashable {
    /// Messages ready for delivery (not counting those delivered and not yet acknowledged).
    package var messages: Int
    package var consumers: Int

    package init(messages: Int, consumers: Int) {
        self.messages = messages
        self.consumers = consumers
    }
}

/// A queue declaration.
package struct AMQPQueue: Sendable, Hashable {
    package var name: String
    package var durable: Bool
    package var arguments: [String: AMQPArgument]

    package init(name: String, durable: Bool = true, arguments: [String: AMQPArgument] = [:]) {
        self.name = name
        self.durable = durable
        self.arguments = arguments
    }

    /// A durable quorum queue. `deliveryLimit` sets `x-delivery-limit` (how many times a message may be returned to the
    /// queue before it is dead-lettered or dropped; unlimited when nil on RabbitMQ 3.10). With a dead-letter exchange,
    /// dead-lettering is at-least-once, which RabbitMQ only allows together with `x-overflow: reject-publish`.
    package static func quorum(
        _ name: String,
        deliveryLimit: Int? = nil,
        deadLetterExchange: String? = nil,
        deadLetterRoutingKey: String? = nil
    ) -> AMQPQueue {
        var arguments: [String: AMQPArgument] = ["x-queue-type": .string("quorum")]
        if let deliveryLimit { arguments["x-delivery-limit"] = .int(Int64(deliveryLimit)) }
        if let deadLetterExchange {
            arguments["x-dead-letter-exchange"] = .string(deadLetterExchange)
            arguments["x-dead-letter-strategy"] = .string("at-least-once")
            arguments["x-overflow"] = .string("reject-publish")
        }
        if let deadLetterRoutingKey { arguments["x-dead-letter-routing-key"] = .string(deadLetterRoutingKey) }
        return AMQPQueue(name: name, durable: true, arguments: arguments)
    }
}

/// An exchange declaration.
package struct AMQPExchange: Sendable, Hashable {
    package var name: String
    /// `direct`, `topic`, `fanout` or `headers`.
    package var type: String
    package var durable: Bool

    package init(name: String, type: String, durable: Bool = true) {
        self.name = name
        self.type = type
        self.durable = durable
    }
}

/// A binding of a queue to an exchange.
package struct AMQPBinding: Sendable, Hashable {
    package var queue: String
    package var exchange: String
    package var routingKey: String

    package init(queue: String, exchange: String, routingKey: String) {
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
    }
}

/// What the client declares, in order exchanges → queues → bindings, on every (re)connect. Declarations are idempotent
/// as long as they match what exists; a mismatch fails with `.declarationConflict`.
package struct AMQPTopology: Sendable, Hashable {
    package var exchanges: [AMQPExchange]
    package var queues: [AMQPQueue]
    package var bindings: [AMQPBinding]

    package init(exchanges: [AMQPExchange] = [], queues: [AMQPQueue] = [], bindings: [AMQPBinding] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }

    package var isEmpty: Bool { exchanges.isEmpty && queues.isEmpty && bindings.isEmpty }

    /// Adds what `other` declares, replacing same-named exchanges and queues and skipping duplicate bindings.
    mutating func merge(_ other: AMQPTopology) {
        for exchange in other.exchanges {
            exchanges.removeAll { $0.name == exchange.name }
            exchanges.append(exchange)
        }
        for queue in other.queues {
            queues.removeAll { $0.name == queue.name }
            queues.append(queue)
        }
        for binding in other.bindings where !bindings.contains(binding) {
            bindings.append(binding)
        }
    }

    mutating func removeQueue(named name: String) {
        queues.removeAll { $0.name == name }
        bindings.removeAll { $0.queue == name }
    }

    mutating func removeExchange(named name: String) {
        exchanges.removeAll { $0.name == name }
        bindings.removeAll { $0.exchange == name }
    }
}
