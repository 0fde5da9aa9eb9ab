import Foundation

/// When and how long to wait before retrying a request.
enum RetryPolicy {
    /// `Retry-After` as the API server sends it: whole seconds. HTTP dates are not used by Kubernetes and are
    /// ignored, as are negative or absurd values (over an hour), so the caller falls back to its own backoff.
    static func parseRetryAfter(_ value: String?) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), let seconds = Double(value),
            seconds.isFinite, seconds >= 0, seconds <= 3600
        else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }

    /// How long to wait before retrying a request that got `status`, or nil when it must not be retried. 429 means
    /// the server refused the request before acting on it, so every verb may retry; a 5xx may have come after a
    /// write took effect, so only idempotent requests retry.
    static func delay(
        status: Int, retryAfter: String?, isIdempotent: Bool, attempt: Int,
        random: Double = Double.random(in: 0..<1)
    ) -> Duration? {
        switch status {
        case 429: parseRetryAfter(retryAfter) ?? backoff(attempt: attempt, random: random)
        case 500...599 where isIdempotent: parseRetryAfter(retryAfter) ?? backoff(attempt: attempt, random: random)
        default: nil
        }
    }

    /// Exponential backoff for attempt 1, 2, 3…: 100 ms doubling up to 5 s, jittered to between half and all of it
    /// so clients throttled together do not return together. `random` is in 0..<1 (injected by tests).
    static func backoff(attempt: Int, random: Double = Double.random(in: 0..<1)) -> Duration {
        let nominal = min(5.0, 0.1 * Double(1 << min(max(attempt - 1, 0), 16)))
        return .milliseconds(Int64((nominal * (0.5 + random / 2)) * 1000))
    }
}
