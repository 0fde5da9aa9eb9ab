import Foundation

/// How far the `job_events` ids are final: event ids come from a sequence and transactions commit out of id order,
/// so a reader that follows a filtered stream (one batch's jobs) by "id greater than the last one sent" could pass
/// an id whose transaction commits later, and never send it. Every writer of `job_events` updates or locks its job
/// row before it takes an event id, so its transaction id is assigned before the event id is.
///
/// An observation reads the last id handed out, then takes a transaction id of its own (`marker`, larger than every
/// transaction id assigned before it), then the oldest running transaction id. Once no transaction older than the
/// marker is running, every event id up to the observed one is final (committed, or rolled back and never coming).
/// The marker is needed because a snapshot's `xmax` is only one past the latest *completed* transaction: a
/// transaction that started after it is running without showing in `xmin`.
package struct EventHorizon: Sendable, Hashable {
    /// The last id the sequence had handed out.
    package var lastID: Int
    /// A transaction id assigned after `lastID` was read.
    package var marker: UInt64
    /// The oldest transaction still running after the marker was taken (`xmin` of a later snapshot).
    package var oldestRunningXID: UInt64

    package init(lastID: Int, marker: UInt64, oldestRunningXID: UInt64) {
        self.lastID = lastID
        self.marker = marker
        self.oldestRunningXID = oldestRunningXID
    }
}

/// The highest event id below which nothing can appear any more, advanced by observations (a value: the stream
/// owns one and feeds it what it reads).
package struct SettledEvents: Sendable, Hashable {
    /// Every event id up to this is final.
    package private(set) var settled: Int
    private var pending: EventHorizon?

    package init(settled: Int) {
        self.settled = settled
    }

    /// Takes a new observation and returns how far ids are final now.
    @discardableResult
    package mutating func observe(_ now: EventHorizon) -> Int {
        if let pending, now.oldestRunningXID > pending.marker {
            settled = max(settled, pending.lastID)
            self.pending = nil
        }
        if now.oldestRunningXID > now.marker {
            // Nothing older than this observation's marker runs any more: what it saw is final already.
            settled = max(settled, now.lastID)
            pending = nil
        } else if pending == nil, now.lastID > settled {
            pending = now
        }
        return settled
    }
}

extension PostgresJobStore {
    /// Three statements, in this order: the last event id handed out; a transaction id of our own (the marker; this
    /// costs one transaction id per observation); the oldest running transaction id.
    package func eventHorizon() async throws -> EventHorizon {
        let sequence = try await client.query("select last_value, is_called from job_events_id_seq")
        let lastID = try sequence.first.map { try $0.bool("is_called") ? $0.int("last_value") : 0 } ?? 0
        let marker = try await client.query("select pg_current_xact_id()::text as xid")
        let horizon = try await client.query("select pg_snapshot_xmin(pg_current_snapshot())::text as xmin")
        return EventHorizon(
            lastID: lastID, marker: UInt64(try marker[0].string("xid")) ?? UInt64.max,
            oldestRunningXID: UInt64(try horizon[0].string("xmin")) ?? 0)
    }
}
