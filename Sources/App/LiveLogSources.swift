import Domain
import Foundation
import Gateway
import Kubernetes
import NIOCore
import Runtime

/// Follows a running step of the local executor by reading its log file in the attempt's workspace as it grows
/// (`algorithm.log`, or the step's admin log): the gateway must see the workers' `C2D_WORK_DIR` (`c2d dev`, or a
/// gateway on the workers' host).
struct WorkspaceLogSource: StepLogSource {
    let workRoot: URL

    func file(job: Domain.Job, step: LogStep) -> URL {
        let workspace = JobWorkspace.ofRunningAttempt(workRoot: workRoot, jobID: job.id, attempt: job.attempt)
        switch step {
        case .configure: return workspace.configureLog
        case .algorithm: return workspace.algorithmLog
        case .publish: return workspace.publishLog
        }
    }

    func follow(
        job: Domain.Job, step: LogStep, phase: @escaping @Sendable () async -> LogStep.Phase
    ) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let file = file(job: job, step: step)
        return AsyncThrowingStream { continuation in
            let task = Task {
                var offset: UInt64 = 0
                /// Whether it read something.
                func readMore() -> Bool {
                    guard let handle = try? FileHandle(forReadingFrom: file) else { return false }
                    defer { try? handle.close() }
                    // At most 1 MiB per poll: a chatty algorithm is streamed over several polls, not held in memory.
                    guard (try? handle.seek(toOffset: offset)) != nil,
                        let data = try? handle.read(upToCount: 1 << 20), !data.isEmpty
                    else { return false }
                    offset += UInt64(data.count)
                    continuation.yield(ByteBuffer(bytes: data))
                    return true
                }
                while !Task.isCancelled {
                    _ = readMore()
                    if await phase() == .after {
                        // The rest, however long: the step wrote its last line.
                        while !Task.isCancelled, readMore() {}
                        break
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// Follows a running step on Kubernetes through the API server: waits for the step's pod to start, then streams its
/// container's log with `follow`, which ends when the container exits. configure and publish are containers of the
/// attempt's io pod; the algorithm writes to `algorithm.log` on the attempt's volume, which the algorithm pod's
/// `algorithm-log` sidecar relays to its container log until the algorithm ended, so that log is followed instead.
struct PodLogSource: StepLogSource {
    let client: KubernetesClient
    let namespace: String

    /// The pod role and container that show `step`'s output.
    static func container(of step: LogStep) -> (role: ClusterNaming.Role, name: String) {
        switch step {
        case .configure: (.io, ClusterNaming.Container.configure)
        case .algorithm: (.algorithm, ClusterNaming.Container.algorithmLog)
        case .publish: (.io, ClusterNaming.Container.publish)
        }
    }

    func follow(
        job: Domain.Job, step: LogStep, phase: @escaping @Sendable () async -> LogStep.Phase
    ) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (role, container) = Self.container(of: step)
        let selector = ClusterNaming.labels(
            jobID: job.id, attempt: job.attempt, environment: job.environment, role: role
        )
        .filter { $0.key != ClusterNaming.environmentLabel }
        .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        return follow(podsMatching: selector, container: container, phase: phase)
    }

    static func hasTerminated(_ container: String, in pod: Pod) -> Bool {
        let statuses = (pod.status?.initContainerStatuses ?? []) + (pod.status?.containerStatuses ?? [])
        return statuses.first { $0.name == container }?.state?.terminated != nil
    }

    /// Follows `container` of the first pod `selector` finds. A follow that breaks off (a container silent for the
    /// client's stream idle timeout, a dropped connection), or ends while the step still runs (the API server ends
    /// a follow when the container exits, but also when the kubelet restarts), is opened again, which serves the
    /// log from its start:
    /// the bytes already passed on are skipped, so a follower never sees a line twice — also when a restarted
    /// sidecar relays its file again from the start. (After the kubelet rotated the log, the API serves only its
    /// newest file, and that many bytes of it are skipped: a break-off then loses some lines, never repeats them.)
    func follow(
        podsMatching selector: String, container: String, phase: @escaping @Sendable () async -> LogStep.Phase
    ) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let client = self.client
        let namespace = self.namespace
        return AsyncThrowingStream { continuation in
            let task = Task {
                var passedOn = 0
                while !Task.isCancelled {
                    let pods = try? await client.list(
                        Pod.self, namespace: namespace, options: ListOptions(labelSelector: selector))
                    // configure and algorithm-log are init containers, so their pod is still Pending while they run:
                    // try the log whatever the phase; a container that has not started answers an error and is
                    // tried again.
                    if let name = pods?.items.first?.metadata.name {
                        do {
                            let stream = try await client.followPodLogs(
                                name: name, namespace: namespace, options: PodLogOptions(container: container))
                            var skip = passedOn
                            for try await var chunk in stream {
                                let dropped = min(skip, chunk.readableBytes)
                                chunk.moveReaderIndex(forwardBy: dropped)
                                skip -= dropped
                                guard chunk.readableBytes > 0 else { continue }
                                passedOn += chunk.readableBytes
                                continuation.yield(chunk)
                            }
                            // The follow ended: done if the container has, or its pod is gone.
                            let pod = try? await client.get(Pod.self, name: name, namespace: namespace)
                            if pod.map({ Self.hasTerminated(container, in: $0) }) ?? true { break }
                        } catch is CancellationError {
                            break
                        } catch {
                            // The container is not ready to serve its log yet, or the follow broke off: look again.
                        }
                    }
                    if await phase() == .after { break }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
