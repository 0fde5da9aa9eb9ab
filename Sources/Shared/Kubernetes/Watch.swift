import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat

/// One change seen by a watch. `ERROR` events are not elements: they end the sequence by throwing a
/// ``KubernetesError`` carrying the `Status` (code ``KubernetesError/Code-swift.struct/gone`` for 410: relist).
package enum WatchEvent<Object: Sendable>: Sendable {
    case added(Object)
    case modified(Object)
    case deleted(Object)
    /// No change, but the collection reached `resourceVersion`; resume watches from it.
    case bookmark(resourceVersion: String)

    /// The object of an added, modified or deleted event.
    package var object: Object? {
        switch self {
        case .added(let object), .modified(let object), .deleted(let object): object
        case .bookmark: nil
        }
    }
}

/// The events of one watch request, decoded from its newline-delimited JSON body as they arrive.
package struct WatchStream<Object: Decodable & Sendable>: AsyncSequence, Sendable {
    package typealias Element = WatchEvent<Object>

    private let body: HTTPClientResponse.Body
    private let context: String

    init(body: HTTPClientResponse.Body, context: String) {
        self.body = body
        self.context = context
    }

    package func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(body: body.makeAsyncIterator(), context: context)
    }

    package struct AsyncIterator: AsyncIteratorProtocol {
        private var body: HTTPClientResponse.Body.AsyncIterator
        private let context: String
        private var framer = LineFramer()
        /// Complete lines not yet decoded, last first.
        private var pending: [ByteBuffer] = []
        private var finished = false
        private let decoder = KubernetesJSON.makeDecoder()

        init(body: HTTPClientResponse.Body.AsyncIterator, context: String) {
            self.body = body
            self.context = context
        }

        package mutating func next() async throws -> WatchEvent<Object>? {
            while true {
                if let line = pending.popLast() {
                    return try WatchEventDecoder.decode(line, as: Object.self, decoder: decoder, context: context)
                }
                if finished { return nil }
                let chunk: ByteBuffer?
                do {
                    chunk = try await body.next()
                } catch {
                    if Task.isCancelled { throw CancellationError() }
                    throw KubernetesClient.transportError(error, context: context)
                }
                if let chunk {
                    pending = try framer.append(chunk).reversed()
                } else {
                    finished = true
                    pending = framer.finish().map { [$0] } ?? []
                }
            }
        }
    }
}

/// Decodes one watch line, `{"type": "...", "object": {...}}`, in a single pass.
enum WatchEventDecoder {
    static func decode<Object: Decodable & Sendable>(
        _ line: ByteBuffer, as type: Object.Type, decoder: JSONDecoder, context: String
    ) throws(KubernetesError) -> WatchEvent<Object> {
        let envelope: Envelope<Object>
        do {
            envelope = try decoder.decode(Envelope<Object>.self, from: line)
        } catch {
            let text = String(buffer: line).prefix(200)
            throw KubernetesError(code: .decoding, message: "\(context): bad watch event \(text): \(error)")
        }
        switch envelope.event {
        case .event(let event): return event
        case .error(let status): throw KubernetesError(watchStatus: status, context: context)
        }
    }

    private struct Envelope<Object: Decodable & Sendable>: Decodable {
        enum Decoded {
            case event(WatchEvent<Object>)
            case error(Status)
        }

        var event: Decoded

        private enum CodingKeys: String, CodingKey { case type, object }

        /// Only the parts a bookmark carries are read for BOOKMARK, so a projection with required fields still works.
        private struct BookmarkObject: Decodable {
            struct Metadata: Decodable { var resourceVersion: String? }
            var metadata: Metadata?
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let type = try container.decode(String.self, forKey: .type)
            switch type {
            case "ADDED": event = .event(.added(try container.decode(Object.self, forKey: .object)))
            case "MODIFIED": event = .event(.modified(try container.decode(Object.self, forKey: .object)))
            case "DELETED": event = .event(.deleted(try container.decode(Object.self, forKey: .object)))
            case "BOOKMARK":
                let object = try container.decode(BookmarkObject.self, forKey: .object)
                event = .event(.bookmark(resourceVersion: object.metadata?.resourceVersion ?? ""))
            case "ERROR": event = .error(try container.decode(Status.self, forKey: .object))
            default:
                throw DecodingError.dataCorruptedError(
                    forKey: .type, in: container, debugDescription: "unknown watch event type \(type)")
            }
        }
    }
}

/// A followed pod log: byte chunks as they arrive (not split at lines).
package struct PodLogStream: AsyncSequence, Sendable {
    package typealias Element = ByteBuffer

    private let body: HTTPClientResponse.Body
    private let context: String

    init(body: HTTPClientResponse.Body, context: String) {
        self.body = body
        self.context = context
    }

    package func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(body: body.makeAsyncIterator(), context: context)
    }

    package struct AsyncIterator: AsyncIteratorProtocol {
        private var body: HTTPClientResponse.Body.AsyncIterator
        private let context: String

        init(body: HTTPClientResponse.Body.AsyncIterator, context: String) {
            self.body = body
            self.context = context
        }

        package mutating func next() async throws -> ByteBuffer? {
            do {
                return try await body.next()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                throw KubernetesClient.transportError(error, context: context)
            }
        }
    }
}
