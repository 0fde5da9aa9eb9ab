import Crypto
import Domain
import Foundation
import HTTPTypes
import Logging
import Persistence

/// Where the jobs of a `POST /v1/batches` go: which batch, under which job ids, and whether an earlier request
/// with the same `Idempotency-Key` already wrote them.
///
/// A client that submits a large batch in chunks (`c2d batch submit`) sends each chunk with its own key, the
/// batch id the first chunk got (`batchId`) and the chunk's first index within the batch (`position`). A chunk
/// whose key the owner already used is answered with the jobs of the first request (200) and writes nothing, so a
/// client may resend any chunk after a crash or a timeout; a chunk that overlaps another chunk of the batch under
/// another key is refused (409), so changing the chunk size midway cannot duplicate jobs either.
struct BatchPlacement: Sendable {
    var batchID: UUID
    /// The ids the new jobs get, in request order.
    var jobIDs: [JobID]
    /// Jobs an earlier request with the same key wrote: answer them, write nothing.
    var existing: [Job]?
    /// This request created the batch row (removed again if writing the jobs fails).
    var createdBatch: Bool
    /// The key was reserved by an earlier request that died before writing its jobs: these jobs may be written
    /// concurrently by another retry, so a duplicate key on insert means "already written".
    var resumesReservation: Bool
}

extension JobSubmitter {
    /// Picks the batch and job ids for `count` validated jobs of `request` (see ``BatchPlacement``).
    func placeBatch(
        _ request: BatchRequest, owner: String, viewers: [String], environment: ComputeEnvironment, count: Int,
        idempotencyKey: String?, requestSHA256: String
    ) async throws -> BatchPlacement {
        if let idempotencyKey { try Self.checkIdempotencyKey(idempotencyKey) }
        if let position = request.position, position < 0 {
            throw APIError(.badRequest, code: "invalid_field", message: "field 'position' must be 0 or more")
        }
        do {
            if let idempotencyKey,
                let previous = try await store.batchSubmission(owner: owner, key: idempotencyKey)
            {
                return try await replay(previous, requestSHA256: requestSHA256, createdBatch: nil)
            }
            let batchID = request.batchId ?? UUID()
            var createdBatch = false
            switch try await store.ensureBatch(
                id: batchID, owner: owner, environment: environment.id, viewers: viewers)
            {
            case .created:
                createdBatch = true
            case .existing(let batch):
                // Another owner's batch is 404, as if it did not exist: batch ids reveal nothing.
                guard Principal.sameOwner(batch.owner, owner) else {
                    throw APIError.batchNotFound(batchID.uuidString.lowercased())
                }
                guard batch.environment == environment.id else {
                    throw APIError(
                        .conflict, code: "batch_environment_mismatch",
                        message: "batch \(batchID.uuidString.lowercased()) runs in environment '\(batch.environment)'; "
                            + "submit its jobs there, or start a new batch without 'batchId'")
                }
            }
            let jobIDs = (0..<count).map { _ in JobID() }
            let placement = BatchPlacement(
                batchID: batchID, jobIDs: jobIDs, existing: nil, createdBatch: createdBatch,
                resumesReservation: false)
            guard let idempotencyKey else { return placement }
            let submission = PostgresJobStore.BatchSubmission(
                owner: owner, idempotencyKey: idempotencyKey, batchID: batchID, position: request.position,
                jobIDs: jobIDs, requestSHA256: requestSHA256)
            switch try await store.reserveBatchSubmission(submission) {
            case .reserved:
                return placement
            case .replay(let previous):
                return try await replay(
                    previous, requestSHA256: requestSHA256, createdBatch: createdBatch ? batchID : nil)
            case .overlaps(let position, let existingCount):
                if createdBatch { try? await store.deleteEmptyBatch(batchID) }
                throw APIError(
                    .conflict, code: "batch_chunk_overlap",
                    message:
                        "jobs \(position)–\(position + existingCount - 1) of batch \(batchID.uuidString.lowercased()) "
                        + "were already submitted under another Idempotency-Key; resend the same chunks (the same "
                        + "chunk size), or submit to a new batch")
            }
        } catch let error as PostgresError {
            logger.error("batch placement failed", metadata: ["error": "\(error)"])
            throw APIError.unavailable
        }
    }

    /// The answer for a key used before: its jobs if they were written, else the reservation to write them now.
    private func replay(
        _ previous: PostgresJobStore.BatchSubmission, requestSHA256: String, createdBatch: UUID?
    ) async throws -> BatchPlacement {
        if let createdBatch { try? await store.deleteEmptyBatch(createdBatch) }
        guard previous.requestSHA256 == requestSHA256 else {
            throw APIError(
                .unprocessableContent, code: "idempotency_key_reused",
                message: "this Idempotency-Key was used for a different batch request; use a new key for new jobs")
        }
        let existing = try await store.jobs(previous.jobIDs)
        if existing.count != previous.jobIDs.count && previous.written {
            throw APIError(
                .conflict, code: "idempotency_key_expired",
                message: "the jobs this Idempotency-Key created were removed after their environment's storageExpiry; "
                    + "submit them again under a new key")
        }
        return BatchPlacement(
            batchID: previous.batchID, jobIDs: previous.jobIDs,
            existing: existing.count == previous.jobIDs.count ? existing : nil, createdBatch: false,
            resumesReservation: existing.count != previous.jobIDs.count)
    }

    /// Records that the jobs of a keyed submission are written, so a later resend whose jobs are gone is told they
    /// expired instead of having them made again. Best effort: if it fails, a resend still finds the jobs while they
    /// exist.
    func confirmWritten(owner: String, idempotencyKey: String?) async {
        guard let idempotencyKey else { return }
        do {
            try await store.markBatchSubmissionWritten(owner: owner, key: idempotencyKey)
        } catch {
            logger.warning("cannot mark a batch submission written", metadata: ["error": "\(error)"])
        }
    }

    static func checkIdempotencyKey(_ key: String) throws {
        guard !key.isEmpty, key.count <= maxIdempotencyKeyLength, !key.contains("\0") else {
            throw APIError(
                .badRequest, code: "invalid_idempotency_key",
                message: "Idempotency-Key must be 1 to \(maxIdempotencyKeyLength) characters without NUL characters")
        }
    }

    /// Lowercase hex sha-256 of a request body: what a reused key is compared by.
    static func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(bytes))
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
