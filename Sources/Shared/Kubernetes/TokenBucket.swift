/// Client-side rate limit, the way client-go's token bucket works: up to `burst` requests at once, then
/// `queriesPerSecond` on average. A pure value: given an instant it says how long the caller must wait; the caller
/// sleeps. Each call reserves a token even when it must wait, so concurrent callers queue in arrival order.
package struct TokenBucket: Sendable {
    package let queriesPerSecond: Double
    package let burst: Int
    private var tokens: Double
    private var last: ContinuousClock.Instant?

    /// A non-positive `queriesPerSecond` disables the limit.
    package init(queriesPerSecond: Double, burst: Int) {
        self.queriesPerSecond = queriesPerSecond
        self.burst = max(1, burst)
        self.tokens = Double(self.burst)
    }

    /// Takes a token at `now` and returns how long to wait before using it (zero when one was available).
    package mutating func reserve(at now: ContinuousClock.Instant) -> Duration {
        guard queriesPerSecond > 0 else { return .zero }
        if let last, now > last {
            let elapsed = (now - last) / .seconds(1)
            tokens = min(Double(burst), tokens + elapsed * queriesPerSecond)
        }
        if last.map({ now > $0 }) ?? true { last = now }
        tokens -= 1
        guard tokens < 0 else { return .zero }
        // Whole nanoseconds, so waits compare exactly and floating-point dust does not show up in logs.
        return .nanoseconds(Int64((-tokens / queriesPerSecond * 1e9).rounded()))
    }

    /// Takes a token if one is available at `now`, without going into debt.
    package mutating func tryTake(at now: ContinuousClock.Instant) -> Bool {
        guard queriesPerSecond > 0 else { return true }
        refill(at: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// How long until a whole token is available (zero when one is).
    package mutating func untilNextToken(at now: ContinuousClock.Instant) -> Duration {
        guard queriesPerSecond > 0 else { return .zero }
        refill(at: now)
        guard tokens < 1 else { return .zero }
        return .nanoseconds(Int64(((1 - tokens) / queriesPerSecond * 1e9).rounded(.up)))
    }

    private mutating func refill(at now: ContinuousClock.Instant) {
        if let last, now > last {
            let elapsed = (now - last) / .seconds(1)
            tokens = min(Double(burst), tokens + elapsed * queriesPerSecond)
        }
        if last.map({ now > $0 }) ?? true { last = now }
    }
}
