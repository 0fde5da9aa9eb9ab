import Persistence
import Testing

/// When event ids are final: only once every transaction older than an observation's marker has ended.
@Suite("Settled event ids")
struct SettledEventsTests {
    @Test("ids become final when the transactions older than an observation have ended, not before")
    func settles() {
        var settled = SettledEvents(settled: 10)
        // Ids up to 20 handed out; transaction 100 (older than the marker 104) still runs.
        #expect(settled.observe(EventHorizon(lastID: 20, marker: 104, oldestRunningXID: 100)) == 10)
        // It still runs: nothing new is final.
        #expect(settled.observe(EventHorizon(lastID: 25, marker: 106, oldestRunningXID: 100)) == 10)
        // Everything older than 104 ended, 105 still runs: ids up to 20 are final; 25 waits for its own marker.
        #expect(settled.observe(EventHorizon(lastID: 30, marker: 108, oldestRunningXID: 105)) == 20)
        #expect(settled.observe(EventHorizon(lastID: 30, marker: 110, oldestRunningXID: 107)) == 20)
        #expect(settled.observe(EventHorizon(lastID: 31, marker: 112, oldestRunningXID: 109)) == 30)
    }

    @Test("with nothing older than the marker running, what was observed is final at once; the bound never goes back")
    func idle() {
        var settled = SettledEvents(settled: 50)
        #expect(settled.observe(EventHorizon(lastID: 60, marker: 200, oldestRunningXID: 201)) == 60)
        #expect(settled.observe(EventHorizon(lastID: 40, marker: 202, oldestRunningXID: 203)) == 60)
        #expect(settled.settled == 60)
    }

    @Test("a transaction as new as the marker's snapshot still holds the ids back")
    func runningAtTheMarker() {
        // The case a snapshot's xmax alone gets wrong: the event's transaction (200) started after the last
        // completed one; the marker (201) is newer, and 200 is the oldest running.
        var settled = SettledEvents(settled: 0)
        #expect(settled.observe(EventHorizon(lastID: 7, marker: 201, oldestRunningXID: 200)) == 0)
        #expect(settled.observe(EventHorizon(lastID: 7, marker: 203, oldestRunningXID: 204)) == 7)
    }
}
