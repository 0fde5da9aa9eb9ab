/// How c2d names and labels the Kubernetes objects of a job attempt (docs/architecture.md, "A job's life on
/// Kubernetes"), shared by the worker that creates them and the scheduler that reconciles them. Names are
/// deterministic from job id and attempt, so a retried create finds its own object ("already exists" means adopt)
/// instead of making a second one.
///
/// An attempt is two pods sharing one data volume:
/// - the *io* pod, from the batch/v1 Job `c2d-<id>-<attempt>` (the attempt's root object): init container
///   `configure` fetches inputs and algorithm, main container `publish` uploads results once the algorithm ended;
/// - the *algorithm* pod `c2d-<id>-<attempt>-algorithm` (owned by the Job): init container `await-inputs` waits for
///   configure, native sidecars `signal-end` (marks the algorithm's end on the volume) and `algorithm-log` (relays
///   `algorithm.log` to its container log, for live logs), main container `algorithm`.
///
/// The volume is the algorithm pod's generic ephemeral volume, claim `c2d-<id>-<attempt>-algorithm-data`, which the
/// io pod mounts by name. Deleting the Job deletes everything (owner references).
package enum ClusterNaming {
    /// The logical steps of an attempt, each one container.
    package enum Step: String, Sendable, Hashable, CaseIterable {
        case configure, algorithm, publish
    }

    /// The two pods of an attempt.
    package enum Role: String, Sendable, Hashable, CaseIterable {
        /// configure and publish: c2d's own image, network to fetch inputs and to reach the gateway.
        case io
        /// the consumer's algorithm: no network (unless allowed), no credentials.
        case algorithm
    }

    package static let managedByLabel = "app.kubernetes.io/managed-by"
    package static let managedByValue = "c2d"
    package static let jobIDLabel = "c2d.io/job-id"
    package static let attemptLabel = "c2d.io/attempt"
    package static let roleLabel = "c2d.io/role"
    package static let environmentLabel = "c2d.io/environment"
    /// On algorithm pods: `none` (selected by the namespace's deny-all NetworkPolicy) or `allowed`.
    package static let networkLabel = "c2d.io/network"

    /// The label selector of every object c2d manages.
    package static let selector = "\(managedByLabel)=\(managedByValue)"

    /// Container names.
    package enum Container {
        package static let configure = "configure"
        package static let publish = "publish"
        package static let awaitInputs = "await-inputs"
        package static let signalEnd = "signal-end"
        /// The algorithm pod's native sidecar that relays `algorithm.log` to its own container log (live logs).
        package static let algorithmLog = "algorithm-log"
        package static let algorithm = "algorithm"
    }

    /// `c2d-<job id>-<attempt>`: the attempt's Job (the io pod's controller and the owner of the rest).
    package static func attemptName(jobID: JobID, attempt: Int) -> String {
        "c2d-\(jobID)-\(attempt)"
    }

    /// `c2d-<job id>-<attempt>-algorithm`: the algorithm pod (48 characters for attempts below 10).
    package static func algorithmPodName(jobID: JobID, attempt: Int) -> String {
        "\(attemptName(jobID: jobID, attempt: attempt))-algorithm"
    }

    /// The name of the algorithm pod's ephemeral volume.
    package static let dataVolume = "data"

    /// `c2d-<job id>-<attempt>-algorithm-data`: the claim Kubernetes makes for the algorithm pod's ephemeral volume
    /// (`<pod>-<volume>`), which the io pod mounts.
    package static func dataClaimName(jobID: JobID, attempt: Int) -> String {
        "\(algorithmPodName(jobID: jobID, attempt: attempt))-\(dataVolume)"
    }

    package static func labels(jobID: JobID, attempt: Int, environment: String, role: Role?) -> [String: String] {
        var labels = [
            managedByLabel: managedByValue, jobIDLabel: jobID.description, attemptLabel: String(attempt),
            environmentLabel: environment,
        ]
        if let role { labels[roleLabel] = role.rawValue }
        return labels
    }

    /// Files on the data volume by which the two pods coordinate, under `/data/.c2d` (never mounted into the
    /// algorithm container, so the algorithm cannot forge them).
    package enum Marker {
        package static let directory = ".c2d"
        /// Written by configure when the inputs are in place.
        package static let configured = "configured"
        /// Written by configure when it failed (holds its exit code): the algorithm never starts.
        package static let configureFailed = "configure-failed"
        /// Written by the algorithm pod's `signal-end` sidecar once the algorithm container ended (for any reason).
        package static let algorithmEnded = "algorithm-ended"
        /// Written by `signal-end` once it handles SIGTERM; its postStart hook waits for it, so the algorithm never
        /// starts (and ends) before the sidecar could see its end.
        package static let signalEndReady = "signal-end-ready"
    }

    /// The environment variables the executor sets on c2d's own containers (`c2d pod …`), which read them back: one
    /// list, so the manifests and the pod commands cannot drift apart. The algorithm container gets Ocean's variables
    /// instead (`VOLUME`, `ALGO`, `DIDS`, …).
    package enum PodVariable: String, Sendable, CaseIterable {
        /// The data volume's mount path.
        case volume = "VOLUME"
        case jobID = "C2D_JOB_ID"
        case attempt = "C2D_ATTEMPT"
        /// The gateway's base URL for downloads and uploads.
        case resultsURL = "C2D_RESULTS_URL"
        /// The attempt's upload token.
        case uploadToken = "C2D_UPLOAD_TOKEN"
        /// `1`: configure may fetch inputs from private addresses.
        case allowPrivateURLs = "C2D_ALLOW_PRIVATE_URLS"
        /// The operator's key, from a Secret, to sign ocean-node's calls.
        case operatorPrivateKey = "C2D_OPERATOR_PRIVATE_KEY"
        /// Where the environment's datasets claim is mounted (`path` inputs).
        case datasetsDirectory = "C2D_DATA_DIR"
        /// publish: outputs above this end the job with status 42.
        case diskLimitBytes = "C2D_DISK_LIMIT_BYTES"
        /// await-inputs: how long to wait for configure.
        case awaitSeconds = "C2D_AWAIT_SECONDS"
        /// Where a step writes its termination message: unset on a cluster (Kubernetes reads `/dev/termination-log`);
        /// `c2d kube-sim` sets it, having no such file.
        case terminationLog = "C2D_TERMINATION_LOG"
        /// configure: a workflow file to use instead of downloading the job's.
        case workflowFile = "C2D_WORKFLOW_FILE"
        /// relay-log: the file to relay to the container's log (the algorithm's `algorithm.log`).
        case relayedLog = "C2D_RELAYED_LOG"
    }
}
