import NIOCore

/// Publisher-confirm bookkeeping for one channel in confirm mode, as a value with no I/O.
///
/// The broker numbers publishes on a confirm-mode channel 1, 2, 3…; a basic.ack or basic.nack names one tag, or with
/// `multiple` every unconfirmed tag up to and including it, and confirms for different queues may come out of order.
/// Entries sit in a ring indexed by `tag - firstTag`, so settling is O(1) per message and settled entries are dropped
/// from the front as soon as everything older is settled too.
struct ConfirmTracker<Payload> {
    struct Settled {
        var payload: Payload
        /// A basic.return for this publish arrived before its confirm: it reached no queue.
        var returned: Bool
    }

    private struct Entry {
        var payload: Payload?
        var deadline: ContinuousClock.Instant
        var returned = false
    }

    private var entries = CircularBuffer<Entry>()
    /// The tag of `entries.first`.
    private var firstTag: UInt64 = 1
    /// Publishes sent and not yet settled, expired or failed.
    private(set) var inFlight = 0

    /// The tag the next publish on the channel gets.
    var nextTag: UInt64 { firstTag + UInt64(entries.count) }

    /// Records a publish that was just sent; returns its delivery tag.
    @discardableResult
    mutating func append(_ payload: Payload, deadline: ContinuousClock.Instant) -> UInt64 {
        let tag = nextTag
        entries.append(Entry(payload: payload, deadline: deadline))
        inFlight += 1
        return tag
    }

    /// Applies a basic.ack or basic.nack; returns the publishes it settles, oldest first. Tags already settled or
    /// expired are ignored.
    mutating func settle(tag: UInt64, multiple: Bool) -> [Settled] {
        guard tag >= firstTag, tag < nextTag else { return [] }
        var settled: [Settled] = []
        let last = Int(tag - firstTag)
        let range = multiple ? 0...last : last...last
        for index in range {
            let entryIndex = entries.index(entries.startIndex, offsetBy: index)
            if let payload = entries[entryIndex].payload {
                settled.append(Settled(payload: payload, returned: entries[entryIndex].returned))
                entries[entryIndex].payload = nil
                inFlight -= 1
            }
        }
        compact()
        return settled
    }

    /// Marks the oldest unsettled publish matching `isReturned` as returned (basic.return carries no delivery tag, but
    /// returns arrive in publish order and before the publish's own confirm). Returns false when none matched.
    mutating func markReturned(where isReturned: (Payload) -> Bool) -> Bool {
        for index in entries.indices {
            if let payload = entries[index].payload, !entries[index].returned, isReturned(payload) {
                entries[index].returned = true
                return true
            }
        }
        return false
    }

    /// Removes and returns the publishes whose confirm is overdue. Deadlines grow with the tag (same timeout for all),
    /// so only the front needs looking at.
    mutating func expire(now: ContinuousClock.Instant) -> [Payload] {
        var expired: [Payload] = []
        for index in entries.indices {
            guard entries[index].deadline <= now else { break }
            if let payload = entries[index].payload {
                expired.append(payload)
                entries[index].payload = nil
                inFlight -= 1
            }
        }
        compact()
        return expired
    }

    /// Forgets every unsettled publish (the channel or connection is gone) and returns them; tags restart at 1, as
    /// they do on a new channel.
    mutating func removeAll() -> [Payload] {
        let pending = entries.compactMap(\.payload)
        entries.removeAll()
        firstTag = 1
        inFlight = 0
        return pending
    }

    private mutating func compact() {
        while let first = entries.first, first.payload == nil {
            entries.removeFirst()
            firstTag += 1
        }
    }
}
