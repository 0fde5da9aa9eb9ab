import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// Bounds the long-lived streams a gateway keeps open: Server-Sent Event streams of jobs and batches, and followed
/// step logs (`/v1/jobs/{id}/logs/{step}?follow=true`, ocean-node's `computeStreamableLogs`). Each one polls
/// Postgres (and a followed log may hold a pod-log stream on Kubernetes), so an unbounded number is a way to exhaust
/// the database. One instance per gateway is shared by all of them: a caller may hold `perCaller` streams, the
/// gateway `total`; beyond either the request is refused with 429 `too_many_streams` and nothing is opened.
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

    /// Streams open now on this gateway (read by tests; /metrics does not show it, since it is per gateway and
    /// /metrics reports what Postgres holds).
    var openStreams: Int { state.withLock { $0.open } }
}

extension ResponseBody {
    /// This body, giving `lease` back once it has been written, has failed, or is dropped unwritten.
    func holding(_ lease: EventStreamLimiter.Lease) -> ResponseBody {
        let body = self
        return ResponseBody(contentLength: contentLength) { writer in
            defer { lease.end() }
            try await body.write(writer)
        }
    }
}
