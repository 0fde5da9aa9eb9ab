import Domain
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Persistence

/// Job status changes as Server-Sent Events: `GET /v1/events` (all jobs, `?environment=` to narrow) and
/// `GET /v1/jobs/{id}/events`. Each event carries its `job_events` id, so a client that reconnects with
/// `Last-Event-ID` (or `?after=`) resumes with no gap and no duplicate. A comment line every `heartbeat` keeps
/// proxies and clients from timing out; a job's stream ends after its terminal event. Open streams are bounded per
/// caller and in total (``EventStreamLimiter``). With a ``EventStreamBell``, a stream looks again as soon as events
/// commit; its poll interval is then only the fallback.
struct EventRoutes: Sendable {
    let store: PostgresJobStore
    let limiter: EventStreamLimiter
    var bell: EventStreamBell?
    /// How often the stream looks for new events when nothing rings (`GatewayConfiguration.eventPollInterval`).
    var pollInterval: Duration = .milliseconds(250)
    /// Time between heartbeat comments when nothing happens. Default 15 s.
    var heartbeat: Duration = .seconds(15)

    func register(
        on router: Router<GatewayRequestContext>, find: @escaping @Sendable (GatewayRequestContext) async throws -> Job
    ) {
        router.get("/v1/events") { request, context in
            guard let principal = context.principal else { throw APIError.unauthenticated }
            guard principal.has(.operate) else {
                throw APIError(
                    .forbidden, code: "missing_scope",
                    message: "the stream of all jobs needs 'operate'; follow your own jobs at /v1/jobs/{id}/events")
            }
            let environment = try ListRoutes.textFilter("environment", request.uri.queryParameters.get("environment"))
            let start = try Self.startID(request)
            return stream(
                after: start, jobID: nil, environment: environment, endAtTerminal: false,
                lease: try limiter.acquire(caller: context.callerKey))
        }
        router.get("/v1/jobs/{id}/events") { request, context in
            let job = try await find(context)
            let start = try Self.startID(request)
            return stream(
                after: start, jobID: job.id, environment: nil, endAtTerminal: true,
                lease: try limiter.acquire(caller: context.callerKey))
        }
    }

    /// Where a stream starts: after `Last-Event-ID` (what a reconnecting client sends), else after `after`, else at
    /// the start. Both are checked when both are sent, so a bad `after` is reported even behind a good header.
    static func startID(_ request: Request) throws -> Int {
        func parsed(_ text: String?, _ name: String) throws -> Int? {
            guard let text else { return nil }
            guard text.isASCIIDigits, let id = Int(text) else {
                throw APIError(
                    .badRequest, code: "invalid_event_id",
                    message: "\(name) must be an event id (an integer of 0 or more)")
            }
            return id
        }
        let header = try parsed(request.headers[.lastEventID], "Last-Event-ID")
        let after = try parsed(request.uri.queryParameters.get("after"), "after")
        return header ?? after ?? 0
    }

    /// The stream's response; `lease` is its slot, given back when the body ends (or is never written).
    func stream(
        after start: Int, jobID: JobID?, environment: String?, endAtTerminal: Bool, lease: EventStreamLimiter.Lease
    ) -> Response {
        let store = self.store
        let heartbeat = self.heartbeat
        let pause = pause()
        let body = ResponseBody { writer in
            defer { lease.end() }
            let doorbell = pause.join()
            defer { pause.leave(doorbell) }
            var last = start
            var quietSince = ContinuousClock.now
            while !Task.isCancelled {
                let events = try await store.statusEvents(after: last, jobID: jobID, environment: environment)
                var finished = false
                for event in events {
                    try await writer.write(StatusEventFrame.frame(event))
                    last = event.id
                    finished = finished || (endAtTerminal && event.status.isTerminal)
                }
                if finished { break }
                if events.isEmpty {
                    if ContinuousClock.now - quietSince >= heartbeat {
                        try await writer.write(ByteBuffer(string: ": heartbeat\n\n"))
                        quietSince = ContinuousClock.now
                    }
                    try await pause.wait(doorbell)
                } else {
                    quietSince = ContinuousClock.now
                }
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    func pause() -> StreamPause { StreamPause(bell: bell, pollInterval: pollInterval) }
}

/// How a stream waits for more events: until the bell rings or the poll interval passes, or the interval alone
/// without a bell.
struct StreamPause: Sendable {
    let bell: EventStreamBell?
    let pollInterval: Duration

    func join() -> (id: Int, wakeup: Wakeup)? { bell?.join() }

    func leave(_ doorbell: (id: Int, wakeup: Wakeup)?) {
        if let doorbell { bell?.leave(doorbell.id) }
    }

    func wait(_ doorbell: (id: Int, wakeup: Wakeup)?) async throws {
        if let doorbell {
            await doorbell.wakeup.wait(upTo: pollInterval)
            // Commits come in bursts and every one rings every stream: a short pause answers a burst with one read
            // per stream (at most 20 a second), not one per commit.
            try await Task.sleep(for: .milliseconds(50))
        } else {
            try await Task.sleep(for: pollInterval)
        }
    }
}

/// One status change as a Server-Sent Event: `id:` the event id (what `Last-Event-ID` resumes after), `event:
/// status`, `data:` the `JobEvent` JSON, the same object `c2d.events` carries.
enum StatusEventFrame {
    static func frame(_ event: JobEvent) -> ByteBuffer {
        var buffer = ByteBuffer(string: "id: \(event.id)\nevent: status\ndata: ")
        buffer.writeBytes(event.json)
        buffer.writeString("\n\n")
        return buffer
    }
}

extension HTTPField.Name {
    static let lastEventID = HTTPField.Name("last-event-id")!
}
