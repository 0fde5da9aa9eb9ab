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
/// goes"). Now at most ``maximumConcurrentWrites`` statements are in flight, and a further one starts only when it
/// carries at least as many jobs as those in flight do on average; a caller whose statement would not start waits.
/// When a caller's statement finishes and the waiting make one that starts, its slot passes to a task that writes
/// for them, up to ``maximumRows`` a statement, while they do: each further statement then starts as soon as the
/// last one's result is in, without first handing the slot to a waiting caller's task (that cost an executor
/// hand-over per statement, about a tenth of the client's CPU per insert in `c2d bench db`). A lone caller goes
/// straight through.
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
        /// Statements in flight, and the jobs they carry.
        var writing = 0
        var rowsInFlight = 0
        var waiting: [Waiter] = []

        /// Whether a statement of `rows` jobs starts now: at once when none is in flight (a lone caller goes
        /// straight through), otherwise only if a slot is free and it carries at least as many jobs as the
        /// statements in flight do on average. Callers that return together then split into statements of even
        /// size, instead of one that takes whoever waits at that instant and a trail of single-job ones behind it.
        func starts(rows: Int) -> Bool {
            writing == 0 || (writing < CoalescedJobInserts.maximumConcurrentWrites && rows * writing >= rowsInFlight)
        }

        /// Takes a slot and the waiters that go with the caller's job in a statement, or nil when it does not start
        /// now (see ``starts(rows:)``).
        mutating func startWrite() -> [Waiter]? {
            take(own: 1)
        }

        /// Frees the slot of a statement of `rows` jobs that finished, and takes it again with the waiters that go
        /// in the next statement, or returns nil (nobody waits, or too few while others are in flight).
        mutating func nextWrite(afterWriting rows: Int) -> [Waiter]? {
            writing -= 1
            rowsInFlight -= rows
            return take(own: 0)
        }

        private mutating func take(own: Int) -> [Waiter]? {
            let count = min(waiting.count, CoalescedJobInserts.maximumRows - own)
            guard count + own > 0, starts(rows: count + own) else { return nil }
            writing += 1
            rowsInFlight += count + own
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
        let group = others ?? []
        let result = await write(row, with: group)
        finishWrite(rows: 1 + group.count)
        return try result.get()
    }

    /// Frees the write slot of a statement of `rows` jobs, unless callers wait who go in the next statement: then
    /// the slot passes to a task that writes for them.
    private func finishWrite(rows: Int) {
        guard let next = state.withLock({ $0.nextWrite(afterWriting: rows) }) else { return }
        Task { await self.drain(next) }
    }

    /// Writes `group` for the waiting callers, then the next group while one goes in the next statement, up to
    /// ``maximumRows`` a statement; then frees the slot it holds.
    private func drain(_ group: [Waiter]) async {
        var group = group
        while let writer = group.first {
            writer.answer(await write(writer.row, with: Array(group.dropFirst())))
            let rows = group.count
            guard let next = state.withLock({ $0.nextWrite(afterWriting: rows) }) else { return }
            group = next
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
