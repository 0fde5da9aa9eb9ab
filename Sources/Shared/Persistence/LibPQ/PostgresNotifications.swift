import Foundation
import Logging

/// One `NOTIFY` a listening connection received.
package struct PostgresNotification: Sendable, Hashable {
    package var channel: String
    package var payload: String
    /// The server process that sent it.
    package var processID: Int

    package init(channel: String, payload: String, processID: Int = 0) {
        self.channel = channel
        self.payload = payload
        self.processID = processID
    }
}

/// What a listener sees: notifications, and a marker each time it (re)starts listening. Notifications sent while no
/// connection listened are lost, so a consumer treats `.listening` as "rescan everything".
package enum PostgresNotificationEvent: Sendable, Hashable {
    case listening
    case notification(PostgresNotification)
}

extension PostgresClient {
    /// Listens to `channels` on a connection of its own (outside the pool: a listening connection is never lent to
    /// anyone else) for as long as `body` runs, then closes it. `body` gets the events as an `AsyncSequence`; it
    /// starts with `.listening`, and after a lost connection the sequence reconnects by itself (backing off up to
    /// `maximumBackoff`) and yields `.listening` again. The sequence ends when the iterating task is cancelled.
    package func withNotifications<T: Sendable>(
        channels: [String], maximumBackoff: Duration = .seconds(5),
        _ body: (PostgresNotifications) async throws -> T
    ) async throws -> T {
        let listener = PostgresListener(
            configuration: configuration, channels: channels, maximumBackoff: maximumBackoff, logger: logger)
        do {
            let value = try await body(PostgresNotifications(listener: listener))
            await listener.close()
            return value
        } catch {
            await listener.close()
            throw error
        }
    }
}

/// The events of one ``PostgresClient/withNotifications(channels:maximumBackoff:_:)`` call. Iterate it once.
package struct PostgresNotifications: AsyncSequence, Sendable {
    package typealias Element = PostgresNotificationEvent

    let listener: PostgresListener

    package func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(listener: listener)
    }

    package struct AsyncIterator: AsyncIteratorProtocol {
        let listener: PostgresListener

        package mutating func next() async throws -> PostgresNotificationEvent? {
            try await listener.next()
        }
    }
}

/// The listening connection and what it has read but not yet handed out. Used by one iterating task at a time.
actor PostgresListener {
    private let configuration: PostgresConfiguration
    private let channels: [String]
    private let maximumBackoff: Duration
    private let logger: Logger
    private var connection: PostgresConnection?
    private var pending: [PostgresNotification] = []
    private var failures = 0
    private var closed = false

    /// How long one wait on the socket lasts: bounds how late a cancelled iteration notices it.
    private static let pollInterval = Duration.milliseconds(250)

    init(configuration: PostgresConfiguration, channels: [String], maximumBackoff: Duration, logger: Logger) {
        self.configuration = configuration
        self.channels = channels
        self.maximumBackoff = maximumBackoff
        self.logger = logger
    }

    func next() async throws -> PostgresNotificationEvent? {
        while !Task.isCancelled && !closed {
            if !pending.isEmpty { return .notification(pending.removeFirst()) }
            guard let connection else {
                if await connect() { return .listening }
                continue
            }
            do {
                pending = try await connection.notifications(timeout: Self.pollInterval)
            } catch {
                logger.warning("listening connection lost; reconnecting", metadata: ["error": "\(error)"])
                self.connection = nil
                await connection.close()
            }
        }
        return nil
    }

    /// Opens a connection and listens, or waits before the next try. True when listening.
    private func connect() async -> Bool {
        if failures > 0 {
            let backoff = min(Duration.milliseconds(100) * (1 << min(failures, 10)), maximumBackoff)
            try? await Task.sleep(for: backoff)
            if Task.isCancelled || closed { return false }
        }
        do {
            let connection = try await PostgresConnection.connect(
                id: -1, configuration: configuration, logger: logger)
            do {
                try await connection.listen(channels)
            } catch {
                await connection.close()
                throw error
            }
            self.connection = connection
            failures = 0
            return true
        } catch {
            failures += 1
            logger.warning("cannot listen for notifications", metadata: ["error": "\(error)"])
            return false
        }
    }

    func close() async {
        closed = true
        pending.removeAll()
        if let connection {
            self.connection = nil
            await connection.close()
        }
    }
}

/// Quoting for identifiers that cannot be bound as parameters (`LISTEN` channel names).
enum PostgresIdentifier {
    static func quoted(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
