import Foundation

/// Settings of the Kubernetes executor. Defaults suit a cluster where c2d's own image runs the in-pod steps.
package struct KubernetesExecutorConfiguration: Sendable, Hashable {
    /// Namespace of every job object. `C2D_KUBERNETES_NAMESPACE`; unset, the kubeconfig context's namespace (or the
    /// in-cluster service account's). The value struct's own default is `c2d-jobs`.
    package var namespace: String
    /// The image that runs `c2d pod configure` and `c2d pod publish`. Default `c2d:latest`. `C2D_POD_IMAGE`.
    package var podImage: String
    /// The gateway's base URL as pods reach it, for `c2d pod publish`'s uploads. Default
    /// `http://c2d-gateway:8080`. `C2D_RESULTS_URL`.
    package var resultsURL: String
    /// How long an image may fail to pull before the job ends with status 11. Default 300 s.
    /// `C2D_IMAGE_PULL_TIMEOUT_SECONDS`.
    package var imagePullTimeout: Duration
    /// Wall-clock budget of the configure and of the publish step. Default 1,800 s each.
    package var configureDeadlineSeconds: Int
    package var publishDeadlineSeconds: Int
    /// `ttlSecondsAfterFinished` set on a step's Job once its log is archived. Default 3,600 s: long enough that a
    /// worker adopting the attempt still finds every finished step.
    package var finishedStepTTLSeconds: Int
    /// Largest step log archived, in bytes. Default 16 MiB.
    package var logLimitBytes: Int
    /// Size of each attempt's data volume beyond the environment's disk limit. Default 0.
    package var storageClassName: String?
    /// User and group the algorithm runs as (never root). Default 1000.
    package var runAsUser: Int
    /// Forwarded to `c2d pod configure` through the attempt's Secret, for `remote` inputs.
    package var operatorPrivateKeyHex: String?
    /// Whether configure may fetch from private addresses (`C2D_ALLOW_PRIVATE_URLS`).
    package var allowPrivateURLs: Bool
    /// How long a create or a Postgres write that failed for a transient reason (API 429/5xx/timeout, Postgres
    /// unavailable or its pool exhausted) is retried before the attempt counts as not carried out. Default 120 s.
    package var transientRetryBudget: Duration = .seconds(120)

    package init(
        namespace: String = "c2d-jobs", podImage: String = "c2d:latest", resultsURL: String = "http://c2d-gateway:8080",
        imagePullTimeout: Duration = .seconds(300), configureDeadlineSeconds: Int = 1_800,
        publishDeadlineSeconds: Int = 1_800, finishedStepTTLSeconds: Int = 3_600, logLimitBytes: Int = 16 << 20,
        storageClassName: String? = nil, runAsUser: Int = 1_000, operatorPrivateKeyHex: String? = nil,
        allowPrivateURLs: Bool = false
    ) {
        self.namespace = namespace
        self.podImage = podImage
        self.resultsURL = resultsURL
        self.imagePullTimeout = imagePullTimeout
        self.configureDeadlineSeconds = configureDeadlineSeconds
        self.publishDeadlineSeconds = publishDeadlineSeconds
        self.finishedStepTTLSeconds = finishedStepTTLSeconds
        self.logLimitBytes = logLimitBytes
        self.storageClassName = storageClassName
        self.runAsUser = runAsUser
        self.operatorPrivateKeyHex = operatorPrivateKeyHex
        self.allowPrivateURLs = allowPrivateURLs
    }
}
