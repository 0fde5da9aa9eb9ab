import Foundation

/// batch/v1 Job.
public struct Job: KubernetesResource, Hashable {
    public static let resource = ResourceInfo(group: "batch", version: "v1", kind: "Job", plural: "jobs")

    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: JobSpec?
    public var status: Status?

    public init(metadata: ObjectMeta, spec: JobSpec, status: Status? = nil) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

public struct JobSpec: Codable, Sendable, Hashable {
    public var template: PodTemplateSpec
    /// Pod failures tolerated before the Job fails; the API defaults it to 6, c2d sets 0 and retries itself.
    public var backoffLimit: Int?
    /// Wall-clock budget of the whole Job; exceeding it fails the Job with reason `DeadlineExceeded`.
    public var activeDeadlineSeconds: Int?
    /// The TTL controller deletes the finished Job (and its pods) this long after it finished.
    public var ttlSecondsAfterFinished: Int?
    public var completions: Int?
    public var parallelism: Int?
    public var suspend: Bool?
    public var podFailurePolicy: PodFailurePolicy?

    public init(
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
public struct PodFailurePolicy: Codable, Sendable, Hashable {
    public var rules: [Rule]

    public init(rules: [Rule]) {
        self.rules = rules
    }

    public struct Rule: Codable, Sendable, Hashable {
        /// `FailJob`, `FailIndex`, `Ignore` or `Count`.
        public var action: String
        public var onExitCodes: OnExitCodes?
        public var onPodConditions: [OnPodCondition]?

        public init(action: String, onExitCodes: OnExitCodes? = nil, onPodConditions: [OnPodCondition]? = nil) {
            self.action = action
            self.onExitCodes = onExitCodes
            self.onPodConditions = onPodConditions
        }
    }

    public struct OnExitCodes: Codable, Sendable, Hashable {
        public var containerName: String?
        /// `In` or `NotIn`.
        public var `operator`: String
        public var values: [Int]

        public init(containerName: String? = nil, operator: String, values: [Int]) {
            self.containerName = containerName
            self.operator = `operator`
            self.values = values
        }
    }

    public struct OnPodCondition: Codable, Sendable, Hashable {
        /// E.g. `DisruptionTarget`.
        public var type: String
        public var status: String?

        public init(type: String, status: String? = nil) {
            self.type = type
            self.status = status
        }
    }
}

extension Job {
    /// batch/v1 JobStatus (named `Job.Status` here so it never clashes with a job's own status).
    public struct Status: Codable, Sendable, Hashable {
        public var active: Int?
        public var succeeded: Int?
        public var failed: Int?
        public var ready: Int?
        public var startTime: Date?
        public var completionTime: Date?
        public var conditions: [JobCondition]?

        public init(
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
        public func condition(_ type: String) -> JobCondition? {
            conditions?.first { $0.type == type && $0.status == "True" }
        }

        /// The Job finished: a `Complete` or `Failed` condition is `True`.
        public var isFinished: Bool { condition("Complete") != nil || condition("Failed") != nil }
    }
}

public struct JobCondition: Codable, Sendable, Hashable {
    public var type: String
    /// `True`, `False` or `Unknown`.
    public var status: String
    /// E.g. `BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`.
    public var reason: String?
    public var message: String?
    public var lastProbeTime: Date?
    public var lastTransitionTime: Date?

    public init(
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
