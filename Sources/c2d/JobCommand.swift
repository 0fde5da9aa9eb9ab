import ArgumentParser
import Domain
import Foundation
import NIOHTTP1

/// `c2d job …`: submit, follow and fetch one job through the native API, like `armadactl` and `kubectl` do for
/// theirs. The gateway is `C2D_URL` (or `--url`), the caller `C2D_TOKEN` (or `--token`).
struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job",
        abstract: "Submit a job, follow it, get its logs and results, stop it, list jobs.",
        discussion: """
            Talks to a gateway over HTTP: C2D_URL (or --url, default http://127.0.0.1:8080) with the token \
            C2D_TOKEN (or --token). Every command has --json. Exit codes: 0 done (with --wait or watch: the job \
            succeeded), 1 the job failed, 2 stopped, 3 timed out, 4 no such job, 5 refused (invalid file or \
            request; nothing was written), 6 token missing or not allowed, 7 gateway unreachable or failing, 8 \
            --timeout passed (the job goes on), 64 bad command line, 130 Ctrl-C (the job goes on).
            """,
        subcommands: [
            Submit.self, Status.self, Watch.self, Logs.self, Stop.self, Results.self, List.self,
        ])

    // MARK: submit

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Submit a job from a workflow file (JSON or YAML) and print its id.",
            discussion: """
                The file is either a whole request ({"environment", "workflow", "viewers"?, "chainId"?}) or just a \
                workflow ({"stages": [...]}). With --idempotency-key a repeated submit returns the first job \
                instead of making another (the same key with another workflow is refused). With --wait the \
                command follows the job to its end and exits with its outcome.
                """)

        @OptionGroup var client: ClientOptions

        @Option(
            name: [.customShort("f"), .long], help: "The workflow or request file (.json, .yaml, .yml; - for stdin).",
            completion: .file(extensions: ["json", "yaml", "yml"]))
        var file: String

        @Option(help: "The environment to run in (default: the file's \"environment\").")
        var environment: String?

        @Option(help: "A key (1-200 characters) that makes retrying this submit safe: the same key gives the same job.")
        var idempotencyKey: String?

        @Flag(help: "Wait for the job to end; exit with its outcome.")
        var wait = false

        @Option(help: "With --wait: seconds to wait before giving up (exit 8; the job goes on).")
        var timeout: Int?

        func validate() throws {
            try ClientOptions.validate(timeout: timeout, onlyWith: ("--wait", wait))
        }

        func run() async throws {
            try await JobClient.run(client) { api in
                let body = try JobFile.request(path: file, environment: environment)
                var headers: [String: String] = [:]
                if let idempotencyKey { headers["idempotency-key"] = idempotencyKey }
                let reply = try await api.send(.POST, "/v1/jobs", body: body, headers: headers)
                let job = try JobClient.decode(JobClient.Job.self, reply.body)
                if reply.status == 200 { ClientOutput.note("job \(job.id) was submitted before with this key") }
                guard wait else {
                    if client.json { ClientOutput.printJSON(reply.body) } else { print(job.id) }
                    return .success
                }
                if !client.json { print(job.id) }
                return try await JobCommand.follow(api, id: job.id, json: false, timeout: timeout, quiet: client.json) {
                    final in
                    if client.json { ClientOutput.printJSON(final) }
                }
            }
        }
    }

    // MARK: status

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a job's status and outcome.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The job's id.") var id: String

        func run() async throws {
            try await JobClient.run(client) { api in
                let (job, data) = try await api.job(id)
                if client.json {
                    ClientOutput.printJSON(data)
                } else {
                    print(JobCommand.describe(job))
                }
                return .success
            }
        }
    }

    // MARK: watch

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a job's status changes as they happen; exit with its outcome when it ends.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The job's id.") var id: String
        @Option(help: "Seconds to wait before giving up (exit 8; the job goes on).") var timeout: Int?

        func validate() throws { try ClientOptions.validate(timeout: timeout) }

        func run() async throws {
            try await JobClient.run(client) { api in
                try await JobCommand.follow(api, id: id, json: client.json, timeout: timeout, quiet: false) { _ in }
            }
        }
    }

    // MARK: logs

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a job's logs (configure, algorithm, publish).",
            discussion: """
                Without -f, the archived logs of the steps that ended. With -f, each step's output as it is \
                written (configure, then the algorithm, then publish; a header per step on stderr), and the \
                exit code says how the job ended. A gateway that cannot follow running steps makes -f wait for \
                the job's end and print the archived logs then.
                """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "The job's id.") var id: String
        @Flag(name: [.customShort("f"), .long], help: "Stream each step's output while it runs, until the job ends.")
        var follow = false
        @Option(help: "With -f: seconds to wait before giving up (exit 8).") var timeout: Int?

        func validate() throws {
            try ClientOptions.validate(timeout: timeout, onlyWith: ("-f", follow))
        }

        func run() async throws {
            try await JobClient.run(client) { api in
                var exit = ClientExit.success
                if follow && !client.json, let streamed = try await stream(api) { return streamed }
                if follow {
                    exit = try await JobCommand.follow(api, id: id, json: false, timeout: timeout, quiet: false) {
                        _ in
                    }
                }
                let reply = try await api.getJSON("/v1/jobs/\(JobClient.pathSegment(id))/logs")
                // In the order the steps ran (the API lists them as results are indexed: algorithm logs first).
                let steps: [ResultKind] = [.configurationLog, .algorithmLog, .publishLog]
                func rank(_ result: [String: Any]) -> Int {
                    (result["type"] as? String).flatMap(ResultKind.init(rawValue:)).flatMap(steps.firstIndex(of:))
                        ?? steps.count
                }
                let results = (reply.object["results"] as? [[String: Any]] ?? []).enumerated().sorted {
                    (rank($0.element), $0.offset) < (rank($1.element), $1.offset)
                }.map(\.element)
                if client.json {
                    var logs: [[String: Any]] = []
                    for result in results {
                        guard let index = result["index"] as? Int else { continue }
                        let text = try await api.send(.GET, "/v1/jobs/\(JobClient.pathSegment(id))/results/\(index)")
                        logs.append([
                            "filename": result["filename"] ?? "", "type": result["type"] ?? "",
                            "content": String(decoding: text.body, as: UTF8.self),
                        ])
                    }
                    ClientOutput.printJSON(["jobId": id, "logs": logs])
                    return exit
                }
                if results.isEmpty {
                    ClientOutput.note(
                        "job \(id) has no archived logs yet (they are archived when it ends; -f follows it)")
                }
                for result in results {
                    guard let index = result["index"] as? Int else { continue }
                    let name = result["filename"] as? String ?? "log \(index)"
                    if results.count > 1 { print("==> \(name) <==") }
                    let text = try await api.send(.GET, "/v1/jobs/\(JobClient.pathSegment(id))/results/\(index)")
                    let content = String(decoding: text.body, as: UTF8.self)
                    print(content, terminator: content.hasSuffix("\n") || content.isEmpty ? "" : "\n")
                }
                return exit
            }
        }

        /// Streams the steps' logs as they are written; nil when this gateway cannot follow running steps.
        private func stream(_ api: JobClient) async throws -> ClientExit? {
            let deadline = ContinuousClock.now + .seconds(timeout ?? 6 * 3600)
            ClientInterruption.onStop(say: "job \(id) goes on (`c2d job logs -f \(id)` follows it)")
            for step in ["configure", "algorithm", "publish"] {
                ClientOutput.note("==> \(step) <==")
                let path = "/v1/jobs/\(JobClient.pathSegment(id))/logs/\(step)?follow=true"
                do {
                    _ = try await withDeadline(deadline - .now, operation: "following the \(step) log") {
                        try await api.download(path, to: "-")
                    }
                } catch let failure as ClientFailure where failure.code == "log_not_found" {
                    continue  // the step never ran (the job ended before it)
                } catch let failure as ClientFailure where failure.code == "live_logs_unavailable" {
                    return nil
                } catch is DeadlineExceeded {
                    throw ClientFailure(.gaveUp, "job \(id) did not finish within \(timeout ?? 0) s; it goes on")
                }
            }
            // The job ends after its publish step; then one line says how.
            let left = Int(max(1, (deadline - .now).components.seconds))
            let exit = try await JobCommand.follow(api, id: id, json: false, timeout: left, quiet: true) { _ in }
            ClientOutput.note(JobCommand.summary(try await api.job(id).0))
            return exit
        }
    }

    // MARK: stop

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a job: a queued one ends at once, a running one within seconds.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The job's id.") var id: String

        func run() async throws {
            try await JobClient.run(client) { api in
                let reply = try await api.send(.POST, "/v1/jobs/\(JobClient.pathSegment(id))/stop")
                let job = try JobClient.decode(JobClient.Job.self, reply.body)
                if client.json {
                    ClientOutput.printJSON(reply.body)
                } else if job.dateFinished != nil {
                    print("job \(job.id) is finished: \(job.outcome ?? "?")")
                } else {
                    print("job \(job.id): stop requested (status \(job.status), \(job.statusText.trimmed))")
                }
                return .success
            }
        }
    }

    // MARK: results

    struct Results: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a job's results, or download one.",
            discussion: """
                Results are the outputs, then the logs, each with an index. --get N -o FILE downloads result N \
                (to its own name when -o is omitted, to stdout with -o -). --presign N prints a short-lived URL to \
                download it directly from the result store (S3 stores, the job's owner only).
                """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "The job's id.") var id: String
        @Option(help: "Download the result with this index.") var get: Int?
        @Option(name: [.customShort("o"), .long], help: "Where --get writes (a file, or - for stdout).")
        var output: String?
        @Option(help: "Print a presigned download URL for the result with this index.") var presign: Int?

        func validate() throws {
            if output != nil && get == nil { throw ValidationError("-o needs --get N") }
            if get != nil && presign != nil { throw ValidationError("use --get or --presign, not both") }
        }

        func run() async throws {
            try await JobClient.run(client) { api in
                let job = JobClient.pathSegment(id)
                if let presign {
                    let reply = try await api.getJSON("/v1/jobs/\(job)/results/\(presign)/url")
                    if client.json { ClientOutput.printJSON(reply.body) } else { print(reply.object["url"] ?? "") }
                    return .success
                }
                let reply = try await api.getJSON("/v1/jobs/\(job)/results")
                let results = reply.object["results"] as? [[String: Any]] ?? []
                guard let get else {
                    if client.json {
                        ClientOutput.printJSON(reply.body)
                    } else {
                        guard !results.isEmpty else {
                            ClientOutput.note("job \(id) has no results (yet: they are stored when it ends)")
                            return .success
                        }
                        let sizes = results.map { String($0["filesize"] as? Int ?? 0) }
                        // Sizes right-aligned in a column as wide as the largest.
                        let width = max(4, sizes.map(\.count).max() ?? 0)
                        func right(_ text: String) -> String {
                            String(repeating: " ", count: width - text.count) + text
                        }
                        print("INDEX  TYPE             \(right("SIZE"))  NAME")
                        for (result, size) in zip(results, sizes) {
                            let index = String(result["index"] as? Int ?? -1)
                            let type = result["type"] as? String ?? ""
                            print(
                                index.padding(toLength: 7, withPad: " ", startingAt: 0)
                                    + type.padding(toLength: 17, withPad: " ", startingAt: 0) + right(size) + "  "
                                    + (result["filename"] as? String ?? ""))
                        }
                    }
                    return .success
                }
                guard let result = results.first(where: { $0["index"] as? Int == get }) else {
                    throw ClientFailure(
                        .notFound, "job \(id) has no result \(get); 'c2d job results \(id)' lists them")
                }
                let name = (result["filename"] as? String ?? "result-\(get)").split(separator: "/").last.map(
                    String.init)
                let target = output ?? name ?? "result-\(get)"
                let written = try await api.download("/v1/jobs/\(job)/results/\(get)", to: target)
                if client.json {
                    ClientOutput.printJSON(["jobId": id, "index": get, "file": target, "size": written])
                } else if target != "-" {
                    ClientOutput.note("wrote \(written) bytes to \(target)")
                }
                return .success
            }
        }
    }

    // MARK: list

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List your jobs, newest first (operators: every job).")

        @OptionGroup var client: ClientOptions
        @Option(
            parsing: .singleValue,
            help:
                "Only jobs with this status code (1 queued, 20/30/40/60 running, 70 finished, …); repeat or use commas."
        )
        var status: [String] = []
        @Option(help: "Only jobs of this environment.") var environment: String?
        @Option(help: "Only jobs of this batch.") var batch: String?
        @Option(help: "Only jobs of this owner (operators).") var owner: String?
        @Option(help: "Most jobs to show.") var limit: Int = 50
        @Flag(help: "Every matching job, page after page.") var all = false

        func validate() throws {
            guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be 1 to 100000") }
            for word in statusWords where Int(word).flatMap(JobStatus.init(rawValue:)) == nil {
                throw ValidationError("--status \(word) is not a job status code (1, 2, 11, 20, 30, …, 70)")
            }
        }

        private var statusWords: [String] {
            status.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        }

        /// Valid once `validate` passed.
        var statusCodes: [Int] { statusWords.compactMap { Int($0) } }

        func run() async throws {
            try await JobClient.run(client) { api in
                var jobs: [[String: Any]] = []
                for code in statusCodes.isEmpty ? [nil] : statusCodes.map(Optional.some) {
                    jobs += try await page(api, status: code)
                }
                if statusCodes.count > 1 {
                    jobs.sort { ($0["dateCreated"] as? String ?? "") > ($1["dateCreated"] as? String ?? "") }
                }
                if !all { jobs = Array(jobs.prefix(limit)) }
                if client.json {
                    ClientOutput.printJSON(["jobs": jobs])
                    return .success
                }
                print("ID                                    STATUS  OUTCOME     CREATED               ENVIRONMENT")
                for job in jobs {
                    let status = String(job["status"] as? Int ?? 0)
                    let outcome = job["outcome"] as? String ?? "-"
                    print(
                        (job["id"] as? String ?? "").padding(toLength: 38, withPad: " ", startingAt: 0)
                            + status.padding(toLength: 8, withPad: " ", startingAt: 0)
                            + outcome.padding(toLength: 12, withPad: " ", startingAt: 0)
                            + (job["dateCreated"] as? String ?? "").padding(toLength: 22, withPad: " ", startingAt: 0)
                            + (job["environment"] as? String ?? ""))
                }
                return .success
            }
        }

        func page(_ api: JobClient, status: Int?) async throws -> [[String: Any]] {
            var query: [String] = []
            if let status { query.append("status=\(status)") }
            if let environment { query.append("environment=\(JobClient.pathSegment(environment))") }
            if let batch { query.append("batch=\(JobClient.pathSegment(batch))") }
            if let owner { query.append("owner=\(JobClient.pathSegment(owner))") }
            query.append("limit=\(all ? 500 : min(limit, 500))")
            var jobs: [[String: Any]] = []
            var cursor: String?
            repeat {
                var path = "/v1/jobs?" + query.joined(separator: "&")
                if let cursor { path += "&cursor=\(cursor)" }
                let reply = try await api.getJSON(path)
                jobs += reply.object["jobs"] as? [[String: Any]] ?? []
                cursor = reply.object["nextCursor"] as? String
            } while cursor != nil && (all || jobs.count < limit)
            return jobs
        }
    }

    // MARK: Shared

    /// Follows a job's events to its end, printing each status change (a line, or a JSON object with `json`;
    /// nothing with `quiet`), then reads the job once more and returns the exit for its outcome. `finished` gets
    /// the final job's JSON.
    static func follow(
        _ api: JobClient, id: String, json: Bool, timeout: Int?, quiet: Bool, finished: (Data) -> Void
    ) async throws -> ClientExit {
        let deadline = timeout.map { ContinuousClock.now + .seconds($0) }
        ClientInterruption.onStop(say: "job \(id) goes on (`c2d job watch \(id)` follows it)")
        do {
            try await api.follow("/v1/jobs/\(JobClient.pathSegment(id))/events", deadline: deadline) { event in
                guard !quiet else { return }
                if json {
                    ClientOutput.printJSON(event.data)
                } else {
                    let reason = event.reason.map { " (\($0))" } ?? ""
                    ClientOutput.note("\(event.time) \(event.status) \(event.statusText)\(reason)")
                }
            }
        } catch let failure as ClientFailure where failure.exit == .gaveUp {
            throw ClientFailure(.gaveUp, "job \(id) did not finish within \(timeout ?? 0) s; it goes on")
        }
        let (job, data) = try await api.job(id)
        finished(data)
        guard job.dateFinished != nil else {
            throw ClientFailure(.unavailable, "the event stream of job \(id) ended before the job did; watch it again")
        }
        if !json && !quiet { ClientOutput.note(summary(job)) }
        return ClientExit.forOutcome(job.outcome)
    }

    static func summary(_ job: JobClient.Job) -> String {
        var text = "job \(job.id) \(job.outcome ?? "ended")"
        if let code = job.exitCode { text += ", exit code \(code)" }
        if let reason = job.failureReason, job.outcome != "succeeded" { text += ": \(reason)" }
        return text
    }

    static func describe(_ job: JobClient.Job) -> String {
        ClientOutput.block([
            ("id", job.id),
            ("environment", job.environment),
            ("owner", job.owner),
            ("status", "\(job.status) (\(job.statusText.trimmed))"),
            ("outcome", job.outcome),
            ("reason", job.failureReason),
            ("exit code", job.exitCode.map(String.init)),
            ("out of memory", job.oomKilled == true ? "yes" : nil),
            ("attempt", job.attempt.map(String.init)),
            ("created", job.dateCreated),
            ("started", job.dateStarted),
            ("finished", job.dateFinished),
        ])
    }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespaces) }
}
