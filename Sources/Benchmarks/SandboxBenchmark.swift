import ArgumentParser
import Foundation
import NIOPosix
import Runtime

/// What each hard limit of the local sandbox costs per launch (`c2d bench sandbox`): the same trivial algorithm
/// (`true`) launched again and again with rlimits only, with a cgroup, with a cgroup and a network namespace, and
/// the output volume's create-and-remove on its own and with everything.
enum SandboxBenchmark {
    struct Row: Sendable {
        var name: String
        /// Per launch, in milliseconds: median and 90th percentile; nil when the host cannot do it.
        var medianMilliseconds: Double?
        var p90Milliseconds: Double?
        var note: String
    }

    /// Runs `launches` of each variant in a workspace under `workRoot`; returns the host's report and the rows.
    static func run(launches: Int, workRoot: URL, threadPool: NIOThreadPool = .singleton) async throws -> (
        report: SandboxReport, rows: [Row]
    ) {
        let directory = workRoot.appendingPathComponent("bench-\(UUID().uuidString)", isDirectory: true)
        let workspace = JobWorkspace(data: directory.appendingPathComponent("data"))
        try workspace.createLayoutBlocking()
        defer { try? FileManager.default.removeItem(at: directory) }
        let basic = Sandbox(
            configuration: SandboxConfiguration(isolation: SandboxIsolationConfiguration(mode: .basic)),
            threadPool: threadPool)
        let isolated = Sandbox(threadPool: threadPool)
        let report = try await isolated.selfCheck()
        _ = try await basic.selfCheck()
        var specification = SandboxSpecification(
            workspace: workspace, entrypoint: "true", timeLimitSeconds: 30, memoryMiB: 256, diskMiB: 64)

        func measure(_ body: () async throws -> Void) async throws -> (Double, Double) {
            var samples: [Double] = []
            try await body()  // warm-up, not counted
            for _ in 0..<launches {
                let start = ContinuousClock.now
                try await body()
                let elapsed = ContinuousClock.now - start
                samples.append(
                    Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
            }
            samples.sort()
            return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 9 / 10)])
        }
        func launch(_ sandbox: Sandbox, _ specification: SandboxSpecification) async throws {
            let termination = await sandbox.run(specification)
            guard termination == .exited(code: 0) else {
                throw ValidationError("the sandbox ended with \(termination)")
            }
        }
        func unavailable(_ result: Result<String, SandboxReport.Failure>) -> String? {
            if case .failure(let failure) = result { return failure.reason }
            return nil
        }
        var rows: [Row] = []
        let (basicMedian, basicP90) = try await measure { try await launch(basic, specification) }
        rows.append(
            Row(
                name: "bubblewrap + rlimits (basic)", medianMilliseconds: basicMedian, p90Milliseconds: basicP90,
                note: ""))

        if let reason = unavailable(report.cgroups) {
            rows.append(Row(name: "+ cgroup (memory, pids, cpu)", note: reason))
        } else {
            let (median, p90) = try await measure { try await launch(isolated, specification) }
            rows.append(
                Row(name: "+ cgroup (memory, pids, cpu)", medianMilliseconds: median, p90Milliseconds: p90, note: ""))
        }
        specification.allowNetwork = true
        if let reason = unavailable(report.network) {
            rows.append(Row(name: "+ network namespace with link", note: reason))
        } else {
            let (median, p90) = try await measure { try await launch(isolated, specification) }
            rows.append(
                Row(name: "+ network namespace with link", medianMilliseconds: median, p90Milliseconds: p90, note: ""))
        }
        if let tools = await isolated.outputVolumeTools() {
            let volume = OutputVolume(attemptDirectory: directory)
            let (median, p90) = try await measure {
                try await threadPool.runIfActive {
                    try volume.create(diskLimitBytes: 1 << 30, tools: tools)
                    volume.remove(tools: tools)
                }
            }
            rows.append(
                Row(
                    name: "output volume (1 GiB) create + remove", medianMilliseconds: median, p90Milliseconds: p90,
                    note: ""))
            let (allMedian, allP90) = try await measure {
                try await threadPool.runIfActive { try volume.create(diskLimitBytes: 1 << 30, tools: tools) }
                var all = specification
                all.workspace = workspace.withWritable(volume.mountPoint)
                do {
                    try await launch(isolated, all)
                } catch {
                    _ = try? await threadPool.runIfActive { volume.remove(tools: tools) }
                    throw error
                }
                try await threadPool.runIfActive { volume.remove(tools: tools) }
            }
            rows.append(
                Row(
                    name: "everything (cgroup, network, volume)", medianMilliseconds: allMedian,
                    p90Milliseconds: allP90, note: ""))
        } else {
            rows.append(Row(name: "output volume", note: unavailable(report.outputVolume) ?? "unavailable"))
        }
        return (report, rows)
    }
}

extension SandboxBenchmark.Row {
    init(name: String, note: String) {
        self.init(name: name, medianMilliseconds: nil, p90Milliseconds: nil, note: note)
    }
}
