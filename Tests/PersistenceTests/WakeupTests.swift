import Persistence
import Testing

@Suite("Wakeup")
struct WakeupTests {
    @Test func aRingBeforeTheWaitIsKeptAndRingsCoalesce() async {
        let wakeup = Wakeup()
        wakeup.ring()
        wakeup.ring()
        let clock = ContinuousClock()
        let first = await clock.measure { await wakeup.wait(upTo: .seconds(10)) }
        #expect(first < .seconds(1))
        // Both rings were one: the next wait runs to its timeout.
        let second = await clock.measure { await wakeup.wait(upTo: .milliseconds(200)) }
        #expect(second >= .milliseconds(200))
    }

    @Test func aRingDuringTheWaitEndsItEarly() async {
        let wakeup = Wakeup()
        let clock = ContinuousClock()
        async let ringer: Void = {
            try? await Task.sleep(for: .milliseconds(100))
            wakeup.ring()
        }()
        let waited = await clock.measure { await wakeup.wait(upTo: .seconds(10)) }
        await ringer
        #expect(waited >= .milliseconds(100) && waited < .seconds(5))
    }

    @Test func cancellingTheWaiterEndsTheWait() async {
        let wakeup = Wakeup()
        let task = Task { await wakeup.wait(upTo: .seconds(60)) }
        try? await Task.sleep(for: .milliseconds(50))
        task.cancel()
        let clock = ContinuousClock()
        let ended = await clock.measure { await task.value }
        #expect(ended < .seconds(5))
    }
}
