import Domain
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Persistence

/// A batch as a whole, like Armada's job sets: `GET /v1/batches/{id}` (counts by status and outcome),
/// `POST /v1/batches/{id}/stop` (every unfinished job, through the same stop as `POST /v1/jobs/{id}/stop`) and
/// `GET /v1/batches/{id}/events` (Server-Sent Events of every job's status changes, resumable with
/// `Last-Event-ID`, ending once every job of the batch has finished).
///
/// Ownership is the jobs' (every job of a batch has the batch's owner): another owner's batch answers 404 like a
/// missing one, unless the caller may see every job (`operate`, `admin`) or is one of the batch's viewers; stopping
/// needs the owner's `submit` or `operate`.
struct BatchOperations: Sendable {
    let store: PostgresJobStore
    let events: EventRoutes

    /// Jobs per stop statement: keeps the id list of one statement small for a batch of 10,000.
    static let stopChunkSize = 1_000

    func register(on router: Router<GatewayRequestContext>) {
        router.get("/v1/batches/{id}", use: get)
        router.post("/v1/batches/{id}/stop", use: stop)
        router.get("/v1/batches/{id}/events", use: stream)
    }

    @Sendable func get(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let batch = try await findBatch(context, for: .see)
        let counts = try await unavailableOnStoreError { try await store.batchCounts(batch.id) }
        return try JobRoutes.json(BatchView(batch, counts: counts))
    }

    /// Asks every unfinished job of the batch to stop: queued ones end at once, running ones when their worker sees
    /// the request. Answers 202 with the batch as it is then, and how many jobs the request reached.
    @Sendable func stop(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let batch = try await findBatch(context, for: .stop)
        let unfinished = try await unavailableOnStoreError { try await store.unfinishedJobIDs(inBatch: batch.id) }
        var reached = 0
        for start in stride(from: 0, to: unfinished.count, by: Self.stopChunkSize) {
            let chunk = Array(unfinished[start..<min(start + Self.stopChunkSize, unfinished.count)])
            reached += try await unavailableOnStoreError { try await store.requestStop(jobIDs: chunk) }.count
        }
        let counts = try await unavailableOnStoreError { try await store.batchCounts(batch.id) }
        var view = BatchView(batch, counts: counts)
        view.stopRequested = reached
        return try JobRoutes.json(view, status: .accepted)
    }

    @Sendable func stream(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let batch = try await findBatch(context, for: .see)
        return try events.batchStream(after: try EventRoutes.startID(request), batchID: batch.id)
    }

    // MARK: Helpers

    enum Access {
        case see
        case stop
    }

    /// The batch named in the path, if the caller may see it (404 otherwise, so batch ids reveal nothing); 403 for a
    /// batch the caller may see but not stop.
    func findBatch(_ context: GatewayRequestContext, for access: Access) async throws -> PostgresJobStore.BatchInfo {
        guard let principal = context.principal else { throw APIError.unauthenticated }
        let text = context.parameters.get("id") ?? ""
        guard let id = UUID(uuidString: text) else { throw APIError.batchNotFound(text) }
        guard let batch = try await unavailableOnStoreError({ try await store.batch(id) }),
            principal.canSee(owner: batch.owner, viewers: batch.viewers)
        else {
            throw APIError.batchNotFound(text)
        }
        if access == .stop, !principal.canStop(owner: batch.owner) {
            throw APIError(
                .forbidden, code: "missing_scope",
                message: "stopping a batch needs the owner's token with 'submit', or 'operate'")
        }
        return batch
    }
}

/// A batch as the native API shows it.
struct BatchView: Encodable {
    var id: String
    var owner: String
    var environment: String
    var dateCreated: Date
    /// When the last job finished, once every job has; absent before.
    var dateFinished: Date?
    var total: Int
    /// Jobs not finished yet (queued or running).
    var unfinished: Int
    /// Every job has finished (and the batch has at least one).
    var finished: Bool
    /// Job counts by status code (`"1"`, `"40"`, `"70"`, …); only statuses some job has.
    var byStatus: [String: Int]
    /// Job counts by outcome; every outcome is present, 0 when no job has it.
    var byOutcome: [String: Int]
    /// Only in the answer to a stop: how many unfinished jobs the request reached.
    var stopRequested: Int?

    init(_ batch: PostgresJobStore.BatchInfo, counts: PostgresJobStore.BatchCounts) {
        id = batch.id.uuidString.lowercased()
        owner = batch.owner
        environment = batch.environment
        dateCreated = batch.createdAt
        dateFinished = counts.lastFinishedAt
        total = counts.total
        unfinished = counts.unfinished
        finished = counts.total > 0 && counts.unfinished == 0
        byStatus = Dictionary(uniqueKeysWithValues: counts.byStatus.map { (String($0.key.rawValue), $0.value) })
        byOutcome = Dictionary(
            uniqueKeysWithValues: JobOutcome.allCases.map { ($0.rawValue, counts.byOutcome[$0] ?? 0) })
    }
}

extension APIError {
    static func batchNotFound(_ id: String) -> APIError {
        APIError(.notFound, code: "batch_not_found", message: "no batch with id '\(id.prefix(64))'")
    }
}

extension EventRoutes {
    /// Status changes of every job of a batch as Server-Sent Events, in event id order, resumable after an id like
    /// the job and global streams (same framing, polling and heartbeat). Only events whose ids are final are sent
    /// (`SettledEvents`): with many jobs committing at once, an id may become visible after a larger one, and a
    /// stream that moved past it would never send it. The stream ends once no job of the batch is unfinished and
    /// every event up to then has been sent; a batch without jobs ends at once.
    func batchStream(after start: Int, batchID: UUID) throws -> Response {
        let store = self.store
        let heartbeat = self.heartbeat
        let pause = pause()
        let body = ResponseBody { writer in
            let doorbell = pause.join()
            defer { pause.leave(doorbell) }
            var last = start
            var horizon = SettledEvents(settled: start)
            var quietSince = ContinuousClock.now
            let pageSize = 500
            /// Sends the settled events after `last`; returns how many.
            func sendSettled() async throws -> Int {
                let bound = horizon.observe(try await store.eventHorizon())
                guard bound > last else { return 0 }
                let events = try await store.batchStatusEvents(
                    after: last, upTo: bound, batchID: batchID, limit: pageSize)
                for event in events {
                    try await writer.write(StatusEventFrame.frame(event))
                    last = event.id
                }
                // A short page means the batch has nothing more up to the bound.
                if events.count < pageSize { last = max(last, bound) }
                return events.count
            }
            while !Task.isCancelled {
                if try await sendSettled() > 0 {
                    quietSince = ContinuousClock.now
                    continue
                }
                if try await !store.batchHasUnfinishedJobs(batchID) {
                    // Every terminal event was committed before that read, so its id is at most the last id handed
                    // out now; send everything up to there once it is final, then end.
                    let target = try await store.eventHorizon().lastID
                    let deadline = ContinuousClock.now + .seconds(30)
                    while last < target && ContinuousClock.now < deadline && !Task.isCancelled {
                        if try await sendSettled() == 0 { try await Task.sleep(for: .milliseconds(50)) }
                    }
                    break
                }
                if ContinuousClock.now - quietSince >= heartbeat {
                    try await writer.write(ByteBuffer(string: ": heartbeat\n\n"))
                    quietSince = ContinuousClock.now
                }
                try await pause.wait(doorbell)
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
