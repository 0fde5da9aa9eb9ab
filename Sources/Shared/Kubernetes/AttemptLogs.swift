import Domain
import NIOCore

/// Which step logs must be read from the API because the attempt's publish step could not upload them, and how
/// to read one. The same for whoever finalizes the attempt (worker or scheduler), so a job's logs end up in the same
/// place, under the same names, either way: `configure.log` and `publish.log` as admin logs, and `algorithm.log`,
/// which the algorithm writes to the volume (`/data/logs/algorithm.log`) and the algorithm pod's `algorithm-log`
/// sidecar relays to its container log.
package enum AttemptLogs {
    package struct Missing: Sendable, Hashable {
        package var container: String
        package var pod: String
        /// The result's name and kind, as the publish step would have uploaded it.
        package var name: String
        package var kind: ResultKind
    }

    /// The logs to fetch: a c2d step that failed (configure: publish then never runs; publish: it may not have
    /// uploaded its own log) and whose file is not among `uploaded`; and the algorithm's log when the algorithm ran
    /// but publish did not end well (failed, or its pod is gone) and did not upload it. A step that succeeded
    /// uploaded its log through publish, so the happy path reads nothing from the API.
    package static func missing(_ observed: ObservedAttempt, uploaded: Set<String>) -> [Missing] {
        let observation = observed.observation
        var missing: [Missing] = []
        if let pod = observed.ioPodName, observation.ioPod.presence == .present {
            let steps: [(String, ContainerObservation, String, ResultKind)] = [
                (ClusterNaming.Container.configure, observation.configure, "configure.log", .configurationLog),
                (ClusterNaming.Container.publish, observation.publish, "publish.log", .publishLog),
            ]
            for (container, state, name, kind) in steps where !uploaded.contains(name) {
                guard let end = state.termination, end.exitCode != 0 || end.oomKilled else { continue }
                missing.append(Missing(container: container, pod: pod, name: name, kind: kind))
            }
        }
        let publishSucceeded = observation.publish.termination.map { $0.exitCode == 0 && !$0.oomKilled } ?? false
        if !publishSucceeded, !uploaded.contains(algorithmLog), observation.algorithm.hasStarted,
            observation.algorithmPod.presence == .present
        {
            missing.append(
                Missing(
                    container: ClusterNaming.Container.algorithmLog,
                    pod: ClusterNaming.algorithmPodName(jobID: observed.key.jobID, attempt: observed.key.attempt),
                    name: algorithmLog, kind: .algorithmLog))
        }
        return missing
    }

    /// The algorithm's log, as publish uploads it.
    static let algorithmLog = "algorithm.log"

    /// A container's log, at most `limit` bytes; nil when there is none (empty, the pod or container is gone, or
    /// it never started).
    package static func read(
        _ missing: Missing, client: KubernetesClient, namespace: String, limit: Int
    ) async throws -> ByteBuffer? {
        do {
            let log = try await client.podLogs(
                name: missing.pod, namespace: namespace,
                options: PodLogOptions(container: missing.container, limitBytes: limit))
            return log.readableBytes == 0 ? nil : log
        } catch let error as KubernetesError where error.code == .notFound || error.code == .badRequest {
            return nil
        }
    }
}
