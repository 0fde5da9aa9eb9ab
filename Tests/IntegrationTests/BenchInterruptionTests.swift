import ChildProcesses
import Foundation
import Logging
import Persistence
import TestSupport
import Testing

/// A bench stopped by a signal still removes what it wrote: a leftover environment full of jobs slows every later
/// run against the same database.
@Suite("Bench interruption", .serialized)
struct BenchInterruptionTests {
    @Test("bench submit stopped by SIGINT removes its environment and jobs, and says it was interrupted")
    func sigintCleansUp() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-it-bench-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let postgres = PostgresClient(configuration: .fromEnvironment(), logger: Logger(label: "test"))
        let before = try await Self.benchEnvironments(postgres)
        let bench = try C2DProcess(
            name: "bench", arguments: ["bench", "submit", "--duration", "60"], environment: [:],
            logDirectory: directory)
        do {
            // Its output is buffered (a file, not a terminal): the bench's environment is found in the database.
            var environment = ""
            try await waitUntil("the bench wrote its first jobs", timeout: .seconds(60)) {
                guard let new = try await Self.benchEnvironments(postgres).subtracting(before).first else {
                    return false
                }
                environment = new
                return try await Self.jobCount(new, postgres) > 0
            }
            kill(bench.pid, SIGINT)
            #expect(await bench.waitForExit(timeout: .seconds(60)))
            #expect(bench.exitCode == 1)
            #expect(bench.log.contains("interrupted: stopped by SIGINT"))
            #expect(try await Self.jobCount(environment, postgres) == 0)
            let rows = try await postgres.query(
                "select count(*) as n from environments where id = $1", [.text(environment)])
            #expect(try rows[0].int("n") == 0)
        } catch {
            await bench.kill9()
            await postgres.shutdown()
            throw error
        }
        await bench.stop()
        await postgres.shutdown()
    }

    static func benchEnvironments(_ postgres: PostgresClient) async throws -> Set<String> {
        Set(
            try await postgres.query("select id from environments where id like 'bench-%'").map {
                try $0.string("id")
            })
    }

    static func jobCount(_ environment: String, _ postgres: PostgresClient) async throws -> Int {
        try await postgres.query("select count(*) as n from jobs where environment = $1", [.text(environment)])[0]
            .int("n")
    }
}
