import Domain
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix

/// Results uploaded by an attempt's publish pod (Kubernetes executor). The executor registers a secret per attempt,
/// the pod uploads each file to the gateway with it, the gateway records the file here, and the executor hands
/// `uploads(jobID:attempt:)` to `finish`, which stays the only writer of `job_results`.
extension PostgresJobStore {
    /// Whether an upload for an attempt may go ahead, and if not, why.
    package enum UploadAuthorization: Sendable, Hashable {
        /// The token is the attempt's, the attempt is the job's current one and the job has not finished.
        case allowed
        /// No job has this id.
        case unknownJob
        /// No token is registered for the attempt, or the hash is not its token's.
        case invalidToken
        /// The token is right but the job has moved on to another attempt, or has finished.
        case notCurrent
    }

    /// Stores the sha-256 of the attempt's upload token unless the attempt has one already. True when the stored
    /// token is `hash` (registered now, or by an earlier try of the same launch): the caller launches the attempt
    /// with it. False when another token is registered: the attempt was launched before (by a worker that died) and
    /// is being adopted, and its running pods keep the token they hold — replacing it would refuse their uploads.
    @discardableResult
    package func registerUploadToken(jobID: JobID, attempt: Int, hash: [UInt8]) async throws -> Bool {
        let rows = try await client.query(
            """
            insert into attempt_tokens (job_id, attempt, token_hash) values ($1, $2, $3)
            on conflict (job_id, attempt) do update set token_hash = attempt_tokens.token_hash
            returning token_hash = $3 as ours
            """,
            [.uuid(jobID.uuid), .int(Int64(attempt)), .bytea(hash)])
        return try rows.first?.bool("ours") ?? false
    }

    /// Stores a step's log read from the API as one of the attempt's uploads, under the name the publish step would
    /// have used (`configure.log`, `publish.log`, `algorithm.log`) and in the same place of the store (`logs/` for
    /// the algorithm's, `adminlogs/` for c2d's), so it is listed and served like every other result whoever
    /// finalizes the job. Fenced like every upload.
    package func archiveStepLog(
        _ bytes: ByteBuffer, name: String, kind: ResultKind, jobID: JobID, attempt: Int, resultStore: any ResultStore
    ) async throws {
        // Files are written on NIO's thread pool: blocking I/O has no place on Swift's cooperative threads.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-log-\(UUID().uuidString)")
        try await NIOThreadPool.singleton.runIfActive { try Data(bytes.readableBytesView).write(to: file) }
        defer { try? FileManager.default.removeItem(at: file) }
        let directory = kind == .algorithmLog ? "logs" : "adminlogs"
        let stored = try await resultStore.store(jobID: jobID, name: "\(attempt)/\(directory)/\(name)", from: file)
        try await recordUpload(jobID: jobID, attempt: attempt, name: name, kind: kind, stored: stored)
    }

    /// Checks an upload's token against the attempt, and the attempt against the job, in one query.
    package func uploadAuthorization(jobID: JobID, attempt: Int, hash: [UInt8]) async throws -> UploadAuthorization {
        let rows = try await client.query(
            """
            select j.attempt as current_attempt, j.finished_at is not null as finished,
                coalesce(t.token_hash = $3, false) as token_matches
            from jobs j left join attempt_tokens t on t.job_id = j.id and t.attempt = $2
            where j.id = $1
            """,
            [.uuid(jobID.uuid), .int(Int64(attempt)), .bytea(hash)])
        guard let row = rows.first else { return .unknownJob }
        guard try row.bool("token_matches") else { return .invalidToken }
        guard try row.int("current_attempt") == attempt, try !row.bool("finished") else { return .notCurrent }
        return .allowed
    }

    /// True only if `hash` is the attempt's token, the attempt is current and the job has not finished.
    package func checkUploadToken(jobID: JobID, attempt: Int, hash: [UInt8]) async throws -> Bool {
        try await uploadAuthorization(jobID: jobID, attempt: attempt, hash: hash) == .allowed
    }

    /// Records (or replaces: uploads are idempotent) one uploaded file of the attempt. Fenced like every worker
    /// write: false, and nothing recorded, when the attempt is no longer current or the job has finished.
    @discardableResult
    package func recordUpload(
        jobID: JobID, attempt: Int, name: String, kind: ResultKind, stored: StoredObject
    ) async throws -> Bool {
        try await client.execute(
            """
            insert into attempt_uploads (job_id, attempt, name, kind, size, sha256, location)
            select $1, $2, $3, $4, $5, $6, $7 from jobs
            where id = $1 and attempt = $2 and finished_at is null
            on conflict (job_id, attempt, kind, name) do update
            set size = excluded.size, sha256 = excluded.sha256, location = excluded.location, created_at = now()
            """,
            [
                .uuid(jobID.uuid), .int(Int64(attempt)), .text(name), .text(kind.rawValue), .int(stored.size),
                .text(stored.sha256), .text(stored.location),
            ]) == 1
    }

    /// The attempt's uploaded files in Ocean's result order (``UploadOrder``), indexed 0..n-1.
    package func uploads(jobID: JobID, attempt: Int) async throws -> [ResultFile] {
        let rows = try await client.query(
            """
            select name, kind, size, sha256, location from attempt_uploads where job_id = $1 and attempt = $2
            order by \(UploadOrder.orderBy(table: "attempt_uploads"))
            """,
            [.uuid(jobID.uuid), .int(Int64(attempt))])
        return try rows.enumerated().map { index, row in
            ResultFile(
                index: index, name: try row.string("name"),
                kind: ResultKind(rawValue: try row.string("kind")) ?? .output, size: Int64(try row.int("size")),
                sha256: try row.string("sha256"), location: try row.string("location"))
        }
    }
}

/// Ocean's result order for uploaded files, the one definition the worker's `finish` (through
/// ``PostgresJobStore/uploads(jobID:attempt:)``) and the scheduler's ``PostgresReconcileStore/terminate(_:in:)`` use:
/// outputs, then the algorithm's logs (`algorithm.log` first, as the local publisher orders them), then
/// `configrationLog`, then `publishLog`; by name in byte order within a kind.
enum UploadOrder {
    /// An `order by` list over `table`'s `kind` and `name` columns (an `attempt_uploads` row or an alias of one).
    static func orderBy(table: String) -> String {
        """
        case \(table).kind when 'output' then 0 when 'algorithmLog' then 1 when 'configrationLog' then 2 else 3 end, \
        \(table).kind = 'algorithmLog' and \(table).name <> 'algorithm.log', \(table).name collate "C"
        """
    }
}
