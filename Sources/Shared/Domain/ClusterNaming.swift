/// How c2d names and labels the Kubernetes objects of a job (DESIGN §3), shared by the worker that creates them
/// and the scheduler that reconciles them. Names are deterministic from job id and attempt, so a retried create
/// finds its own object ("already exists" means adopt) instead of making a second one.
public enum ClusterNaming {
    /// The steps of an attempt, each a Kubernetes Job.
    public enum Step: String, Sendable, Hashable, CaseIterable {
        case configure, algorithm, publish
    }

    public static let managedByLabel = "app.kubernetes.io/managed-by"
    public static let managedByValue = "c2d"
    public static let jobIDLabel = "c2d.io/job-id"
    public static let attemptLabel = "c2d.io/attempt"
    public static let stepLabel = "c2d.io/step"
    public static let environmentLabel = "c2d.io/environment"

    /// The label selector of every object c2d manages.
    public static let selector = "\(managedByLabel)=\(managedByValue)"

    /// `c2d-<job id>-<attempt>`: the attempt's Secret (owner of the rest), volume and network policy.
    public static func attemptName(jobID: JobID, attempt: Int) -> String {
        "c2d-\(jobID)-\(attempt)"
    }

    /// `c2d-<job id>-<attempt>-<step>`: 48 characters at most for attempts below 10, well inside the 63 a Job
    /// name may have (its pods carry it as a label value).
    public static func stepName(jobID: JobID, attempt: Int, step: Step) -> String {
        "\(attemptName(jobID: jobID, attempt: attempt))-\(step.rawValue)"
    }

    public static func labels(jobID: JobID, attempt: Int, environment: String, step: Step?) -> [String: String] {
        var labels = [
            managedByLabel: managedByValue, jobIDLabel: jobID.description, attemptLabel: String(attempt),
            environmentLabel: environment,
        ]
        if let step { labels[stepLabel] = step.rawValue }
        return labels
    }
}
