import Foundation
import HTTPTypes
import Synchronization

/// Bounds the Server-Sent Event streams a gateway keeps open: each one polls Postgres, so an unbounded number is
/// a way to exhaust the database. A caller may hold `perCaller` streams, the gateway `total`; beyond either the
/// request is refused with 429 `too_many_streams` and nothing is opened.
package final class EventStreamLimiter: Sendable {
    package struct Limits: Sendable, Hashable {
        /// Streams open at once on this gateway. Default 256. `C2D_SSE_MAX_STREAMS`.
        package var total: Int
        /// Streams one caller (token owner, or peer address with authentication off) may hold. Default 16.
        /// `C2D_SSE_MAX_STREAMS_PER_CALLER`.
        package var perCaller: Int

        package init(total: Int = 256, perCaller: Int = 16) {
            self.total = total
            self.perCaller = perCaller
        }
    }

    private struct State {
        var open = 0
        var byCaller: [String: Int] = [:]
    }

    let limits: Limits
    private let state = Mutex(State())

    init(limits: Limits) {
        self.limits = limits
    }

    /// A slot for one stream, given back when the lease is released or dropped (whichever comes first), so a
    /// stream that ends any way at all frees its slot.
    final class Lease: Sendable {
        private let release: Mutex<(@Sendable () -> Void)?>

        fileprivate init(release: @escaping @Sendable () -> Void) {
            self.release = Mutex(release)
        }

        func end() {
            release.withLock { action in
                action?()
                action = nil
            }
        }

        deinit { end() }
    }

    /// Takes a slot for `caller`, or throws 429 saying which limit was reached.
    func acquire(caller: String) throws -> Lease {
        let refusal: String? = state.withLock { state in
            if state.byCaller[caller, default: 0] >= limits.perCaller {
                return "you already have \(limits.perCaller) event streams open on this gateway; close one first"
            }
            if state.open >= limits.total {
                return "this gateway already serves its limit of \(limits.total) event streams; try again later"
            }
            state.open += 1
            state.byCaller[caller, default: 0] += 1
            return nil
        }
        if let refusal {
            throw APIError(
                .tooManyRequests, code: "too_many_streams", message: refusal, headers: [.retryAfter: "5"])
        }
        return Lease { [weak self] in
            self?.state.withLock { state in
                state.open -= 1
                let remaining = state.byCaller[caller, default: 1] - 1
                state.byCaller[caller] = remaining > 0 ? remaining : nil
            }
        }
    }

    /// Streams open now, for /metrics.
    var openStreams: Int { state.withLock { $0.open } }
}
