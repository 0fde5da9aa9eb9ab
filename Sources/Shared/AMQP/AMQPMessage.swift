/// A message to publish, or the content of one received.
package struct AMQPMessage: Sendable, Hashable {
    package var body: [UInt8]
    /// Application headers. String values suffice for what we carry (job id, attempt, request id, `traceparent`);
    /// received numeric or boolean headers are rendered as text.
    package var headers: [String: String]
    /// MIME type of the body, e.g. `application/json`.
    package var contentType: String?
    package var messageID: String?
    /// Delivery mode 2 (written to disk by classic queues) when true, which is the default; quorum queues persist
    /// everything anyway.
    package var persistent: Bool

    package init(
        body: [UInt8],
        headers: [String: String] = [:],
        contentType: String? = nil,
        messageID: String? = nil,
        persistent: Bool = true
    ) {
        self.body = body
        self.headers = headers
        self.contentType = contentType
        self.messageID = messageID
        self.persistent = persistent
    }
}

/// A message received by an ``AMQPConsumer``, to be settled exactly once with ``ack()``, ``nack(requeue:)`` or
/// ``reject(requeue:)``. A settlement for a connection or channel that was lost is dropped (the broker redelivers the
/// message anyway); it throws only when it cannot be handed to the connection's thread at all.
///
/// A settlement returns once it is queued for the connection's thread, without waiting for it to be written: the
/// thread sends it in order with everything else on the channel. If the connection breaks before it is written, the
/// broker redelivers the message, as it would for a consumer that died before settling; consumers must tolerate
/// redeliveries in any case (a worker's claim drops a message for a job it already runs or that has finished).
/// Waiting for each write cost two thread hand-offs per message and held consumption at 0.4 of a raw loop's rate
/// (docs/operations.md, "AMQP").
package struct AMQPDelivery: Sendable {
    package var message: AMQPMessage
    package var exchange: String
    package var routingKey: String
    /// The broker delivered this message before (to this or another consumer) without it being acked.
    package var redelivered: Bool
    /// The quorum queue's `x-delivery-count` header: how many times the message was returned to the queue before this
    /// delivery. Nil on the first delivery and on classic queues.
    package var deliveryCount: Int?

    let settler: any DeliverySettler
    let channel: UInt16
    let deliveryTag: UInt64

    init(
        message: AMQPMessage,
        exchange: String,
        routingKey: String,
        redelivered: Bool,
        deliveryCount: Int?,
        settler: any DeliverySettler,
        channel: UInt16,
        deliveryTag: UInt64
    ) {
        self.message = message
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.deliveryCount = deliveryCount
        self.settler = settler
        self.channel = channel
        self.deliveryTag = deliveryTag
    }

    /// The message was handled: the broker forgets it.
    package func ack() async throws {
        try settler.settle(channel: channel, deliveryTag: deliveryTag, as: .ack)
    }

    /// The message was not handled: back to the queue when `requeue` (a quorum queue counts this towards
    /// `x-delivery-limit`), otherwise dropped or dead-lettered.
    package func nack(requeue: Bool) async throws {
        try settler.settle(channel: channel, deliveryTag: deliveryTag, as: .nack(requeue: requeue))
    }

    /// Same effect as ``nack(requeue:)`` for a single message (basic.reject).
    package func reject(requeue: Bool) async throws {
        try settler.settle(channel: channel, deliveryTag: deliveryTag, as: .reject(requeue: requeue))
    }
}

/// How a delivery is settled.
enum Settlement: Sendable, Hashable {
    case ack
    case nack(requeue: Bool)
    case reject(requeue: Bool)
}

/// What a delivery calls back into to settle itself: the connection that delivered it.
protocol DeliverySettler: Sendable {
    /// Queues the settlement; throws when the connection is already closed.
    func settle(channel: UInt16, deliveryTag: UInt64, as settlement: Settlement) throws(AMQPError)
}
