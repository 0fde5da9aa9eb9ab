import CRabbitMQ
import Foundation

// Conversions between Swift values and rabbitmq-c's C structures. Every `amqp_bytes_t` made here points into storage
// owned by a `with…` scope and must not outlive the closure (a pointer to a temporary C string would dangle).

/// A rabbitmq-c status code (`amqp_status_enum`), described by the library's own error strings.
struct AMQPStatus: Hashable, CustomStringConvertible {
    var rawValue: Int32

    static let ok = AMQPStatus(rawValue: AMQP_STATUS_OK.rawValue)
    static let timeout = AMQPStatus(rawValue: AMQP_STATUS_TIMEOUT.rawValue)
    static let heartbeatTimeout = AMQPStatus(rawValue: AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue)

    var description: String { String(cString: amqp_error_string2(rawValue)) }
}

/// Calls `body` with one `amqp_bytes_t` per string, all pointing into a single buffer that lives for the call.
func withAMQPBytes<R>(_ strings: [String], _ body: ([amqp_bytes_t]) throws -> R) rethrows -> R {
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

/// Calls `body` with an `amqp_table_t` of the arguments, valid for the call.
func withAMQPTable<R>(_ arguments: [String: AMQPArgument], _ body: (amqp_table_t) throws -> R) rethrows -> R {
    let fields = arguments.sorted { $0.key < $1.key }
    var strings: [String] = []
    for (key, value) in fields {
        strings.append(key)
        if case .string(let text) = value { strings.append(text) }
    }
    return try withAMQPBytes(strings) { bytes in
        var entries: [amqp_table_entry_t] = []
        entries.reserveCapacity(fields.count)
        var next = 0
        for (_, value) in fields {
            var entry = amqp_table_entry_t()
            entry.key = bytes[next]
            next += 1
            switch value {
            case .string:
                entry.value.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
                entry.value.value.bytes = bytes[next]
                next += 1
            case .int(let number):
                entry.value.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
                entry.value.value.i64 = number
            case .bool(let flag):
                entry.value.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
                entry.value.value.boolean = flag ? 1 : 0
            case .timestamp(let date):
                entry.value.kind = UInt8(AMQP_FIELD_KIND_TIMESTAMP.rawValue)
                entry.value.value.u64 = UInt64(max(0, date.timeIntervalSince1970.rounded(.down)))
            }
            entries.append(entry)
        }
        return try entries.withUnsafeMutableBufferPointer { buffer in
            try body(amqp_table_t(num_entries: Int32(buffer.count), entries: buffer.baseAddress))
        }
    }
}

extension String {
    /// Copies the bytes (rabbitmq-c's buffers are reused after `amqp_maybe_release_buffers`).
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = []
            return
        }
        self = Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }
}

/// The basic properties we read from a received message, copied out of rabbitmq-c's buffers.
struct ReceivedProperties {
    var headers: [String: String] = [:]
    var contentType: String?
    var messageID: String?
    var persistent = false
    var deliveryCount: Int?

    init() {}

    init(_ properties: amqp_basic_properties_t) {
        let flags = properties._flags
        func has(_ flag: Int32) -> Bool { flags & amqp_flags_t(flag) != 0 }
        if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { contentType = String(amqpBytes: properties.content_type) }
        if has(AMQP_BASIC_MESSAGE_ID_FLAG) { messageID = String(amqpBytes: properties.message_id) }
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) {
            persistent = properties.delivery_mode == UInt8(AMQP_DELIVERY_PERSISTENT.rawValue)
        }
        if has(AMQP_BASIC_HEADERS_FLAG), properties.headers.num_entries > 0, let entries = properties.headers.entries {
            for index in 0..<Int(properties.headers.num_entries) {
                let entry = entries[index]
                let key = String(amqpBytes: entry.key)
                if let value = Self.text(of: entry.value) { headers[key] = value }
                if key == "x-delivery-count", let count = Self.integer(of: entry.value) { deliveryCount = count }
            }
        }
    }

    private static func integer(of value: amqp_field_value_t) -> Int? {
        switch Int32(value.kind) {
        case Int32(AMQP_FIELD_KIND_I8.rawValue): Int(value.value.i8)
        case Int32(AMQP_FIELD_KIND_U8.rawValue): Int(value.value.u8)
        case Int32(AMQP_FIELD_KIND_I16.rawValue): Int(value.value.i16)
        case Int32(AMQP_FIELD_KIND_U16.rawValue): Int(value.value.u16)
        case Int32(AMQP_FIELD_KIND_I32.rawValue): Int(value.value.i32)
        case Int32(AMQP_FIELD_KIND_U32.rawValue): Int(value.value.u32)
        case Int32(AMQP_FIELD_KIND_I64.rawValue): Int(value.value.i64)
        case Int32(AMQP_FIELD_KIND_U64.rawValue), Int32(AMQP_FIELD_KIND_TIMESTAMP.rawValue):
            Int(exactly: value.value.u64)
        default: nil
        }
    }

    /// Text for the field kinds a header value can sensibly be read as; nil for tables, arrays and void.
    private static func text(of value: amqp_field_value_t) -> String? {
        if let number = integer(of: value) { return String(number) }
        switch Int32(value.kind) {
        case Int32(AMQP_FIELD_KIND_UTF8.rawValue), Int32(AMQP_FIELD_KIND_BYTES.rawValue):
            return String(amqpBytes: value.value.bytes)
        case Int32(AMQP_FIELD_KIND_BOOLEAN.rawValue):
            return value.value.boolean != 0 ? "true" : "false"
        case Int32(AMQP_FIELD_KIND_F32.rawValue):
            return String(value.value.f32)
        case Int32(AMQP_FIELD_KIND_F64.rawValue):
            return String(value.value.f64)
        default:
            return nil
        }
    }
}
