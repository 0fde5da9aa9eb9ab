import Foundation

/// Settings of the Kubernetes executor. Defaults suit a cluster where c2d's own image runs the in-pod steps.
package struct KubernetesExecutorConfiguration: Sendable, Hashable {
    /// Namespace of every job object. `C2D_KUBERNETES_NAMESPACE`; unset, the kubeconfig context's namespace (or the
    /// in-cluster service account's). The value struct's own default is `c2d-jobs`.
    package var namespace: String
    /// The image that runs `c2d pod configure|publish|await-inputs|signal-end|relay-log`. Default `c2d:latest`.
    /// `C2D_POD_IMAGE`.
    package var podImage: String
    /// The gateway's base URL as pods reach it: configure downloads the workflow from it, publish uploads to it.
    /// Default `http://c2d-gateway:8080`. `C2D_RESULTS_URL`.
    package var resultsURL: String
    /// How long an image may fail to pull (or a container fail to be created) before the job ends with status 11
    /// (or 22, 41). Default 300 s. `C2D_IMAGE_PULL_TIMEOUT_SECONDS`.
    package var imagePullTimeout: Duration
    /// Wall-clock budget of the configure and of the publish step. Default 1,800 s each.
    package var configureDeadlineSeconds: Int
    package var publishDeadlineSeconds: Int
    /// The io pod's `terminationGracePeriodSeconds`: how long publish may upload the logs of a stopped attempt.
    /// Default 120 s.
    package var publishGraceSeconds: Int
    /// `ttlSecondsAfterFinished` of the attempt's Job: a backstop, since the finalizer deletes the attempt once its
    /// end is recorded. Default 3,600 s. `C2D_KUBERNETES_FINISHED_TTL_SECONDS`.
    package var finishedTTLSeconds: Int
    /// Largest step log read from the API (configure's, when it failed before publish could upload it), in bytes.
    /// Default 1 MiB.
    package var logLimitBytes: Int
    /// Storage class of each attempt's data volume. Default the cluster's default.
    package var storageClassName: String?
    /// User and group the steps and the algorithm run as (never root). Default 1000.
    package var runAsUser: Int
    /// The Secret in the jobs namespace whose key `operator-key` holds the operator's key for signing `remote`
    /// downloads; optional (without it `remote` sources fail). Create it once; c2d never writes Secrets.
    /// Default `c2d-operator-key`. `C2D_KUBERNETES_OPERATOR_KEY_SECRET`.
    package var operatorKeySecret: String
    /// Whether configure may fetch from private addresses (`C2D_ALLOW_PRIVATE_URLS`).
    package var allowPrivateURLs: Bool
    /// Where publish pods upload results: nil (the default) through the gateway; set, straight to the deployment's
    /// S3 bucket (`C2D_KUBERNETES_S3_SECRET`), so no result byte passes through a gateway.
    package var directUpload: DirectUpload?

    /// What a publish pod needs to upload straight to the bucket.
    package struct DirectUpload: Sendable, Hashable {
        /// The bucket's non-secret settings, as the variables the pod's settings loader reads (`C2D_RESULT_STORE`,
        /// `C2D_S3_*`).
        package var variables: [String: String]
        /// The Secret in the jobs namespace with keys `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
        /// `AWS_SESSION_TOKEN`; c2d never writes it.
        package var credentialsSecret: String

        package init(variables: [String: String], credentialsSecret: String) {
            self.variables = variables
            self.credentialsSecret = credentialsSecret
        }

        /// The keys of ``credentialsSecret``, each read into the variable of the same name; the session token is
        /// optional.
        package static let credentialKeys = [
            (key: "AWS_ACCESS_KEY_ID", optional: false), (key: "AWS_SECRET_ACCESS_KEY", optional: false),
            (key: "AWS_SESSION_TOKEN", optional: true),
        ]
    }
    /// How long a create or a Postgres write that failed for a transient reason (API 429/5xx/timeout, Postgres
    /// unavailable or its pool exhausted) is retried before the attempt counts as not carried out. Default 120 s.
    package var transientRetryBudget: Duration = .seconds(120)
    /// How long a stopped or failed attempt waits for its publish step to upload the logs before it is recorded
    /// anyway. Default the publish grace plus 30 s.
    package var settleTimeout: Duration { .seconds(publishGraceSeconds + 30) }

    package static let operatorKeyKey = "operator-key"

    package init(
        namespace: String = "c2d-jobs", podImage: String = "c2d:latest", resultsURL: String = "http://c2d-gateway:8080",
        imagePullTimeout: Duration = .seconds(300), configureDeadlineSeconds: Int = 1_800,
        publishDeadlineSeconds: Int = 1_800, publishGraceSeconds: Int = 120, finishedTTLSeconds: Int = 3_600,
        logLimitBytes: Int = 1 << 20, storageClassName: String? = nil, runAsUser: Int = 1_000,
        operatorKeySecret: String = "c2d-operator-key", allowPrivateURLs: Bool = false
    ) {
        self.namespace = namespace
        self.podImage = podImage
        self.resultsURL = resultsURL
        self.imagePullTimeout = imagePullTimeout
        self.configureDeadlineSeconds = configureDeadlineSeconds
        self.publishDeadlineSeconds = publishDeadlineSeconds
        self.publishGraceSeconds = publishGraceSeconds
        self.finishedTTLSeconds = finishedTTLSeconds
        self.logLimitBytes = logLimitBytes
        self.storageClassName = storageClassName
        self.runAsUser = runAsUser
        self.operatorKeySecret = operatorKeySecret
        self.allowPrivateURLs = allowPrivateURLs
    }
}
