import ArgumentParser
import Domain
import Foundation
import NIOHTTP1
import Storage

/// `c2d batch …`: many jobs at once (Armada's job sets): submit a file of jobs in resumable chunks, follow the
/// batch, stop it, fetch its results.
struct BatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Submit a file of jobs as one batch, follow it, stop it, get its results.",
        discussion: """
            Talks to a gateway over HTTP like 'c2d job' (C2D_URL/--url, C2D_TOKEN/--token, --json) and exits \
            the same way: 0 done (with --wait or watch: every job succeeded), 1 some job failed, 2 some job \
            was stopped, 3 some job timed out, 4 no such batch, 5 refused, 6 not allowed, 7 gateway \
            unreachable, 8 --timeout passed, 64 bad command line.
            """,
        subcommands: [Submit.self, Status.self, Watch.self, Stop.self, Results.self])

    // MARK: submit

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Submit every job of a file as one batch, in chunks; safe to run again after an interruption.",
            discussion: """
                The file is JSON lines (.jsonl: one job per line), a YAML stream (one job per document), or a \
                JSON or YAML list of jobs or {"environment", "jobs": [...]}; a job is {"workflow": ...} or a bare \
                workflow {"stages": ...}.

                Jobs go in chunks of --chunk-size, each with an Idempotency-Key made of the key prefix, the \
                chunk's position and a hash of its jobs. Running the same command again after an interruption \
                (a crash, Ctrl-C, a lost connection) resubmits nothing that was already accepted: the gateway \
                answers those chunks with the jobs it made the first time, and the rest are submitted. The prefix \
                is derived from the file's content unless --idempotency-key gives one: to submit the same file \
                again as a new batch, give a new --idempotency-key; after fixing a refused job, resume with the \
                prefix the first run printed. Keep --chunk-size when resuming (a changed chunk size is refused, \
                never duplicated).
                """)

        @OptionGroup var client: ClientOptions

        @Option(
            name: [.customShort("f"), .long], help: "The jobs file (.jsonl, .yaml, .yml, .json; - for stdin).",
            completion: .file(extensions: ["jsonl", "ndjson", "json", "yaml", "yml"]))
        var file: String

        @Option(help: "The environment to run in (default: the file's \"environment\").")
        var environment: String?

        @Option(help: "Jobs per request.")
        var chunkSize: Int = 500

        @Option(help: "Prefix of the chunks' idempotency keys (default: derived from the file's content).")
        var idempotencyKey: String?

        @Flag(help: "Wait for every job to end; exit with the worst outcome.")
        var wait = false

        @Option(help: "With --wait: seconds to wait before giving up (exit 8; the jobs go on).")
        var timeout: Int?

        func validate() throws {
            guard (1...10_000).contains(chunkSize) else { throw ValidationError("--chunk-size must be 1 to 10000") }
            try ClientOptions.validate(timeout: timeout, onlyWith: ("--wait", wait))
            if let idempotencyKey, idempotencyKey.isEmpty || idempotencyKey.count > 100 || idempotencyKey.contains(":")
            {
                throw ValidationError("--idempotency-key must be 1 to 100 characters without ':'")
            }
        }

        func run() async throws {
            try await JobClient.run(client) { api in
                let batch = try BatchFile.load(path: file)
                guard let environment = environment ?? batch.environment else {
                    throw ClientFailure(
                        .invalid, "no environment: pass --environment or put \"environment\" in \(file)")
                }
                guard !batch.items.isEmpty else { throw ClientFailure(.invalid, "\(file) holds no jobs") }
                let prefix = idempotencyKey ?? Self.derivedPrefix(environment: environment, items: batch.items)
                let submitter = ChunkedSubmission(
                    api: api, environment: environment, environmentOption: self.environment, items: batch.items,
                    chunkSize: chunkSize, prefix: prefix,
                    file: file, progress: client.json ? .none : (ClientOutput.standardErrorIsTerminal ? .bar : .lines))
                let result = try await submitter.run()
                // With --wait too: the job ids are only here, and the events and final status follow as more lines.
                if client.json {
                    ClientOutput.printJSON([
                        "batchId": result.batchID, "jobs": result.jobIDs, "submitted": result.created,
                        "alreadySubmitted": result.replayed, "idempotencyKey": prefix,
                    ])
                } else {
                    print(result.batchID)
                }
                guard wait else { return .success }
                return try await BatchCommand.watch(api, id: result.batchID, json: client.json, timeout: timeout)
            }
        }

        /// `auto-` and 24 hex digits of the sha-256 of the environment and every job: the same file gives the same
        /// keys, so running it again resumes instead of duplicating.
        static func derivedPrefix(environment: String, items: [BatchFile.Item]) -> String {
            var all = Data(environment.utf8)
            for item in items {
                all.append(0x0A)
                all.append(item.workflow)
            }
            return "auto-" + SigV4Signer.sha256Hex(all).prefix(24)
        }
    }

    // MARK: status

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a batch's jobs counted by status and outcome.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The batch's id.") var id: String

        func run() async throws {
            try await JobClient.run(client) { api in
                let reply = try await api.getJSON("/v1/batches/\(JobClient.pathSegment(id))")
                if client.json {
                    ClientOutput.printJSON(reply.body)
                } else {
                    print(BatchCommand.describe(reply.object))
                }
                return .success
            }
        }
    }

    // MARK: watch

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Follow a batch until every job has ended (a progress bar on a terminal); exit with the worst "
                + "outcome.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The batch's id.") var id: String
        @Option(help: "Seconds to wait before giving up (exit 8; the jobs go on).") var timeout: Int?

        func validate() throws { try ClientOptions.validate(timeout: timeout) }

        func run() async throws {
            try await JobClient.run(client) { api in
                try await BatchCommand.watch(api, id: id, json: client.json, timeout: timeout)
            }
        }
    }

    // MARK: stop

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop every unfinished job of a batch.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The batch's id.") var id: String

        func run() async throws {
            try await JobClient.run(client) { api in
                let reply = try await api.send(.POST, "/v1/batches/\(JobClient.pathSegment(id))/stop")
                if client.json {
                    ClientOutput.printJSON(reply.body)
                } else {
                    let reached = reply.object["stopRequested"] as? Int ?? 0
                    print("batch \(id): stop requested for \(reached) unfinished job(s)")
                }
                return .success
            }
        }
    }

    // MARK: results

    struct Results: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a batch's jobs with their outcomes, or download one result of each succeeded job.",
            discussion: """
                --get N -o DIR downloads result N of every succeeded job into DIR as <job id>-<name> (N = 0 is the \
                first output; 'c2d job results <id>' shows a job's indexes).
                """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "The batch's id.") var id: String
        @Option(help: "Download the result with this index of every succeeded job.") var get: Int?
        @Option(name: [.customShort("o"), .long], help: "The directory --get writes into.") var output = "."

        static func row(_ job: [String: Any]) -> String {
            let id = (job["id"] as? String ?? "").padding(toLength: 38, withPad: " ", startingAt: 0)
            let status = String(job["status"] as? Int ?? 0).padding(toLength: 8, withPad: " ", startingAt: 0)
            let outcome = job["outcome"] as? String ?? "-"
            let exit = (job["exitCode"] as? Int).map { String($0) } ?? "-"
            let reason = outcome == "succeeded" ? "" : (job["failureReason"] as? String ?? "")
            return id + status + outcome.padding(toLength: 12, withPad: " ", startingAt: 0)
                + exit.padding(toLength: 6, withPad: " ", startingAt: 0) + reason
        }

        func run() async throws {
            try await JobClient.run(client) { api in
                var jobs: [[String: Any]] = []
                var cursor: String?
                repeat {
                    var path = "/v1/jobs?batch=\(JobClient.pathSegment(id))&limit=500"
                    if let cursor { path += "&cursor=\(cursor)" }
                    let reply = try await api.getJSON(path)
                    jobs += reply.object["jobs"] as? [[String: Any]] ?? []
                    cursor = reply.object["nextCursor"] as? String
                } while cursor != nil
                if jobs.isEmpty {
                    _ = try await api.getJSON("/v1/batches/\(JobClient.pathSegment(id))")  // 404 for an unknown batch
                }
                guard let get else {
                    if client.json {
                        ClientOutput.printJSON(["batchId": id, "jobs": jobs])
                    } else {
                        print("ID                                    STATUS  OUTCOME     EXIT  REASON")
                        for job in jobs.reversed() { print(Self.row(job)) }
                    }
                    return .success
                }
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                let succeeded = jobs.compactMap { $0["outcome"] as? String == "succeeded" ? $0["id"] as? String : nil }
                var written: [[String: Any]] = []
                var missing = 0
                for job in succeeded {
                    let list = try await api.getJSON("/v1/jobs/\(job)/results")
                    let results = list.object["results"] as? [[String: Any]] ?? []
                    guard let result = results.first(where: { $0["index"] as? Int == get }) else {
                        missing += 1
                        continue
                    }
                    let name = (result["filename"] as? String ?? "result").split(separator: "/").last.map(String.init)
                    let target = (output as NSString).appendingPathComponent("\(job)-\(name ?? "result")")
                    let size = try await api.download("/v1/jobs/\(job)/results/\(get)", to: target)
                    written.append(["jobId": job, "file": target, "size": size])
                }
                if client.json {
                    ClientOutput.printJSON(["batchId": id, "files": written, "withoutResult": missing])
                } else {
                    ClientOutput.note(
                        "wrote \(written.count) file(s) to \(output)"
                            + (missing > 0 ? "; \(missing) succeeded job(s) have no result \(get)" : "")
                            + (jobs.count > succeeded.count
                                ? "; \(jobs.count - succeeded.count) job(s) did not succeed" : ""))
                }
                return .success
            }
        }
    }

    // MARK: Shared

    /// Follows the batch's events until every job has ended, drawing progress (a bar on a terminal, a line per
    /// second otherwise, JSON lines of events with `json`), then returns the exit for the worst outcome.
    static func watch(_ api: JobClient, id: String, json: Bool, timeout: Int?) async throws -> ClientExit {
        ClientInterruption.onStop(say: "batch \(id) goes on (`c2d batch watch \(id)` follows it)")
        let path = "/v1/batches/\(JobClient.pathSegment(id))"
        let initial = try await api.getJSON(path).object
        let total = initial["total"] as? Int ?? 0
        // The stream replays the batch's events from its start: counting only what it has shown so far would start
        // a finished batch at 0.
        let endedBefore = total - (initial["unfinished"] as? Int ?? total)
        var ended = Set<String>()
        var endedCount: Int { max(ended.count, endedBefore) }
        let terminal = ClientOutput.standardErrorIsTerminal && !json
        var lastDrawn = ContinuousClock.now - .seconds(10)
        var lastCount = -1
        func draw(force: Bool) {
            guard !json, force || lastCount != endedCount else { return }
            let now = ContinuousClock.now
            guard force || now - lastDrawn >= (terminal ? .milliseconds(100) : .seconds(1)) else { return }
            lastDrawn = now
            lastCount = endedCount
            let line = ClientOutput.bar(endedCount, max(total, endedCount), "jobs ended")
            if terminal {
                FileHandle.standardError.write(Data("\r\(line)".utf8))
            } else {
                ClientOutput.note("batch \(id): \(endedCount)/\(max(total, endedCount)) jobs ended")
            }
        }
        let deadline = timeout.map { ContinuousClock.now + .seconds($0) }
        do {
            try await api.follow(path + "/events", deadline: deadline) { event in
                if json { ClientOutput.printJSON(event.data) }
                if event.isTerminal { ended.insert(event.jobID) }
                draw(force: false)
            }
        } catch let failure as ClientFailure where failure.exit == .gaveUp {
            if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
            throw ClientFailure(.gaveUp, "batch \(id) did not finish within \(timeout ?? 0) s; its jobs go on")
        }
        draw(force: true)
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
        let final = try await api.getJSON(path)
        let counts = final.object["byOutcome"] as? [String: Int] ?? [:]
        if json {
            ClientOutput.printJSON(final.body)
        } else {
            ClientOutput.note(
                "batch \(id): "
                    + ["succeeded", "failed", "stopped", "timed_out"].map { "\(counts[$0] ?? 0) \($0)" }
                    .joined(separator: ", "))
        }
        guard final.object["unfinished"] as? Int == 0 else {
            throw ClientFailure(.unavailable, "the event stream of batch \(id) ended early; watch it again")
        }
        return ClientExit.forOutcomes(counts)
    }

    static func describe(_ batch: [String: Any]) -> String {
        let byStatus = (batch["byStatus"] as? [String: Int] ?? [:]).sorted { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }
        let statuses = byStatus.map { entry in
            let text = Int(entry.key).flatMap(JobStatus.init(rawValue:))?.text.trimmed ?? ""
            return "\(entry.value) × \(entry.key) \(text)"
        }
        let outcomes = (batch["byOutcome"] as? [String: Int] ?? [:]).sorted { $0.key < $1.key }
            .map { "\($0.value) \($0.key)" }
        return ClientOutput.block([
            ("id", batch["id"] as? String),
            ("environment", batch["environment"] as? String),
            ("owner", batch["owner"] as? String),
            ("created", batch["dateCreated"] as? String),
            ("finished", batch["dateFinished"] as? String),
            ("jobs", (batch["total"] as? Int).map { "\($0) (\(batch["unfinished"] as? Int ?? 0) unfinished)" }),
            ("by status", statuses.joined(separator: ", ")),
            ("by outcome", outcomes.joined(separator: ", ")),
        ])
    }
}

/// Submits a batch file chunk by chunk (see `BatchCommand.Submit`): each chunk with its idempotency key, the batch
/// id the first chunk got, and its position; transient failures are tried again with the same key.
struct ChunkedSubmission {
    enum Progress {
        case none, bar, lines
    }

    let api: JobClient
    let environment: String
    /// The `--environment` given, if any: a resume command repeats it.
    let environmentOption: String?
    let items: [BatchFile.Item]
    let chunkSize: Int
    let prefix: String
    let file: String
    let progress: Progress

    struct Result {
        var batchID: String
        var jobIDs: [String]
        /// Jobs this run created.
        var created: Int
        /// Jobs an earlier run had already submitted.
        var replayed: Int
    }

    func run() async throws -> Result {
        var batchID: String?
        var jobIDs: [String] = []
        var created = 0
        var replayed = 0
        let total = items.count
        for position in stride(from: 0, to: total, by: chunkSize) {
            ClientInterruption.onStop(
                say: "\(position) of \(total) jobs are in\(batchID.map { " batch \($0)" } ?? ""); run the same command "
                    + "again to go on: nothing is submitted twice")
            let chunk = Array(items[position..<min(position + chunkSize, total)])
            let (status, reply) = try await send(chunk, position: position, batchID: batchID)
            guard let id = reply["batchId"] as? String, let ids = reply["jobs"] as? [String], ids.count == chunk.count
            else {
                throw ClientFailure(.unavailable, "the gateway's answer to a batch chunk is not what this c2d expects")
            }
            batchID = id
            jobIDs += ids
            if status == 200 { replayed += ids.count } else { created += ids.count }
            report(done: jobIDs.count, total: total, batchID: id, replayed: status == 200)
        }
        ClientInterruption.onStop(say: nil)
        if progress == .bar { FileHandle.standardError.write(Data("\n".utf8)) }
        if replayed > 0 && progress != .none {
            ClientOutput.note(
                "\(replayed) job(s) had been submitted before (key prefix \(prefix)); \(created) new"
                    + (created == 0 ? ": to submit these jobs again as a new batch, pass a new --idempotency-key" : ""))
        }
        return Result(batchID: batchID ?? "", jobIDs: jobIDs, created: created, replayed: replayed)
    }

    private func report(done: Int, total: Int, batchID: String, replayed: Bool) {
        switch progress {
        case .none:
            break
        case .bar:
            FileHandle.standardError.write(
                Data("\r\(ClientOutput.bar(done, total, "jobs submitted to batch \(batchID)"))".utf8))
        case .lines:
            ClientOutput.note(
                "batch \(batchID): submitted \(done)/\(total) jobs" + (replayed ? " (chunk was already submitted)" : "")
            )
        }
    }

    /// One chunk, tried up to five times while the gateway is unreachable or failing; the same key each time, so a
    /// try that did get through is answered with its jobs instead of duplicating them.
    private func send(
        _ chunk: [BatchFile.Item], position: Int, batchID: String?
    ) async throws -> (Int, [String: Any]) {
        var joined = Data()
        for item in chunk {
            joined.append(item.workflow)
            joined.append(0x0A)
        }
        let key = "\(prefix):\(position):\(SigV4Signer.sha256Hex(joined).prefix(32))"
        var body = Data("{\"environment\":".utf8)
        body.append(try JSONEncoder().encode(environment))
        body.append(Data(",\"position\":\(position)".utf8))
        if let batchID { body.append(Data(",\"batchId\":\"\(batchID)\"".utf8)) }
        body.append(Data(",\"jobs\":[".utf8))
        for (index, item) in chunk.enumerated() {
            if index > 0 { body.append(Data(",".utf8)) }
            body.append(Data("{\"workflow\":".utf8))
            body.append(item.workflow)
            body.append(Data("}".utf8))
        }
        body.append(Data("]}".utf8))
        var backoff: Duration = .seconds(1)
        for attempt in 1...5 {
            do {
                let reply = try await api.send(.POST, "/v1/batches", body: body, headers: ["idempotency-key": key])
                return (reply.status, reply.object)
            } catch let failure as ClientFailure where failure.exit == .unavailable && attempt < 5 {
                if progress != .none { ClientOutput.note("\n\(failure.message); trying again in \(backoff)") }
                try await Task.sleep(for: backoff)
                backoff *= 2
            } catch let failure as ClientFailure {
                throw explain(failure, chunk: chunk, position: position, batchID: batchID)
            }
        }
        throw ClientFailure(.unavailable, "unreachable")
    }

    /// `text` as one word for a POSIX shell: as it is when it has only characters no shell treats specially, else
    /// in single quotes.
    static func shellQuoted(_ text: String) -> String {
        let plain =
            !text.isEmpty
            && text.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || "-_./=:,+@%".unicodeScalars.contains($0)
            }
        return plain ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// What went wrong with a chunk, in terms of the file, and how to go on.
    private func explain(
        _ failure: ClientFailure, chunk: [BatchFile.Item], position: Int, batchID: String?
    ) -> ClientFailure {
        // Every option that decides what goes in, so the line runs as printed.
        let resume =
            "c2d batch submit -f \(Self.shellQuoted(file))"
            + (environmentOption.map { " --environment \(Self.shellQuoted($0))" } ?? "")
            + " --idempotency-key \(Self.shellQuoted(prefix)) --chunk-size \(chunkSize)"
        let fix =
            failure.code != "unknown_environment"
            ? "Fix the file" : environmentOption == nil ? "Fix the file's environment" : "Fix --environment"
        let done =
            position == 0
            ? "nothing was submitted"
            : "jobs 1-\(position) are in batch \(batchID ?? "?"); nothing of the failed chunk was written"
        switch failure.exit {
        case .unavailable:
            return ClientFailure(
                .unavailable,
                "\(failure.message)\n\(done). Run the same command again to go on: nothing is "
                    + "submitted twice")
        case .invalid:
            var message = failure.message
            if let body = failure.body,
                let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any],
                object["code"] as? String == "invalid_batch"
            {
                message += "\n" + Self.itemErrors(object, chunk: chunk).joined(separator: "\n")
            }
            if message.contains("batch_chunk_overlap") {
                message += "\nResume with the --chunk-size of the first run."
            }
            return ClientFailure(.invalid, "\(message)\n\(done). \(fix), then resume with: \(resume)")
        default:
            return failure
        }
    }
}

extension ChunkedSubmission {
    /// The per-job errors of an `invalid_batch` answer, placed in the file.
    static func itemErrors(_ object: [String: Any], chunk: [BatchFile.Item]) -> [String] {
        (object["errors"] as? [[String: Any]] ?? []).prefix(20).map { error in
            let index = error["index"] as? Int ?? -1
            let source = chunk.indices.contains(index) ? chunk[index].source : "job \(index)"
            return "\(source): \(error["code"] as? String ?? "?"): \(error["message"] as? String ?? "")"
        }
    }
}
