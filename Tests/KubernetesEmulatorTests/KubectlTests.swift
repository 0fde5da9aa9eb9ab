import Foundation
import NIOHTTP1
import Testing

@testable import KubernetesEmulator

@Suite("kubectl against the emulator")
struct KubectlTests {
    static let kubectl = "/usr/bin/kubectl"

    /// Runs kubectl without blocking a cooperative thread; answers exit status and stdout+stderr.
    static func run(_ arguments: [String], kubeconfig: String, home: String) async throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kubectl)
        process.arguments = ["--kubeconfig", kubeconfig, "--request-timeout", "20s"] + arguments
        process.environment = ["HOME": home, "PATH": "/usr/bin:/bin"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { process in
                let data = output.fileHandleForReading.readDataToEndOfFile()
                continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
            }
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    @Test(
        "kubectl get jobs, get pods -o json, get job <name>",
        .enabled(if: FileManager.default.isExecutableFile(atPath: kubectl)))
    func kubectlWorks() async throws {
        try await Harness.with { h in
            #expect(try await h.call(.POST, Harness.jobs, Harness.job("kubectl-job")).status == 201)
            _ = try await h.finishedJob("kubectl-job")
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "kube-sim-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let kubeconfig = directory.appendingPathComponent("config").path
            try KubernetesEmulator.kubeconfig(server: h.base).write(
                toFile: kubeconfig, atomically: true, encoding: .utf8)
            let (jobsStatus, jobs) = try await Self.run(["get", "jobs"], kubeconfig: kubeconfig, home: directory.path)
            #expect(jobsStatus == 0, "\(jobs)")
            #expect(jobs.contains("kubectl-job"))
            let (podsStatus, pods) = try await Self.run(
                ["get", "pods", "-o", "json"], kubeconfig: kubeconfig, home: directory.path)
            #expect(podsStatus == 0, "\(pods)")
            let list = try JSON.parse(pods)
            #expect(list["items"]?.array?.first?[["metadata", "labels", "job-name"]] == "kubectl-job")
            let (jobStatus, job) = try await Self.run(
                ["get", "job", "kubectl-job"], kubeconfig: kubeconfig, home: directory.path)
            #expect(jobStatus == 0, "\(job)")
            #expect(job.contains("kubectl-job"))
            let (missingStatus, missing) = try await Self.run(
                ["get", "job", "nope"], kubeconfig: kubeconfig, home: directory.path)
            #expect(missingStatus != 0)
            #expect(missing.contains("jobs.batch \"nope\" not found"))
        }
    }
}
