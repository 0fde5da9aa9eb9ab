import Testing

@testable import Scheduler

@Suite("Dispatch back-off of an environment whose passes fail")
struct EnvironmentBackoffTests {
    @Test("waits 1 s, then twice as long after each failure up to the maximum; a pass that goes through resets it")
    func backoff() {
        let start = ContinuousClock.now
        var backoff = EnvironmentBackoff(maximum: .seconds(4))
        #expect(!backoff.isWaiting("stale", now: start))
        #expect(backoff.failed("stale", now: start) == .seconds(1))
        #expect(backoff.isWaiting("stale", now: start + .milliseconds(999)))
        #expect(!backoff.isWaiting("stale", now: start + .seconds(1)))
        #expect(!backoff.isWaiting("live", now: start), "other environments are not held back")
        #expect(backoff.failed("stale", now: start + .seconds(1)) == .seconds(2))
        #expect(backoff.failed("stale", now: start + .seconds(3)) == .seconds(4))
        #expect(backoff.failed("stale", now: start + .seconds(7)) == .seconds(4), "capped at the maximum")
        #expect(backoff.isWaiting("stale", now: start + .seconds(10)))
        backoff.succeeded("stale")
        #expect(!backoff.isWaiting("stale", now: start + .seconds(10)))
        #expect(backoff.failed("stale", now: start + .seconds(10)) == .seconds(1))
    }
}
