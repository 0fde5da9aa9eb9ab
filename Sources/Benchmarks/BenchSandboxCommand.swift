import ArgumentParser
import Foundation
import Runtime

/// `c2d bench sandbox`: what each hard limit of the local sandbox costs per launch on this host.
struct BenchSandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Measure the per-launch cost of the local sandbox's limits (cgroup, network, output volume).")

    @Option(help: "Launches per variant (after one warm-up).")
    var launches: Int = 30

    @Option(help: "Where the benchmark's workspace goes (default: C2D_WORK_DIR or .data/work).")
    var workDirectory: String?

    func run() async throws {
        let root = URL(
            fileURLWithPath: workDirectory ?? ProcessInfo.processInfo.environment["C2D_WORK_DIR"] ?? ".data/work")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let (report, rows) = try await SandboxBenchmark.run(launches: max(1, launches), workRoot: root)
        print("sandbox limits on this host:")
        for line in report.lines { print("  " + line) }
        print("")
        print(
            "per launch of `true`, \(launches) launches each".padding(toLength: 44, withPad: " ", startingAt: 0)
                + "median ms    p90 ms")
        for row in rows {
            let name = row.name.padding(toLength: 44, withPad: " ", startingAt: 0)
            if let median = row.medianMilliseconds, let p90 = row.p90Milliseconds {
                print(name + String(format: "%9.1f %9.1f", median, p90))
            } else {
                print(name + "   unavailable: \(row.note)")
            }
        }
    }
}
