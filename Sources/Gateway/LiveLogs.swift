import Domain
import Foundation
import Hummingbird
import NIOCore
import Persistence
import Storage

/// A step of a job whose output can be followed.
package enum LogStep: String, Sendable, CaseIterable {
    case configure, algorithm, publish

    /// The status a job has while this step runs.
    var runningStatus: JobStatus {
        switch self {
        case .configure: .configuringVolumes
        case .algorithm: .runningAlgorithm
        case .publish: .publishingResults
        }
    }

    /// The result kind its archived log is stored under.
    var archivedKind: ResultKind {
        switch self {
        case .configure: .configurationLog
        case .algorithm: .algorithmLog
        case .publish: .publishLog
        }
    }

    /// Where a job is relative to this step: not started yet, running it, or past it (another attempt counts as past:
    /// the followed attempt is over). Pure, so the streamer's end condition is table-tested.
    package enum Phase: Sendable, Hashable {
        case before, running, after
    }

    package func phase(of job: Job, attempt: Int) -> Phase {
        if job.finishedAt != nil || job.status.isTerminal || job.attempt != attempt { return .after }
        if job.status == runningStatus { return .running }
        return job.status.rawValue < runningStatus.rawValue ? .before : .after
    }
}

/// Where a running step's output is read from, as it is written: the local sandbox's log file (the gateway must see
/// the workers' `C2D_WORK_DIR`), or the pod's log with `follow` on Kubernetes. Implemented by the `c2d` executable,
/// which knows the executor.
package protocol StepLogSource: Sendable {
    /// The step's output of the job's current attempt from its beginning, chunk by chunk, as it grows; the stream
    /// ends when the output does (the pod's container exited) or when `phase` reports the step over (then with what
    /// was written until then). Before the step starts it waits. `phase` waits one poll interval, then reads the
    /// job: the source calls it between its polls, so it also paces them.
    func follow(
        job: Job, step: LogStep, phase: @escaping @Sendable () async -> LogStep.Phase
    ) -> AsyncThrowingStream<ByteBuffer, any Error>
}

/// Streams one step's log as an HTTP body: live from the source while the step runs, the archived log once it is
/// over. Shared by `GET /v1/jobs/{id}/logs/{step}?follow=true` and ocean-node's `computeStreamableLogs`.
struct StepLogStreamer: Sendable {
    let store: PostgresJobStore
    let resultStore: any ReadableResultStore
    let source: (any StepLogSource)?
    /// How often the job's status is read while following.
    var pollInterval: Duration = .milliseconds(500)

    enum Failure: Error {
        /// The step is over and left no archived log.
        case noLog
        /// The step has not run and no live source is configured on this gateway.
        case unavailable
    }

    /// The body: the archived log when the step is over, else the live stream (which ends at the step's end). A job
    /// no worker has claimed yet is waited for inside the body (its attempt, and so its log, is not known before).
    func body(job: Job, step: LogStep) async throws -> ResponseBody {
        if job.status != .queued, step.phase(of: job, attempt: job.attempt) == .after {
            if job.finishedAt == nil, let source {
                // A step that is over while its attempt goes on (configure, while the algorithm runs): its log is
                // archived with the results, at the end of publish, so until then it is read where it was written.
                return ResponseBody { writer in
                    try await writeEndedStep(job: job, step: step, source: source, to: &writer)
                    try await writer.finish(nil)
                }
            }
            let log = try await archived(job: job, step: step)
            return ResponseBody(byteBuffer: log)
        }
        guard let source else { throw Failure.unavailable }
        let store = self.store
        let interval = pollInterval
        return ResponseBody { writer in
            var current = job
            while current.finishedAt == nil, current.status == .queued {
                try await Task.sleep(for: interval)
                current = try await store.job(job.id) ?? current
            }
            let attempt = current.attempt
            if step.phase(of: current, attempt: attempt) == .after {
                try await writeEndedStep(job: current, step: step, source: source, to: &writer)
                try await writer.finish(nil)
                return
            }
            let phase: @Sendable () async -> LogStep.Phase = {
                try? await Task.sleep(for: interval)
                guard let latest = try? await store.job(job.id) else { return .running }
                return step.phase(of: latest, attempt: attempt)
            }
            var followed = false
            for try await chunk in source.follow(job: current, step: step, phase: phase) {
                followed = true
                try await writer.write(chunk)
            }
            if !followed {
                // The source showed nothing while the step ran (it wrote nothing, or its log could not be read
                // live): answer with the archived log once the job ended.
                while current.finishedAt == nil {
                    try await Task.sleep(for: interval)
                    current = try await store.job(job.id) ?? current
                }
                if current.attempt == attempt, let log = try? await archived(job: current, step: step) {
                    try await writer.write(log)
                }
            }
            try await writer.finish(nil)
        }
    }

    /// Writes the log of a step that is over: what the source still shows of it while the job has not finished
    /// (the attempt's workspace, or its pod), else the archived log.
    private func writeEndedStep(
        job: Job, step: LogStep, source: any StepLogSource, to writer: inout some ResponseBodyWriter
    ) async throws {
        var current = job
        if job.finishedAt == nil {
            var written = false
            for try await chunk in source.follow(job: job, step: step, phase: { .after }) {
                written = true
                try await writer.write(chunk)
            }
            // Nothing shown: the step wrote nothing, or the job finished meanwhile and took its workspace along.
            guard !written, let latest = try await store.job(job.id), latest.finishedAt != nil else { return }
            current = latest
        }
        if current.attempt == job.attempt, let log = try? await archived(job: current, step: step) {
            try await writer.write(log)
        }
    }

    private func archived(job: Job, step: LogStep) async throws -> ByteBuffer {
        let results = try await store.results(of: job.id)
        guard let log = results.first(where: { $0.kind == step.archivedKind }),
            let stream = try? await resultStore.open(location: log.location, range: nil)
        else { throw Failure.noLog }
        // Archived step logs are capped by the executors, so collecting one is bounded.
        return try await stream.collect(upTo: Int(max(log.size, 0)) + 1)
    }
}
