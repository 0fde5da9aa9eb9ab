import Domain
import Foundation
import Hummingbird
import Persistence

/// `GET /v1/jobs`: jobs newest first, filtered by `status` (code), `owner`, `environment` and `batch`, in pages of
/// `limit` (default 50, at most 500) continued with the opaque `cursor` of the previous page (`nextCursor`, null
/// on the last page). Keyset paging: a walk through all pages sees every matching row that existed when it
/// began exactly once, whatever is inserted meanwhile.
struct ListRoutes: Sendable {
    let store: PostgresJobStore

    static let defaultLimit = 50
    static let maxLimit = 500
    /// Longest owner or environment filter, in bytes.
    static let maxFilterBytes = 1024

    func register(on router: Router<GatewayRequestContext>) {
        router.get("/v1/jobs", use: list)
    }

    struct Page: Encodable {
        var jobs: [JobView]
        var nextCursor: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(jobs, forKey: .jobs)
            // Always present: null on the last page.
            try container.encode(nextCursor, forKey: .nextCursor)
        }

        enum CodingKeys: String, CodingKey { case jobs, nextCursor }
    }

    @Sendable func list(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        guard let principal = context.principal else { throw APIError.unauthenticated }
        guard principal.has(.read) || principal.has(.operate) else {
            throw APIError(.forbidden, code: "missing_scope", message: "listing jobs needs 'read' or 'operate'")
        }
        let query = request.uri.queryParameters
        var filter = PostgresJobStore.JobFilter()
        if let text = query.get("status") {
            guard let code = Int(text), let status = JobStatus(rawValue: code) else {
                throw APIError(
                    .badRequest, code: "invalid_status", message: "status must be a job status code, like 1 or 70")
            }
            filter.status = status
        }
        filter.owner = try Self.textFilter("owner", query.get("owner"))
        // Callers who may not see every job see their own: another owner's filter matches nothing for them.
        if !(principal.has(.admin) || principal.has(.operate)) {
            if let requested = filter.owner, !Principal.sameOwner(requested, principal.owner) {
                return try JobRoutes.json(Page(jobs: [], nextCursor: nil))
            }
            filter.owner = principal.owner
        }
        filter.environment = try Self.textFilter("environment", query.get("environment"))
        if let text = query.get("batch") {
            guard let batch = UUID(uuidString: text) else {
                throw APIError(.badRequest, code: "invalid_batch_id", message: "batch must be a batch id (a UUID)")
            }
            filter.batchID = batch
        }
        var limit = Self.defaultLimit
        if let text = query.get("limit") {
            guard let value = Int(text), (1...Self.maxLimit).contains(value) else {
                throw APIError(
                    .badRequest, code: "invalid_limit", message: "limit must be an integer from 1 to \(Self.maxLimit)")
            }
            limit = value
        }
        var position: PostgresJobStore.ListPosition?
        if let text = query.get("cursor") {
            guard let decoded = Self.decodeCursor(text) else {
                throw APIError(
                    .badRequest, code: "invalid_cursor",
                    message: "cursor is not one this API returned; pass nextCursor of the previous page unchanged")
            }
            position = decoded
        }
        let page: (jobs: [Job], next: PostgresJobStore.ListPosition?)
        do {
            page = try await store.listJobs(filter, after: position, limit: limit)
        } catch is PostgresError {
            throw APIError.unavailable
        }
        return try JobRoutes.json(Page(jobs: page.jobs.map(JobView.init), nextCursor: page.next.map(Self.encodeCursor)))
    }

    static func textFilter(_ name: String, _ value: String?) throws -> String? {
        guard let value else { return nil }
        guard !value.isEmpty, value.utf8.count <= maxFilterBytes, !value.contains("\0") else {
            throw APIError(
                .badRequest, code: "invalid_filter",
                message: "\(name) must be 1 to \(maxFilterBytes) bytes without NUL characters")
        }
        return value
    }

    // MARK: Cursor

    /// base64url (no padding) of `<created_at in µs since 1970>:<job id>` of the page's last job.
    static func encodeCursor(_ position: PostgresJobStore.ListPosition) -> String {
        Data("\(position.createdMicroseconds):\(position.id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decodeCursor(_ text: String) -> PostgresJobStore.ListPosition? {
        guard !text.isEmpty, text.utf8.count <= 128 else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        guard let data = Data(base64Encoded: base64) else { return nil }
        let parts = String(decoding: data, as: UTF8.self).split(separator: ":", omittingEmptySubsequences: false)
        // Up to the year 9999: anything else was not made here, and would overflow Postgres's interval arithmetic.
        guard parts.count == 2, let micros = Int64(parts[0]), (0...253_402_300_800_000_000).contains(micros),
            let id = JobID(String(parts[1]))
        else { return nil }
        return PostgresJobStore.ListPosition(createdMicroseconds: micros, id: id)
    }
}
