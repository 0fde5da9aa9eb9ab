import AMQP
import Domain
import Foundation
import Logging
import Persistence
import ServiceLifecycle

/// Publishes every job status change (the `job_events` rows) to the `c2d.events` topic exchange, in id order, with
/// publisher confirms; a cursor row in Postgres records the last id confirmed. An event is lost never, and published
/// twice only if the relay dies between the confirm and the cursor update (readers dedupe by id).
///
/// Event ids come from a sequence, and transactions commit out of id order: id 11 may be visible while id 10 is still
/// uncommitted. The relay therefore stops at a gap and passes it only once every transaction that could still fill
/// it has ended; an id still missing then was rolled back and never comes. Every writer of job_events updates or
/// locks the job row first, so its transaction id exists before it takes an event id; when the relay sees a gap it
/// takes a transaction id of its own (the marker, newer than the gap's writer), and the gap is settled once the
/// oldest running transaction is newer than the marker. (A snapshot's `xmax` would not do: it is one past the latest
/// *completed* transaction, so a newer transaction can be running without showing in `xmin`.)
///
/// A trigger (migration 0012) notifies `c2d_events` when events commit; the relay listens and runs a pass at once,
/// so a status change reaches `c2d.events` within milliseconds. The pass interval is only the fallback.
package final class EventRelay: Service, Sendable {
    package struct Configuration: Sendable {
        /// Longest time between passes when no notification comes (the fallback). Default 1 s.
        package var interval: Duration
        /// Events per pass. Default 1,000.
        package var batchSize: Int
        /// Limit on one pass's publishing. Default 10 s.
        package var publishTimeout: Duration
        /// The cursor row's name in event_relay_cursor. Default `c2d.events`.
        package var cursorName: String

        package init(
            interval: Duration = .seconds(1), batchSize: Int = 1_000, publishTimeout: Duration = .seconds(10),
            cursorName: String = EventNames.exchange
        ) {
            self.interval = interval
            self.batchSize = batchSize
            self.publishTimeout = publishTimeout
            self.cursorName = cursorName
        }
    }

    /// A gap seen after `cursor`, and a transaction id taken after it was seen.
    private struct Gap: Sendable {
        var cursor: Int
        var marker: UInt64
    }

    let configuration: Configuration
    let store: PostgresJobStore
    let amqp: AMQPClient
    let logger: Logger

    package init(
        configuration: Configuration = Configuration(), store: PostgresJobStore, amqp: AMQPClient, logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.amqp = amqp
        self.logger = logger
    }

    package func run() async throws {
        let wakeup = Wakeup()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.listen(wakeup) }
                group.addTask { await self.relay(wakeup) }
            }
        }
    }

    func listen(_ wakeup: Wakeup) async {
        while !Task.isCancelled {
            do {
                try await store.withNotifications(channels: [PostgresJobStore.eventsChannel]) { events in
                    for try await _ in events { wakeup.ring() }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("listening for event notifications failed", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func relay(_ wakeup: Wakeup) async {
        var gap: Gap?
        while !Task.isCancelled {
            var published = 0
            do {
                (published, gap) = try await runOnce(gap: gap)
            } catch {
                logger.warning("event relay pass failed", metadata: ["error": "\(error)"])
            }
            // A full batch means more may be waiting; a pending gap usually settles within milliseconds.
            if published < configuration.batchSize {
                await wakeup.wait(upTo: gap == nil ? configuration.interval : .milliseconds(20))
            }
        }
    }

    /// One pass. Returns how many events were published and the gap it stopped at, if any.
    private func runOnce(gap: Gap?) async throws -> (Int, Gap?) {
        guard amqp.isConnected else { return (0, gap) }
        let amqp = self.amqp
        let timeout = configuration.publishTimeout
        let outcome = try await store.relayEvents(cursorName: configuration.cursorName, limit: configuration.batchSize)
        { batch in
            let publishable = Self.contiguous(batch, settledGap: gap)
            if !publishable.isEmpty {
                let messages = publishable.map { (message: Self.message(for: $0), routingKey: $0.routingKey) }
                // One batch on one channel: the broker stores them in this order. Not mandatory, since an event
                // nobody listens to is not an error (the stream is always bound).
                try await withDeadline(timeout, operation: "publishing \(messages.count) events") {
                    try await amqp.publish(messages, exchange: EventNames.exchange, mandatory: false)
                }
            }
            return publishable.last?.id ?? batch.cursor
        }
        guard let outcome else { return (0, gap) }
        let published = outcome.to - outcome.from
        // Remember a new gap with the horizon of this read; keep an older one for the same position.
        let newGap = try await pendingGap(after: outcome.to, previous: gap)
        return (published, newGap)
    }

    /// The gap (if any) right after `cursor`: the next id is missing while a later one exists.
    private func pendingGap(after cursor: Int, previous: Gap?) async throws -> Gap? {
        guard let next = try await store.nextEventID(after: cursor), next > cursor + 1 else { return nil }
        if let previous, previous.cursor == cursor { return previous }
        return Gap(cursor: cursor, marker: try await store.transactionMarker())
    }

    /// The events that follow the cursor without a gap, passing a gap that is known to be settled: every transaction
    /// that could still have filled it has ended.
    private static func contiguous(_ batch: PostgresJobStore.EventBatch, settledGap gap: Gap?) -> [JobEvent] {
        var result: [JobEvent] = []
        for event in batch.events {
            let last = result.last?.id ?? batch.cursor
            if event.id != last + 1 {
                guard let gap, gap.cursor == last, batch.oldestRunningXID > gap.marker else { break }
            }
            result.append(event)
        }
        return result
    }

    static func message(for event: JobEvent) -> AMQPMessage {
        var headers = [
            EventNames.eventIDHeader: String(event.id), JobMessage.Header.jobID: event.jobID.description,
        ]
        if let requestID = event.trace.requestID { headers[JobMessage.Header.requestID] = requestID }
        if let traceparent = event.trace.traceparent { headers[JobMessage.Header.traceparent] = traceparent }
        return AMQPMessage(
            body: event.json, headers: headers, contentType: "application/json",
            messageID: "event-\(event.id)")
    }
}
