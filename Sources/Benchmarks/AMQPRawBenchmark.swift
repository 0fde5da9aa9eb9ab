import AMQP
import CRabbitMQ
import Foundation

/// The baseline for `c2d bench amqp`: the same work as the client does, as a minimal blocking rabbitmq-c loop on the
/// calling thread, with none of the client's machinery (mailbox, owner thread, continuations). Imports CRabbitMQ
/// itself, the one module besides AMQP that does: measuring the C library without our client is its purpose. Not for
/// production use: no timeouts, no reconnects.
package enum AMQPRawBenchmark {
    /// Publishes `count` persistent messages of `bodySize` bytes to `queue` (default exchange) with publisher confirms,
    /// keeping at most `window` unconfirmed; returns messages per second.
    package static func publish(url: String, queue: String, count: Int, window: Int, bodySize: Int) throws -> Double {
        let state = try connect(url: url)
        defer { close(state) }
        guard amqp_confirm_select(state, 1) != nil else { throw failure("confirm.select") }
        let body = [UInt8](repeating: 0x61, count: bodySize)
        var properties = amqp_basic_properties_t()
        properties._flags = amqp_flags_t(AMQP_BASIC_DELIVERY_MODE_FLAG)
        properties.delivery_mode = UInt8(AMQP_DELIVERY_PERSISTENT.rawValue)
        var sent: UInt64 = 0
        var confirmed: UInt64 = 0
        let started = ContinuousClock.now
        try withAMQPBytes([queue]) { names in
            try body.withUnsafeBytes { raw in
                let bytes = amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress))
                while confirmed < UInt64(count) {
                    while sent < UInt64(count) && sent - confirmed < UInt64(window) {
                        guard amqp_basic_publish(state, 1, amqp_empty_bytes, names[0], 0, 0, &properties, bytes) == 0
                        else { throw failure("basic.publish") }
                        sent += 1
                    }
                    var frame = amqp_frame_t()
                    guard amqp_simple_wait_frame(state, &frame) == 0 else { throw failure("waiting for a confirm") }
                    guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { continue }
                    guard frame.payload.method.id == AMQP_BASIC_ACK_METHOD else {
                        throw failure("unexpected method \(frame.payload.method.id)")
                    }
                    let ack = frame.payload.method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
                    confirmed = ack.multiple != 0 ? ack.delivery_tag : confirmed + 1
                    amqp_maybe_release_buffers(state)
                }
            }
        }
        return Double(count) / (ContinuousClock.now - started).seconds
    }

    /// Consumes `count` messages from `queue` with `prefetch`, acking each; returns messages per second.
    package static func consume(url: String, queue: String, count: Int, prefetch: Int) throws -> Double {
        let state = try connect(url: url)
        defer { close(state) }
        guard amqp_basic_qos(state, 1, 0, UInt16(clamping: prefetch), 0) != nil else { throw failure("basic.qos") }
        try withAMQPBytes([queue]) { names in
            guard amqp_basic_consume(state, 1, names[0], amqp_empty_bytes, 0, 0, 0, amqp_empty_table) != nil else {
                throw failure("basic.consume")
            }
        }
        let started = ContinuousClock.now
        var received = 0
        while received < count {
            amqp_maybe_release_buffers(state)
            var envelope = amqp_envelope_t()
            let reply = amqp_consume_message(state, &envelope, nil, 0)
            guard reply.reply_type == AMQP_RESPONSE_NORMAL else { throw failure("consuming") }
            guard amqp_basic_ack(state, 1, envelope.delivery_tag, 0) == 0 else { throw failure("basic.ack") }
            amqp_destroy_envelope(&envelope)
            received += 1
        }
        return Double(count) / (ContinuousClock.now - started).seconds
    }

    private static func connect(url: String) throws -> amqp_connection_state_t {
        let endpoint = try AMQPEndpoint(url: url)
        guard let state = amqp_new_connection(), let socket = amqp_tcp_socket_new(state) else {
            throw failure("allocating a connection")
        }
        guard amqp_socket_open(socket, endpoint.host, Int32(endpoint.port)) == 0 else {
            amqp_destroy_connection(state)
            throw failure("connecting")
        }
        let login = c2d_amqp_login_plain(
            state, endpoint.vhost, 0, Int32(AMQP_DEFAULT_FRAME_SIZE), 0, endpoint.user, endpoint.password)
        guard login.reply_type == AMQP_RESPONSE_NORMAL, amqp_channel_open(state, 1) != nil else {
            amqp_destroy_connection(state)
            throw failure("logging in")
        }
        return state
    }

    private static func close(_ state: amqp_connection_state_t) {
        _ = amqp_channel_close(state, 1, Int32(AMQP_REPLY_SUCCESS))
        _ = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
        amqp_destroy_connection(state)
    }

    private static func failure(_ what: String) -> AMQPError {
        AMQPError(code: .protocolError, message: "raw benchmark: \(what) failed")
    }
}

extension Duration {
    fileprivate var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Calls `body` with one `amqp_bytes_t` per string, all pointing into a single buffer that lives for the call (as the
/// client's own bridging does).
private func withAMQPBytes<R>(_ strings: [String], _ body: ([amqp_bytes_t]) throws -> R) rethrows -> R {
    var storage: [UInt8] = []
    storage.reserveCapacity(strings.reduce(0) { $0 + $1.utf8.count })
    var ranges: [(offset: Int, count: Int)] = []
    ranges.reserveCapacity(strings.count)
    for string in strings {
        ranges.append((storage.count, string.utf8.count))
        storage.append(contentsOf: string.utf8)
    }
    return try storage.withUnsafeMutableBytes { raw in
        let views = ranges.map { range in
            amqp_bytes_t(len: range.count, bytes: range.count == 0 ? nil : raw.baseAddress! + range.offset)
        }
        return try body(views)
    }
}
