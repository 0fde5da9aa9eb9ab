import Foundation

/// batch/v1 Job.
package struct Job: KubernetesResource, Hashable {
    package static let resource = ResourceInfo(group: "batch", version: "v1", kind: "Job", plural: "jobs")

    package var apiVersion: String?
    package var kind: String?
    package var metadata: ObjectMeta
    package var spec: JobSpec?
    package var status: Status?

    package init(metadata: ObjectMeta, spec: JobSpec, status: Status? = nil) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

package struct JobSpec: Codable, Sendable, Hashable {
    package var template: PodTemplateSpec
    /// Pod failures tolerated before the Job fails; the API defaults it to 6, c2d sets 0 and retries itself.
    package var backoffLimit: Int?
    /// Wall-clock budget of the whole Job; exceeding it fails the Job with reason `DeadlineExceeded`.
    package var activeDeadlineSeconds: Int?
    /// The TTL controller deletes the finished Job (and its pods) this long after it finished.
    package var ttlSecondsAfterFinished: Int?
    package var completions: Int?
    package var parallelism: Int?
    package var suspend: Bool?
    package var podFailurePolicy: PodFailurePolicy?

    package init(
        template: PodTemplateSpec, backoffLimit: Int? = nil, activeDeadlineSeconds: Int? = nil,
        ttlSecondsAfterFinished: Int? = nil, completions: Int? = nil, parallelism: Int? = nil, suspend: Bool? = nil,
        podFailurePolicy: PodFailurePolicy? = nil
    ) {
        self.template = template
        self.backoffLimit = backoffLimit
        self.activeDeadlineSeconds = activeDeadlineSeconds
        self.ttlSecondsAfterFinished = ttlSecondsAfterFinished
        self.completions = completions
        self.parallelism = parallelism
        self.suspend = suspend
        self.podFailurePolicy = podFailurePolicy
    }
}

/// Decides a pod failure's effect from exit codes or pod conditions; needs `restartPolicy: Never`.
package struct PodFailurePolicy: Codable, Sendable, Hashable {
    package var rules: [Rule]

    package init(rules: [Rule]) {
        self.rules = rules
    }

    package struct Rule: Codable, Sendable, Hashable {
        /// `FailJob`, `FailIndex`, `Ignore` or `Count`.
        package var action: String
        package var onExitCodes: OnExitCodes?
        package var onPodConditions: [OnPodCondition]?

        package init(action: String, onExitCodes: OnExitCodes? = nil, onPodConditions: [OnPodCondition]? = nil) {
            self.action = action
            self.onExitCodes = onExitCodes
            self.onPodConditions = onPodConditions
        }
    }

    package struct OnExitCodes: Codable, Sendable, Hashable {
        package var containerName: String?
        /// `In` or `NotIn`.
        package var `operator`: String
        package var values: [Int]

        package init(containerName: String? = nil, operator: String, values: [Int]) {
            self.containerName = containerName
            self.operator = `operator`
            self.values = values
        }
    }

    package struct OnPodCondition: Codable, Sendable, Hashable {
        /// E.g. `DisruptionTarget`.
        package var type: String
        package var status: String?

        package init(type: String, status: String? = nil) {
            self.type = type
            self.status = status
        }
    }
}

extension Job {
    /// batch/v1 JobStatus (named `Job.Status` here so it never clashes with a job's own status).
    package struct Status: Codable, Sendable, Hashable {
        package var active: Int?
        package var succeeded: Int?
        package var failed: Int?
        package var ready: Int?
        package var startTime: Date?
        package var completionTime: Date?
        package var conditions: [JobCondition]?

        package init(
            active: Int? = nil, succeeded: Int? = nil, failed: Int? = nil, ready: Int? = nil, startTime: Date? = nil,
            completionTime: Date? = nil, conditions: [JobCondition]? = nil
        ) {
            self.active = active
            self.succeeded = succeeded
            self.failed = failed
            self.ready = ready
            self.startTime = startTime
            self.completionTime = completionTime
            self.conditions = conditions
        }

        /// The `True` condition of `type` (`Complete`, `Failed`, `SuccessCriteriaMet`, `FailureTarget`, `Suspended`).
        package func condition(_ type: String) -> JobCondition? {
            conditions?.first { $0.type == type && $0.status == "True" }
        }

        /// The Job finished: a `Complete` or `Failed` condition is `True`.
        package var isFinished: Bool { condition("Complete") != nil || condition("Failed") != nil }
    }
}

package struct JobCondition: Codable, Sendable, Hashable {
    package var type: String
    /// `True`, `False` or `Unknown`.
    package var status: String
    /// E.g. `BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`.
    package var reason: String?
    package var message: String?
    package var lastProbeTime: Date?
    package var lastTransitionTime: Date?

    package init(
        type: String, status: String, reason: String? = nil, message: String? = nil, lastProbeTime: Date? = nil,
        lastTransitionTime: Date? = nil
    ) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastProbeTime = lastProbeTime
        self.lastTransitionTime = lastTransitionTime
    }
}
