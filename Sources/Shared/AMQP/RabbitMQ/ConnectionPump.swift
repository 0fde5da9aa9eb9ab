import CRabbitMQ
import Foundation
import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension RabbitMQConnection {
    /// Connects, logs in, declares `topology` and puts the publishing channel in confirm mode, all on a new dedicated
    /// thread that then owns the connection until it closes. Throws what went wrong (the thread is gone by then).
    static func open(
        id: Int,
        configuration: AMQPConfiguration,
        endpoint: AMQPEndpoint,
        topology: AMQPTopology,
        logger: Logger
    ) async throws -> RabbitMQConnection {
        let connection = try RabbitMQConnection(id: id)
        try await withCheckedThrowingContinuation { (opened: CheckedContinuation<Void, any Error>) in
            let thread = Thread {
                // Linux shows at most 15 characters of a thread's name.
                Thread.current.name = "amqp-conn-\(id)"
                ConnectionPump.main(
                    connection: connection,
                    configuration: configuration,
                    endpoint: endpoint,
                    topology: topology,
                    logger: logger,
                    opened: opened
                )
            }
            thread.start()
        }
        return connection
    }
}

/// A channel-level failure: the broker closed one channel (e.g. 404 on consume, 406 on declare); the connection and
/// the other channels go on.
private struct ChannelFailure: Error {
    var error: AMQPError
}

/// Everything that runs on a connection's owner thread; the `amqp_connection_state_t` never leaves it.
///
/// The thread runs a frame pump: execute queued commands, send publishes while the confirm window has room, read every
/// frame that is ready with `amqp_simple_wait_frame_noblock` and a zero timeout (acks, nacks, returns, deliveries,
/// closes), then sleep in `poll()` on the socket and the wake-up pipe for at most a fraction of the heartbeat interval,
/// so heartbeats are sent and checked (inside `amqp_simple_wait_frame_noblock`) even when idle. Synchronous methods
/// (declare, qos, consume…) use rabbitmq-c's RPC calls, which queue frames for other channels for the pump to read
/// next.
private final class ConnectionPump {
    /// What a delivered or returned message is while its header and body frames arrive.
    private struct IncomingContent {
        enum Kind {
            case delivery(deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
            case returned(replyCode: Int, replyText: String, exchange: String, routingKey: String)
        }

        var kind: Kind
        var properties = ReceivedProperties()
        var bodySize = 0
        var body: [UInt8] = []
    }

    private struct ConsumerSlot {
        var buffer: ConsumerBuffer
        /// Nil while paused: the channel stays open (its deliveries can still be settled) but consumes nothing.
        var consumerTag: String?
    }

    private let connection: RabbitMQConnection
    private let configuration: AMQPConfiguration
    private let endpoint: AMQPEndpoint
    private let logger: Logger
    private var state: amqp_connection_state_t?

    private var channelMax: UInt16 = 0
    private var nextChannel: UInt16 = 1
    /// Declarations and deletions.
    private var controlChannel: UInt16 = 0
    /// Confirm mode; every publish goes here.
    private var publishChannel: UInt16 = 0
    private var confirms = ConfirmTracker<PublishRequest>()
    /// Publishes taken from the mailbox that wait for room in the confirm window.
    private var waitingPublishes = CircularBuffer<PublishRequest>()
    private var consumers: [UInt16: ConsumerSlot] = [:]
    private var consumerChannels: [Int: UInt16] = [:]
    private var incoming: [UInt16: IncomingContent] = [:]
    /// Commands taken from the mailbox and not yet executed (failed on teardown if the connection dies meanwhile).
    private var commands = CircularBuffer<RabbitMQConnection.Command>()
    private var closeDeadline: ContinuousClock.Instant?
    private let pollInterval: Duration

    private init(
        connection: RabbitMQConnection, configuration: AMQPConfiguration, endpoint: AMQPEndpoint, logger: Logger
    ) {
        self.connection = connection
        self.configuration = configuration
        self.endpoint = endpoint
        self.logger = logger
        // Wake at least twice per heartbeat interval (rabbitmq-c only services heartbeats inside its calls), and at
        // least once a second so confirm deadlines are checked.
        let heartbeat = configuration.heartbeat > .zero ? configuration.heartbeat / 4 : .seconds(1)
        self.pollInterval = min(heartbeat, .seconds(1))
    }

    static func main(
        connection: RabbitMQConnection,
        configuration: AMQPConfiguration,
        endpoint: AMQPEndpoint,
        topology: AMQPTopology,
        logger: Logger,
        opened: CheckedContinuation<Void, any Error>
    ) {
        let pump = ConnectionPump(
            connection: connection, configuration: configuration, endpoint: endpoint, logger: logger)
        do {
            try pump.connect(topology: topology)
        } catch {
            let fallback = AMQPError(code: .protocolError, message: "\(error)")
            let reason = (error as? ChannelFailure)?.error ?? (error as? AMQPError) ?? fallback
            pump.teardown(reason: reason)
            opened.resume(throwing: reason)
            return
        }
        opened.resume()
        let reason = pump.run()
        pump.teardown(reason: reason)
    }

    // MARK: Connecting

    private func connect(topology: AMQPTopology) throws {
        guard let state = amqp_new_connection() else {
            throw AMQPError(code: .connectionFailed, message: "rabbitmq-c could not allocate a connection")
        }
        self.state = state
        guard let socket = amqp_tcp_socket_new(state) else {
            throw AMQPError(code: .connectionFailed, message: "rabbitmq-c could not create a socket")
        }
        var connectTimeout = timeval(configuration.connectTimeout)
        let openStatus = endpoint.host.withCString { host in
            amqp_socket_open_noblock(socket, host, Int32(endpoint.port), &connectTimeout)
        }
        guard openStatus == AMQPStatus.ok.rawValue else {
            throw AMQPError(
                code: .connectionFailed,
                message: "cannot connect to \(endpoint.host):\(endpoint.port): \(AMQPStatus(rawValue: openStatus))")
        }
        _ = amqp_set_handshake_timeout(state, &connectTimeout)
        var rpcTimeout = timeval(configuration.rpcTimeout)
        _ = amqp_set_rpc_timeout(state, &rpcTimeout)

        let heartbeatSeconds = Int32(clamping: configuration.heartbeat.components.seconds)
        let login = c2d_amqp_login_plain(
            state, endpoint.vhost, 0, Int32(AMQP_DEFAULT_FRAME_SIZE), heartbeatSeconds, endpoint.user,
            endpoint.password)
        try checkLogin(login)

        let negotiatedMax = amqp_get_channel_max(state)
        channelMax = negotiatedMax > 0 ? UInt16(clamping: negotiatedMax) : UInt16.max
        controlChannel = try openChannel()
        try declare(topology)
        try openPublishChannel()
    }

    private func checkLogin(_ reply: amqp_rpc_reply_t) throws {
        let account = "user '\(endpoint.user)' on vhost '\(endpoint.vhost)' at \(endpoint.host):\(endpoint.port)"
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let code = Int(close.reply_code)
            let text = String(amqpBytes: close.reply_text)
            sendConnectionCloseOK()
            // 403 ACCESS_REFUSED: bad credentials; 530 NOT_ALLOWED: no such vhost or no access to it.
            let refused = code == 403 || code == 530
            throw AMQPError(
                code: refused ? .authenticationFailed : .connectionFailed,
                message: "the broker refused the login of \(account): \(text)", replyCode: code)
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let status = AMQPStatus(rawValue: reply.library_error)
            // A broker that closes the socket during the handshake without a reason also means refused credentials.
            let closed = [AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_CLOSED.rawValue]
                .contains(reply.library_error)
            throw AMQPError(
                code: closed ? .authenticationFailed : .connectionFailed,
                message: "login of \(account) failed: \(status)")
        default:
            throw AMQPError(code: .connectionFailed, message: "login of \(account) failed: unexpected reply")
        }
    }

    // MARK: The pump

    /// Runs until the connection closes; returns why.
    private func run() -> AMQPError {
        do {
            while true {
                commands.append(contentsOf: connection.takeCommands())
                while let command = commands.popFirst() {
                    try execute(command)
                }
                try sendWaitingPublishes()
                let idle = try readFrames(limit: 512)
                for request in confirms.expire(now: .now) {
                    request.complete(
                        AMQPError(
                            code: .timeout,
                            message: "no publisher confirm within \(configuration.rpcTimeout) for a message to "
                                + "exchange '\(request.exchange)' with routing key '\(request.routingKey)'"))
                }
                if let state {
                    amqp_maybe_release_buffers(state)
                }
                if let closeDeadline,
                    (confirms.inFlight == 0 && waitingPublishes.isEmpty) || ContinuousClock.now >= closeDeadline
                {
                    return closeCleanly()
                }
                // Confirms just read may have made room for waiting publishes: send them before sleeping, or a
                // batch larger than the window would wait a whole poll interval (up to 1 s) per window.
                let canSend = !waitingPublishes.isEmpty && confirms.inFlight < configuration.confirmWindow
                if idle && !canSend {
                    try waitForActivity()
                }
            }
        } catch let failure as ChannelFailure {
            return failure.error
        } catch let error as AMQPError {
            return error
        } catch {
            return AMQPError(code: .protocolError, message: "\(error)")
        }
    }

    /// Sleeps until the socket or the wake-up pipe is readable, or the poll interval passes.
    private func waitForActivity() throws {
        guard let state else { return }
        if amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 { return }
        var fds = [
            pollfd(fd: amqp_get_sockfd(state), events: Int16(POLLIN), revents: 0),
            pollfd(fd: connection.wakeReadFD, events: Int16(POLLIN), revents: 0),
        ]
        let milliseconds = Int32(
            pollInterval.components.seconds * 1000 + pollInterval.components.attoseconds / 1_000_000_000_000_000)
        let result = poll(&fds, nfds_t(fds.count), milliseconds)
        if result < 0 && errno != EINTR {
            throw AMQPError(code: .connectionClosed, message: "poll() failed (errno \(errno))")
        }
    }

    /// Reads the frames that are ready. Returns true when none is left, false when it stopped at `limit` so that
    /// queued commands get their turn.
    private func readFrames(limit: Int) throws -> Bool {
        guard let state else { return true }
        var frame = amqp_frame_t()
        var noWait = timeval(tv_sec: 0, tv_usec: 0)
        for _ in 0..<limit {
            let status = amqp_simple_wait_frame_noblock(state, &frame, &noWait)
            if status == AMQPStatus.timeout.rawValue { return true }
            guard status == AMQPStatus.ok.rawValue else {
                let what =
                    status == AMQPStatus.heartbeatTimeout.rawValue
                    ? "missed heartbeats from the broker" : "\(AMQPStatus(rawValue: status))"
                throw AMQPError(code: .connectionClosed, message: "connection lost: \(what)")
            }
            try handle(frame)
        }
        return false
    }

    private func handle(_ frame: amqp_frame_t) throws {
        let channel = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            try handleMethod(frame.payload.method, channel: channel)
        case AMQP_FRAME_HEADER:
            guard var content = incoming[channel] else { return }
            let properties = frame.payload.properties.decoded.assumingMemoryBound(to: amqp_basic_properties_t.self)
            content.properties = ReceivedProperties(properties.pointee)
            content.bodySize = Int(frame.payload.properties.body_size)
            content.body.reserveCapacity(content.bodySize)
            try received(content, channel: channel)
        case AMQP_FRAME_BODY:
            guard var content = incoming[channel] else { return }
            content.body.append(contentsOf: [UInt8](amqpBytes: frame.payload.body_fragment))
            try received(content, channel: channel)
        default:
            break  // heartbeats are handled inside rabbitmq-c
        }
    }

    /// Stores partial content, or hands it on once the body is complete.
    private func received(_ content: IncomingContent, channel: UInt16) throws {
        guard content.body.count >= content.bodySize else {
            incoming[channel] = content
            return
        }
        incoming[channel] = nil
        let message = AMQPMessage(
            body: content.body,
            headers: content.properties.headers,
            contentType: content.properties.contentType,
            messageID: content.properties.messageID,
            persistent: content.properties.persistent
        )
        switch content.kind {
        case .delivery(let deliveryTag, let redelivered, let exchange, let routingKey):
            // A consumer cancelled meanwhile: the broker requeues the message when its channel closes.
            guard let slot = consumers[channel] else { return }
            let delivery = AMQPDelivery(
                message: message, exchange: exchange, routingKey: routingKey, redelivered: redelivered,
                deliveryCount: content.properties.deliveryCount, settler: connection, channel: channel,
                deliveryTag: deliveryTag)
            slot.buffer.push(delivery, connectionID: connection.id)
        case .returned(let replyCode, let replyText, let exchange, let routingKey):
            guard channel == publishChannel else { return }
            let matched = confirms.markReturned { request in
                request.exchange == exchange && request.routingKey == routingKey && request.message.body == message.body
            }
            if !matched {
                logger.debug(
                    "basic.return for an unknown publish",
                    metadata: ["amqp.exchange": "\(exchange)", "amqp.reply": "\(replyCode) \(replyText)"])
            }
        }
    }

    private func handleMethod(_ method: amqp_method_t, channel: UInt16) throws {
        switch method.id {
        case AMQP_BASIC_DELIVER_METHOD:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            incoming[channel] = IncomingContent(
                kind: .delivery(
                    deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0,
                    exchange: String(amqpBytes: deliver.exchange), routingKey: String(amqpBytes: deliver.routing_key)))
        case AMQP_BASIC_RETURN_METHOD:
            let returned = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            incoming[channel] = IncomingContent(
                kind: .returned(
                    replyCode: Int(returned.reply_code), replyText: String(amqpBytes: returned.reply_text),
                    exchange: String(amqpBytes: returned.exchange), routingKey: String(amqpBytes: returned.routing_key))
            )
        case AMQP_BASIC_ACK_METHOD where channel == publishChannel:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            for settled in confirms.settle(tag: ack.delivery_tag, multiple: ack.multiple != 0) {
                let request = settled.payload
                request.complete(
                    settled.returned
                        ? AMQPError(
                            code: .unroutable,
                            message: "no queue is bound to exchange '\(request.exchange)' for routing key "
                                + "'\(request.routingKey)' (312 NO_ROUTE)", replyCode: 312)
                        : nil)
            }
        case AMQP_BASIC_NACK_METHOD where channel == publishChannel:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            for settled in confirms.settle(tag: nack.delivery_tag, multiple: nack.multiple != 0) {
                let request = settled.payload
                request.complete(
                    AMQPError(
                        code: .nacked,
                        message: "the broker nacked the message to exchange '\(request.exchange)' with routing key "
                            + "'\(request.routingKey)'"))
            }
        case AMQP_BASIC_CANCEL_METHOD:
            // The broker cancelled a consumer (its queue was deleted): consume again on a fresh channel, which
            // reports 404 to the consumer if the queue is really gone.
            guard let slot = consumers.removeValue(forKey: channel) else { return }
            consumerChannels[slot.buffer.id] = nil
            logger.info("the broker cancelled a consumer", metadata: ["amqp.queue": "\(slot.buffer.queue)"])
            closeChannelQuietly(channel)
            slot.buffer.dropDeliveries(connectionID: connection.id, channel: channel)
            try startConsumer(slot.buffer)
        case AMQP_CHANNEL_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            sendChannelCloseOK(channel)
            try channelClosed(
                channel,
                error: AMQPError(
                    code: .channelClosed,
                    message: "the broker closed the channel: \(String(amqpBytes: close.reply_text))",
                    replyCode: Int(close.reply_code)))
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            sendConnectionCloseOK()
            throw AMQPError(
                code: .connectionClosed,
                message: "the broker closed the connection: \(String(amqpBytes: close.reply_text))",
                replyCode: Int(close.reply_code))
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            logger.info(
                "the broker blocked publishing on this connection",
                metadata: ["amqp.reason": "\(String(amqpBytes: blocked.reason))"])
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            logger.info("the broker unblocked publishing on this connection")
        default:
            logger.debug("ignored AMQP method \(method.id) on channel \(channel)")
        }
    }

    /// The broker closed `channel` (close-ok already sent): fail what depended on it and open a replacement.
    private func channelClosed(_ channel: UInt16, error: AMQPError) throws {
        incoming[channel] = nil
        if channel == publishChannel {
            logger.info("the broker closed the publishing channel", metadata: ["amqp.error": "\(error)"])
            let failed = confirms.removeAll()
            for request in failed {
                request.complete(
                    error.prefixed("publishing to exchange '\(request.exchange)' with key '\(request.routingKey)'"))
            }
            try openPublishChannel()
        } else if let slot = consumers.removeValue(forKey: channel) {
            consumerChannels[slot.buffer.id] = nil
            logger.info(
                "the broker closed a consumer's channel; consuming again",
                metadata: ["amqp.queue": "\(slot.buffer.queue)", "amqp.error": "\(error)"])
            slot.buffer.dropDeliveries(connectionID: connection.id, channel: channel)
            try startConsumer(slot.buffer)
        } else if channel == controlChannel {
            controlChannel = try openChannel()
        }
    }

    // MARK: Commands

    private func execute(_ command: RabbitMQConnection.Command) throws {
        switch command {
        case .publish(let requests):
            for request in requests {
                if closeDeadline != nil {
                    request.complete(AMQPError(code: .notConnected, message: "not sent, the client is shutting down"))
                } else {
                    waitingPublishes.append(request)
                }
            }
        case .settle(let channel, let deliveryTag, let settlement):
            try settle(channel: channel, deliveryTag: deliveryTag, as: settlement)
        case .declare(let topology, let continuation):
            try control(continuation) { try self.declare(topology) }
        case .deleteQueue(let name, let continuation):
            try control(continuation) {
                try self.rpc(self.controlChannel, "deleting queue '\(name)'") { state, channel in
                    withAMQPBytes([name]) { amqp_queue_delete(state, channel, $0[0], 0, 0) != nil }
                }
            }
        case .deleteExchange(let name, let continuation):
            try control(continuation) {
                try self.rpc(self.controlChannel, "deleting exchange '\(name)'") { state, channel in
                    withAMQPBytes([name]) { amqp_exchange_delete(state, channel, $0[0], 0) != nil }
                }
            }
        case .inspectQueue(let name, let continuation):
            var status = AMQPQueueStatus(messages: 0, consumers: 0)
            do {
                try rpc(controlChannel, "inspecting queue '\(name)'") { state, channel in
                    withAMQPBytes([name]) { bytes in
                        guard let ok = amqp_queue_declare(state, channel, bytes[0], 1, 0, 0, 0, amqp_empty_table)
                        else { return false }
                        status = AMQPQueueStatus(
                            messages: Int(ok.pointee.message_count), consumers: Int(ok.pointee.consumer_count))
                        return true
                    }
                }
                continuation.resume(returning: status)
            } catch let failure as ChannelFailure {
                continuation.resume(throwing: failure.error)
                controlChannel = try openChannel()
            } catch {
                continuation.resume(throwing: error)
                throw error
            }
        case .startConsumer(let buffer):
            try startConsumer(buffer)
        case .cancelConsumer(let id):
            guard let channel = consumerChannels.removeValue(forKey: id),
                let slot = consumers.removeValue(forKey: channel)
            else { return }
            do {
                if let consumerTag = slot.consumerTag {
                    try rpc(channel, "cancelling the consumer on queue '\(slot.buffer.queue)'") { state, channel in
                        withAMQPBytes([consumerTag]) { amqp_basic_cancel(state, channel, $0[0]) != nil }
                    }
                }
                closeChannelQuietly(channel)
            } catch is ChannelFailure {
                // The channel is gone already; nothing left to cancel.
            }
        case .updateConsumer(let id):
            guard let channel = consumerChannels[id], let slot = consumers[channel] else { return }
            do {
                try applyPause(slot, channel: channel)
            } catch let failure as ChannelFailure {
                // The broker closed the channel (e.g. the queue is gone): start over on a fresh one.
                consumers[channel] = nil
                consumerChannels[id] = nil
                slot.buffer.dropDeliveries(connectionID: connection.id, channel: channel)
                logger.info("pausing or resuming a consumer failed", metadata: ["amqp.error": "\(failure.error)"])
                try startConsumer(slot.buffer)
            }
        case .close:
            if closeDeadline == nil {
                closeDeadline = .now + configuration.rpcTimeout
            }
        }
    }

    /// Runs a declaration or deletion on the control channel and reports to the caller; a channel-level failure
    /// (e.g. 406) goes to the caller only, and the control channel is reopened.
    private func control(_ continuation: CheckedContinuation<Void, any Error>, _ body: () throws -> Void) throws {
        do {
            try body()
            continuation.resume()
        } catch let failure as ChannelFailure {
            continuation.resume(throwing: failure.error)
            controlChannel = try openChannel()
        } catch {
            continuation.resume(throwing: error)
            throw error
        }
    }

    /// Sends a settlement the consumer queued. One for a channel that is gone is dropped: the broker requeued the
    /// message when the channel closed.
    private func settle(channel: UInt16, deliveryTag: UInt64, as settlement: Settlement) throws {
        guard let state, consumers[channel] != nil else {
            logger.debug(
                "settlement for a closed channel dropped; the broker redelivers the message",
                metadata: ["amqp.channel": "\(channel)"])
            return
        }
        let status: Int32
        switch settlement {
        case .ack:
            status = amqp_basic_ack(state, channel, deliveryTag, 0)
        case .nack(let requeue):
            status = amqp_basic_nack(state, channel, deliveryTag, 0, requeue ? 1 : 0)
        case .reject(let requeue):
            status = amqp_basic_reject(state, channel, deliveryTag, requeue ? 1 : 0)
        }
        guard status == AMQPStatus.ok.rawValue else {
            throw AMQPError(
                code: .connectionClosed, message: "connection lost while settling: \(AMQPStatus(rawValue: status))")
        }
    }

    // MARK: Publishing

    private func openPublishChannel() throws {
        publishChannel = try openChannel()
        try rpc(publishChannel, "enabling publisher confirms") { state, channel in
            amqp_confirm_select(state, channel) != nil
        }
    }

    private func sendWaitingPublishes() throws {
        while confirms.inFlight < configuration.confirmWindow, let request = waitingPublishes.popFirst() {
            try send(request)
        }
    }

    private func send(_ request: PublishRequest) throws {
        guard let state else { return }
        let message = request.message
        let headers = message.headers.sorted { $0.key < $1.key }
        var strings = [request.exchange, request.routingKey, message.contentType ?? "", message.messageID ?? ""]
        strings.reserveCapacity(4 + headers.count * 2)
        for (key, value) in headers {
            strings.append(key)
            strings.append(value)
        }
        let channel = publishChannel
        let status = withAMQPBytes(strings) { bytes -> Int32 in
            var entries = headers.indices.map { index in
                var entry = amqp_table_entry_t()
                entry.key = bytes[4 + 2 * index]
                entry.value.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
                entry.value.value.bytes = bytes[5 + 2 * index]
                return entry
            }
            return entries.withUnsafeMutableBufferPointer { entries in
                var properties = amqp_basic_properties_t()
                var flags = AMQP_BASIC_DELIVERY_MODE_FLAG
                properties.delivery_mode = UInt8(
                    message.persistent ? AMQP_DELIVERY_PERSISTENT.rawValue : AMQP_DELIVERY_NONPERSISTENT.rawValue)
                if message.contentType != nil {
                    flags |= AMQP_BASIC_CONTENT_TYPE_FLAG
                    properties.content_type = bytes[2]
                }
                if message.messageID != nil {
                    flags |= AMQP_BASIC_MESSAGE_ID_FLAG
                    properties.message_id = bytes[3]
                }
                if !entries.isEmpty {
                    flags |= AMQP_BASIC_HEADERS_FLAG
                    properties.headers = amqp_table_t(num_entries: Int32(entries.count), entries: entries.baseAddress)
                }
                properties._flags = amqp_flags_t(flags)
                return message.body.withUnsafeBytes { body in
                    amqp_basic_publish(
                        state, channel, bytes[0], bytes[1], request.mandatory ? 1 : 0, 0, &properties,
                        amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
                }
            }
        }
        guard status == AMQPStatus.ok.rawValue else {
            let error = AMQPError(
                code: .connectionClosed, message: "connection lost while publishing: \(AMQPStatus(rawValue: status))")
            request.complete(error)
            throw error
        }
        confirms.append(request, deadline: .now + configuration.rpcTimeout)
    }

    // MARK: Consumers

    private func startConsumer(_ buffer: ConsumerBuffer) throws {
        guard !buffer.isFinished, consumerChannels[buffer.id] == nil else { return }
        do {
            let channel = try openChannel()
            consumers[channel] = ConsumerSlot(buffer: buffer, consumerTag: nil)
            consumerChannels[buffer.id] = channel
            try applyPause(consumers[channel]!, channel: channel)
            if buffer.isFinished {  // cancelled while we were subscribing
                try execute(.cancelConsumer(id: buffer.id))
            }
        } catch let failure as ChannelFailure {
            logger.info("the broker refused a consumer", metadata: ["amqp.error": "\(failure.error)"])
            if let channel = consumerChannels.removeValue(forKey: buffer.id) { consumers[channel] = nil }
            buffer.finish(throwing: failure.error)
        }
    }

    /// Makes the channel's subscription match what the consumer asks for: `basic.cancel` to pause (the channel stays
    /// open, so deliveries sent before the broker processed the cancel still arrive and can be settled), `basic.qos`
    /// with the current prefetch and `basic.consume` to resume.
    private func applyPause(_ slot: ConsumerSlot, channel: UInt16) throws {
        let buffer = slot.buffer
        let wanted = buffer.subscription
        if wanted.paused, let consumerTag = slot.consumerTag {
            try rpc(channel, "pausing the consumer on queue '\(buffer.queue)'") { state, channel in
                withAMQPBytes([consumerTag]) { amqp_basic_cancel(state, channel, $0[0]) != nil }
            }
            consumers[channel]?.consumerTag = nil
            logger.debug("paused", metadata: ["amqp.queue": "\(buffer.queue)", "amqp.channel": "\(channel)"])
        } else if !wanted.paused, slot.consumerTag == nil {
            try rpc(channel, "setting prefetch \(wanted.prefetch) for queue '\(buffer.queue)'") { state, channel in
                amqp_basic_qos(state, channel, 0, UInt16(clamping: wanted.prefetch), 0) != nil
            }
            var consumerTag = ""
            try rpc(channel, "consuming from queue '\(buffer.queue)'") { state, channel in
                withAMQPBytes([buffer.queue]) { bytes in
                    withAMQPTable(buffer.arguments) { arguments in
                        guard
                            let ok = amqp_basic_consume(state, channel, bytes[0], amqp_empty_bytes, 0, 0, 0, arguments)
                        else { return false }
                        consumerTag = String(amqpBytes: ok.pointee.consumer_tag)
                        return true
                    }
                }
            }
            consumers[channel]?.consumerTag = consumerTag
            logger.debug("consuming", metadata: ["amqp.queue": "\(buffer.queue)", "amqp.channel": "\(channel)"])
        }
    }

    // MARK: Channels and RPC

    private func openChannel() throws -> UInt16 {
        guard nextChannel <= channelMax, nextChannel < UInt16.max else {
            throw AMQPError(
                code: .connectionClosed, message: "channel numbers exhausted on this connection; reconnecting")
        }
        let channel = nextChannel
        nextChannel += 1
        try rpc(channel, "opening channel \(channel)") { state, channel in amqp_channel_open(state, channel) != nil }
        return channel
    }

    /// Runs a synchronous method; `call` returns false when rabbitmq-c returned NULL, and the reason is then in
    /// `amqp_get_rpc_reply`. A 406 from a `declaration` becomes `.declarationConflict`.
    private func rpc(
        _ channel: UInt16,
        _ what: @autoclosure () -> String,
        declaration: Bool = false,
        _ call: (amqp_connection_state_t, UInt16) -> Bool
    ) throws {
        guard let state else { throw AMQPError(code: .notConnected, message: "\(what()): not connected") }
        if call(state, channel) { return }
        let reply = amqp_get_rpc_reply(state)
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD:
            let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let code = Int(close.reply_code)
            sendChannelCloseOK(channel)
            incoming[channel] = nil
            throw ChannelFailure(
                error: AMQPError(
                    code: declaration && code == 406 ? .declarationConflict : .channelClosed,
                    message: "\(what()): \(String(amqpBytes: close.reply_text))", replyCode: code))
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            sendConnectionCloseOK()
            throw AMQPError(
                code: .connectionClosed,
                message: "\(what()): the broker closed the connection: \(String(amqpBytes: close.reply_text))",
                replyCode: Int(close.reply_code))
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let status = AMQPStatus(rawValue: reply.library_error)
            // rabbitmq-c gives up on the connection after an RPC timeout.
            throw AMQPError(code: status == .timeout ? .timeout : .connectionClosed, message: "\(what()): \(status)")
        default:
            throw AMQPError(code: .protocolError, message: "\(what()): unexpected reply from rabbitmq-c")
        }
    }

    /// Declares exchanges, then queues, then bindings, on the control channel.
    private func declare(_ topology: AMQPTopology) throws {
        for exchange in topology.exchanges {
            try rpc(controlChannel, "declaring exchange '\(exchange.name)' (\(exchange.type))", declaration: true) {
                state, channel in
                withAMQPBytes([exchange.name, exchange.type]) { bytes in
                    amqp_exchange_declare(
                        state, channel, bytes[0], bytes[1], 0, exchange.durable ? 1 : 0, 0, 0, amqp_empty_table) != nil
                }
            }
        }
        for queue in topology.queues {
            try rpc(controlChannel, "declaring queue '\(queue.name)'", declaration: true) { state, channel in
                withAMQPBytes([queue.name]) { bytes in
                    withAMQPTable(queue.arguments) { arguments in
                        amqp_queue_declare(state, channel, bytes[0], 0, queue.durable ? 1 : 0, 0, 0, arguments) != nil
                    }
                }
            }
        }
        for binding in topology.bindings {
            let what =
                "binding queue '\(binding.queue)' to exchange '\(binding.exchange)' with key '\(binding.routingKey)'"
            try rpc(controlChannel, what) { state, channel in
                withAMQPBytes([binding.queue, binding.exchange, binding.routingKey]) { bytes in
                    amqp_queue_bind(state, channel, bytes[0], bytes[1], bytes[2], amqp_empty_table) != nil
                }
            }
        }
    }

    private func sendChannelCloseOK(_ channel: UInt16) {
        guard let state else { return }
        var ok = amqp_channel_close_ok_t()
        _ = amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
    }

    private func sendConnectionCloseOK() {
        guard let state else { return }
        var ok = amqp_connection_close_ok_t()
        _ = amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
    }

    /// Closes a channel we are done with; a failure here only matters if the connection is dead, which the next read
    /// notices.
    private func closeChannelQuietly(_ channel: UInt16) {
        guard let state else { return }
        let reply = amqp_channel_close(state, channel, Int32(AMQP_REPLY_SUCCESS))
        if reply.reply_type != AMQP_RESPONSE_NORMAL {
            logger.debug("closing channel \(channel) failed")
        }
    }

    // MARK: Closing

    /// connection.close with 200, after outstanding confirms arrived or the close deadline passed.
    private func closeCleanly() -> AMQPError {
        if let state {
            let reply = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
            if reply.reply_type != AMQP_RESPONSE_NORMAL {
                logger.debug("connection.close did not complete cleanly")
            }
        }
        return AMQPError(code: .connectionClosed, message: "the client closed the connection", replyCode: 200)
    }

    /// Fails everything still pending, frees the rabbitmq-c state (which closes the socket), and marks the
    /// connection closed so later commands fail at once.
    private func teardown(reason: AMQPError) {
        let lost = AMQPError(code: .connectionClosed, message: reason.message, replyCode: reason.replyCode)
        for request in confirms.removeAll() {
            request.complete(lost.prefixed("no confirm for the message to exchange '\(request.exchange)'"))
        }
        let leftover = connection.markClosed(reason: reason)
        commands.append(contentsOf: leftover)
        while let command = commands.popFirst() {
            switch command {
            case .publish(let requests):
                for request in requests { request.complete(RabbitMQConnection.notSent(reason)) }
            case .settle:
                break  // the broker requeues what the lost connection had not settled
            case .declare(_, let continuation), .deleteQueue(_, let continuation),
                .deleteExchange(_, let continuation):
                continuation.resume(throwing: RabbitMQConnection.notSent(reason))
            case .inspectQueue(_, let continuation):
                continuation.resume(throwing: RabbitMQConnection.notSent(reason))
            case .startConsumer, .cancelConsumer, .updateConsumer, .close:
                break  // consumers are started again on the next connection by the client
            }
        }
        while let request = waitingPublishes.popFirst() {
            request.complete(RabbitMQConnection.notSent(reason))
        }
        for slot in consumers.values {
            slot.buffer.dropDeliveries(connectionID: connection.id)
        }
        consumers.removeAll()
        consumerChannels.removeAll()
        if let state {
            amqp_destroy_connection(state)
            self.state = nil
        }
    }
}

extension timeval {
    fileprivate init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: .init(attoseconds / 1_000_000_000_000))
    }
}
