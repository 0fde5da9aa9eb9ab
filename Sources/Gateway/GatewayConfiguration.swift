import Domain
import Foundation
import Persistence

/// The gateway's settings. Defaults suit one machine; every value can be set from the environment by the
/// `c2d` command (see README's configuration table).
package struct GatewayConfiguration: Sendable {
    /// Address to listen on. Default 127.0.0.1.
    package var host: String
    /// Port to listen on. Default 8080.
    package var port: Int
    /// The environments jobs may be submitted to. Default: `ocean-compute` only.
    package var environments: [ComputeEnvironment]
    /// Size and count limits on requests.
    package var limits: SubmissionLimits
    /// Ocean API: off (the default), on for the Providers listed in `C2D_ALLOWED_PROVIDERS`, or open to any signer
    /// for development (`C2D_OCEAN_OPEN_DEVELOPMENT=1`).
    package var oceanAccess: OceanAccess = .disabled
    /// Ocean API: the operator's address, shown as `address` on `GET /` and as environments' `consumerAddress`.
    /// Default none (null). `C2D_OPERATOR_ADDRESS`.
    package var operatorAddress: String?
    /// Native API: most jobs one `POST /v1/batches` may carry (413 above). Default 10,000. `C2D_MAX_BATCH_JOBS`.
    package var maxBatchJobs: Int = 10_000
    /// Native API: largest `POST /v1/batches` body, in bytes (413 above); single creates keep `limits.maxBodyBytes`.
    /// Default 64 MiB. `C2D_MAX_BATCH_BODY_BYTES`.
    package var maxBatchBodyBytes: Int = 64 << 20
    /// Native API: Server-Sent Event streams open at once, per caller and in total (429 `too_many_streams` above).
    package var eventStreams = EventStreamLimiter.Limits()
    /// Native API: how often an event stream looks for new events when no commit notification woke it (the
    /// gateway's `LISTEN` on job events is down, or it was built without one). Default 250 ms.
    package var eventPollInterval: Duration = .milliseconds(250)
    /// `/metrics`: when set, served only by a separate listener on this host and port (e.g. an interface that
    /// only the monitoring network reaches), not on the API's port. Default none. `C2D_METRICS_ADDRESS`.
    package var metricsListener: (host: String, port: Int)?
    /// `/metrics`: when set, a scrape must send `Authorization: Bearer <this>` (401 otherwise). Default none.
    /// `C2D_METRICS_TOKEN`.
    package var metricsToken: String?
    /// Native API: how callers authenticate. Default bearer tokens. `C2D_API_AUTH` (`token` or `none`).
    package var authMode: APIAuthMode = .token
    /// Native API: how long a token lookup is cached; a revoked token keeps working at most this long.
    /// Default 5 s. `C2D_TOKEN_CACHE_SECONDS`.
    package var tokenCacheTTL: Duration = .seconds(5)
    /// Internal upload endpoint: largest result file a publish pod may upload (413 above). Default 10 GiB.
    /// `C2D_MAX_UPLOAD_BYTES`.
    package var maxUploadBytes: Int64 = 10 << 30
    /// Internal upload endpoint: where upload bodies are spooled before they go to the result store (it needs room
    /// for the largest concurrent uploads). Default the system's temporary directory. `C2D_UPLOAD_SPOOL_DIR`.
    package var uploadSpoolDirectory: URL = FileManager.default.temporaryDirectory.appendingPathComponent(
        "c2d-uploads", isDirectory: true)

    /// Native API: how long a presigned result URL (`GET /v1/jobs/{id}/results/{index}/url`) stays valid.
    /// Default 300 s. `C2D_S3_PRESIGN_SECONDS`.
    package var presignedURLLifetime: Duration = .seconds(300)
    /// Where workers run jobs, which decides the images a workflow may name (`ImagePolicy`) and whether GPUs can be
    /// asked for (not on `local`), and whether `path` inputs need the environment's `dataVolumeClaim` (on Kubernetes the
    /// configure step reads datasets from it). Default local. `C2D_EXECUTOR`.
    package var executor: ExecutorKind = .local
    /// Where running steps' logs are followed from (`GET /v1/jobs/{id}/logs/{step}?follow=true`,
    /// `computeStreamableLogs`). Default none: only archived logs are served. Set by `c2d` from the executor.
    package var liveLogSource: (any StepLogSource)?
    /// ocean-node API: the chain verifier for paid jobs, escrow and on-chain access lists (docs/ocean-node.md,
    /// "Chain verifier"). Default none: paid starts are refused, free jobs work fully.
    package var chainVerifier: (any ChainVerifier)?

    package init(
        host: String = "127.0.0.1", port: Int = 8080, environments: [ComputeEnvironment] = [.oceanCompute],
        limits: SubmissionLimits = SubmissionLimits()
    ) {
        self.host = host
        self.port = port
        self.environments = environments
        self.limits = limits
    }

    func environment(_ id: String) -> ComputeEnvironment? {
        environments.first { $0.id == id }
    }

    /// The environments listings show: the configured ones the scheduler has not hidden as stale. If the store
    /// cannot say, all of them (a listing is no reason to fail).
    func listedEnvironments(_ store: PostgresJobStore) async -> [ComputeEnvironment] {
        guard let hidden = try? await store.hiddenEnvironmentIDs(), !hidden.isEmpty else { return environments }
        return environments.filter { !hidden.contains($0.id) }
    }
}
