import Foundation
import Synchronization

/// Job inserts that arrive while earlier ones are being written go out together, as one multi-row statement with one
/// commit: group commit done by the client. A store has two of these, one for plain inserts and one for inserts
/// under an idempotency key (whose statement skips a job whose owner already used its key), so that plain inserts
/// stay non-speculative (see ``PostgresJobStore/jobInsert(rows:idempotent:)``).
///
/// Each single insert cost the server a statement and a commit, and the client two thread hand-overs (to the
/// connection's thread and back): at 8 concurrent submitters the client used a third of the machine's two cores and
/// inserts ran at a third of pgbench's rate for a bare single-row insert (docs/operations.md, "Where a submit's time
/// goes"). Now at most ``maximumConcurrentWrites`` statements are in flight; a caller who finds them all busy waits.
/// When a caller's statement finishes and others wait, its slot passes to a task that writes for the waiting, up to
/// ``maximumRows`` of them a statement, until none waits: each further statement then starts as soon as the last
/// one's result is in, without first handing the slot to a waiting caller's task (that cost an executor hand-over per
/// statement, about a tenth of the client's CPU per insert in `c2d bench db`). A lone caller goes straight through.
///
/// Every caller's call returns only after the statement holding its job committed. Two jobs under one owner and key
/// in one statement are one insert and one skip, as in two statements. What fails:
/// - A statement the server rejects for one job's data (SQLSTATE classes 22 and 23), or that ends in a deadlock
///   with another shared statement (``PostgresError/isSerializationFailure``), wrote nothing: its jobs are written
///   again one at a time, so only the offending job's caller gets an error. Rows go in a fixed order (agreement,
///   owner, key), so two shared statements take the unique indexes' locks in the same order and rarely deadlock.
/// - A statement cancelled with its writer's task (a caller writing its own job) wrote nothing either
///   (``PostgresConnection`` reports `CancellationError` only when the server aborted the statement, or when nothing
///   was sent): the writer's own job fails with the cancellation, and the jobs not yet written wait for the next
///   statement.
/// - Anything else (the connection lost, the statement timeout) fails every caller of the statement, as it would
///   have failed each of their own statements.
///
/// A waiting caller whose task is cancelled stays in line: its job is written with the others, and its call
/// returns normally.
final class CoalescedJobInserts: Sendable {
    /// Statements in flight at once: enough to keep the server busy while results travel back, few enough that
    /// concurrent submitters share statements. On two cores 1, 2 and 4 gave the same rate within noise and 8 (no
    /// sharing among 8 submitters) 40% less (docs/operations.md); 4 leaves room for a larger server.
    static let maximumConcurrentWrites = 4
    /// Jobs per statement at most; the waiting ones beyond it go in the next statement.
    static let maximumRows = 64

    /// One caller's job: the 14 parameters of ``PostgresJobStore/jobInsert(rows:idempotent:)``'s row.
    struct Row: Sendable {
        var jobID: UUID
        /// Where the row goes in a shared statement: its values in the unique indexes it may conflict in
        /// (agreement, owner and idempotency key), so every statement locks them in one order.
        var lockOrder: String
        var parameters: [PostgresValue]

        init(jobID: UUID, agreementID: String?, owner: String, idempotencyKey: String?, parameters: [PostgresValue]) {
            self.jobID = jobID
            self.lockOrder = [agreementID ?? "", owner, idempotencyKey ?? ""].joined(separator: "\u{0}")
            self.parameters = parameters
        }
    }

    private enum Turn: Sendable {
        /// The statement committed: the job's creation time as `extract(epoch …)` text, or nil when the job was
        /// skipped because its owner already has a job under its idempotency key.
        case written(createdEpoch: String?)
        /// This caller writes after all (a slot freed as it was about to wait): its own job and `others`.
        case write(others: [Waiter])
    }

    private struct Waiter: Sendable {
        var row: Row
        var continuation: CheckedContinuation<Turn, any Error>

        /// Resumes the waiting caller with its job's outcome.
        func answer(_ outcome: Result<String?, any Error>) {
            continuation.resume(with: outcome.map { .written(createdEpoch: $0) })
        }
    }

    private struct State {
        var writing = 0
        var waiting: [Waiter] = []

        /// Takes a write slot and the waiters that go with it, or nil when every slot is busy.
        mutating func startWrite() -> [Waiter]? {
            guard writing < CoalescedJobInserts.maximumConcurrentWrites else { return nil }
            writing += 1
            let count = min(waiting.count, CoalescedJobInserts.maximumRows - 1)
            defer { waiting.removeFirst(count) }
            return Array(waiting.prefix(count))
        }
    }

    private let state = Mutex(State())
    private let client: PostgresClient
    /// Whether the statement skips jobs whose owner already used their idempotency key.
    private let idempotent: Bool

    init(client: PostgresClient, idempotent: Bool) {
        self.client = client
        self.idempotent = idempotent
    }

    /// Writes `row` (alone or with others) and returns its creation time as `extract(epoch …)` text, or nil when
    /// the job was skipped for its idempotency key (never for a plain insert).
    func insert(_ row: Row) async throws -> String? {
        var others = state.withLock { $0.startWrite() }
        if others == nil {
            let turn = try await withCheckedThrowingContinuation { continuation in
                let start = state.withLock { state -> [Waiter]? in
                    // A slot may have freed since the first look; its writer found nobody waiting.
                    if let others = state.startWrite() { return others }
                    state.waiting.append(Waiter(row: row, continuation: continuation))
                    return nil
                }
                if let start { continuation.resume(returning: .write(others: start)) }
            }
            switch turn {
            case .written(let createdEpoch): return createdEpoch
            case .write(let waiters): others = waiters
            }
        }
        let result = await write(row, with: others ?? [])
        finishWrite()
        return try result.get()
    }

    /// Frees the write slot, unless callers wait: then the slot passes to a task that writes for them.
    private func finishWrite() {
        let drain = state.withLock { state -> Bool in
            guard state.waiting.isEmpty else { return true }
            state.writing -= 1
            return false
        }
        if drain { Task { await self.drain() } }
    }

    /// Writes for the waiting callers, up to ``maximumRows`` of them a statement, until none waits; then frees the
    /// slot it holds.
    private func drain() async {
        while true {
            let group = state.withLock { state -> [Waiter]? in
                guard !state.waiting.isEmpty else {
                    state.writing -= 1
                    return nil
                }
                let count = min(state.waiting.count, Self.maximumRows)
                defer { state.waiting.removeFirst(count) }
                return Array(state.waiting.prefix(count))
            }
            guard let group, let first = group.first else { return }
            first.answer(await write(first.row, with: Array(group.dropFirst())))
        }
    }

    /// Writes `own` and `others` in one statement and answers `others`; returns `own`'s outcome.
    private func write(_ own: Row, with others: [Waiter]) async -> Result<String?, any Error> {
        let rows = ([own] + others.map(\.row)).sorted { $0.lockOrder < $1.lockOrder }
        do {
            let written = try await client.query(
                PostgresJobStore.jobInsert(rows: rows.count, idempotent: idempotent), rows.flatMap(\.parameters))
            // The statement committed: a row that cannot be read fails only its own caller (as a missing row),
            // never the others, whose jobs are stored.
            var epochs: [UUID: String] = [:]
            for row in written {
                guard let id = try? row.uuid("id"), let epoch = try? row.string("created_epoch") else { continue }
                epochs[id] = epoch
            }
            for waiter in others { waiter.answer(outcome(of: waiter.row, in: epochs)) }
            return outcome(of: own, in: epochs)
        } catch let error as PostgresError where !others.isEmpty && Self.writtenAgainAlone(error) {
            // Nothing was written: each job again on its own, so only the offending one fails (and single rows
            // cannot deadlock with each other).
            for (index, waiter) in others.enumerated() {
                let outcome = await writeAlone(waiter.row)
                if case .failure(let failure) = outcome, failure is CancellationError {
                    // This writer was cancelled: the jobs it has not written wait for the next writer.
                    state.withLock { $0.waiting.insert(contentsOf: others[index...], at: 0) }
                    return .failure(CancellationError())
                }
                waiter.answer(outcome)
            }
            return await writeAlone(own)
        } catch is CancellationError where !others.isEmpty {
            // Nothing was written, and only this writer was cancelled: the others go back to the front of the line.
            state.withLock { $0.waiting.insert(contentsOf: others, at: 0) }
            return .failure(CancellationError())
        } catch {
            for waiter in others { waiter.answer(.failure(error)) }
            return .failure(error)
        }
    }

    /// Whether a shared statement that failed with `error` is written again one job at a time: it wrote nothing, and
    /// single rows would not fail the same way together.
    private static func writtenAgainAlone(_ error: PostgresError) -> Bool {
        error.rejectsData || error.isSerializationFailure
    }

    private func writeAlone(_ row: Row) async -> Result<String?, any Error> {
        do {
            let written = try await client.query(
                PostgresJobStore.jobInsert(rows: 1, idempotent: idempotent), row.parameters)
            guard let first = written.first else { return idempotent ? .success(nil) : .failure(Self.missing(row)) }
            return .success(try first.string("created_epoch"))
        } catch {
            return .failure(error)
        }
    }

    /// The row's creation time if the statement returned it; else skipped (idempotent) or an error (plain).
    private func outcome(of row: Row, in epochs: [UUID: String]) -> Result<String?, any Error> {
        if let epoch = epochs[row.jobID] { return .success(epoch) }
        return idempotent ? .success(nil) : .failure(Self.missing(row))
    }

    private static func missing(_ row: Row) -> PostgresError {
        PostgresError(code: .server, message: "the insert returned no row for job \(row.jobID)")
    }
}
