import ChildProcesses
import Foundation
import Logging
import Persistence
import TestSupport
import Testing

/// A bench stopped by a signal still removes what it wrote: a leftover environment full of jobs slows every later
/// run against the same database. One killed outright leaves it, for `bench clean`, which keeps running benches'.
@Suite("Bench interruption", .serialized)
struct BenchInterruptionTests {
    @Test("bench submit stopped by SIGINT removes its environment and jobs, and says it was interrupted")
    func sigintCleansUp() async throws {
        try await withRunningBench { bench, environment, store, _ in
            kill(bench.pid, SIGINT)
            #expect(await bench.waitForExit(timeout: .seconds(60)))
            #expect(bench.exitCode == 1)
            #expect(bench.log.contains("interrupted: stopped by SIGINT"))
            let counts = try await store.counts(environment: environment)
            #expect(counts.unfinished + counts.finished == 0)
            #expect(try await !store.benchEnvironments().contains { $0.id == environment })
        }
    }

    @Test("bench clean keeps a running bench's environment, and removes it once the bench was killed")
    func cleanKeepsRunningBenches() async throws {
        try await withRunningBench { bench, environment, store, directory in
            @Sendable func clean(_ name: String) async throws -> String {
                let clean = try C2DProcess(
                    name: name, arguments: ["bench", "clean"], environment: [:], logDirectory: directory)
                #expect(await clean.waitForExit(timeout: .seconds(120)))
                #expect(clean.exitCode == 0)
                return clean.log
            }
            #expect(try await clean("clean-while-running").contains("kept environment \(environment) "))
            #expect(try await store.benchEnvironments().contains { $0.id == environment && $0.running })

            // SIGKILL: no clean-up of its own, and Postgres drops its lock with its connections.
            await bench.kill9()
            try await waitUntil("Postgres saw the bench's connections close", timeout: .seconds(30)) {
                try await store.benchEnvironments().contains { $0.id == environment && !$0.running }
            }
            #expect(try await clean("clean-after-kill").contains("removed environment \(environment) "))
            #expect(try await !store.benchEnvironments().contains { $0.id == environment })
            let counts = try await store.counts(environment: environment)
            #expect(counts.unfinished + counts.finished == 0)
        }
    }

    /// Runs `body` once a `bench submit` has written its first jobs, with the bench, its environment, a store and
    /// the directory of the processes' logs; the bench is stopped afterwards if `body` left it running.
    private func withRunningBench(
        _ body: (C2DProcess, String, PostgresJobStore, URL) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-it-bench-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let postgres = PostgresClient(configuration: .fromEnvironment(), logger: Logger(label: "test"))
        let store = PostgresJobStore(client: postgres)
        let bench: C2DProcess
        do {
            let before = Set(try await store.benchEnvironments().map(\.id))
            bench = try C2DProcess(
                name: "bench", arguments: ["bench", "submit", "--duration", "60"], environment: [:],
                logDirectory: directory)
            do {
                // Its environment's id is random: the bench's is the new one in the database.
                var environment = ""
                try await waitUntil("the bench wrote its first jobs", timeout: .seconds(60)) {
                    guard let new = try await store.benchEnvironments().first(where: { !before.contains($0.id) })
                    else { return false }
                    environment = new.id
                    return new.jobs > 0
                }
                try await body(bench, environment, store, directory)
            } catch {
                await bench.kill9()
                throw error
            }
        } catch {
            await postgres.shutdown()
            throw error
        }
        await bench.stop()
        await postgres.shutdown()
    }
}
