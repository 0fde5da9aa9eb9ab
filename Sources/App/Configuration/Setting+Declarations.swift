import AMQP
import Domain
import Gateway
import Kubernetes
import Persistence
import Runtime
import Scheduler
import Storage
import Worker

/// Every setting, in README's order. A default that a module's configuration struct already has is taken from there,
/// so it is defined once; the rest are defined here.
extension Setting {
    static let databaseUrl = Setting(
        "DATABASE_URL", default: .described("unset"),
        """
        libpq connection string (DSN or `postgres://` URL); when unset libpq reads `PGHOST`, `PGPORT`, `PGUSER`, \
        `PGPASSWORD`, `PGDATABASE`, pgpass and service files
        """)

    static let libpqVariables = Setting(
        "PGHOST", shownAs: "`PGHOST` … `PGDATABASE`", default: .described("libpq's"),
        "standard libpq variables (`scripts/services env` prints them)")

    static let pgMaxConnections = Setting(
        "C2D_PG_MAX_CONNECTIONS", default: .value(String(PostgresConfiguration().maximumConnections)),
        """
        Postgres connections per process (a worker monitoring thousands of Kubernetes jobs renews their leases: \
        give it more)
        """)

    static let amqpUrl = Setting(
        "AMQP_URL", default: .value(AMQPConfiguration.defaultURL),
        "RabbitMQ")

    static let executor = Setting(
        "C2D_EXECUTOR", default: .value("local"),
        """
        where workers run jobs (gateways read it too: they refuse GPU jobs for `local` and follow live logs from \
        the workspace or the pods): `local` = bubblewrap sandbox on the worker's host; `kubernetes` = Kubernetes \
        objects (see [Kubernetes](#kubernetes)); the scheduler then also reconciles the cluster
        """)

    static let environments = Setting(
        "C2D_ENVIRONMENTS", default: .described("unset = one environment `ocean-compute`"),
        """
        JSON file with an array of environments: `id` (lowercase letters, digits, `-`), `description`, \
        `maxJobDuration` (s, 3600), `cpus` (1), `memoryMiB` (1024), `diskMiB` (1024), `maxJobs` (0: jobs of the \
        environment running at once across the whole fleet; 0 = no cap, the workers' slots are the limit), \
        `allowNetwork` (false: a job gets network only when this is true *and* it sets `compute.allowNetwork`), \
        `allowRawAlgorithm` (true), `storageExpiry` (s, 0 = keep), `maxQueueWait` (s a job may wait queued before \
        status 2; 0 = no limit), `chainIds` (`[]` = any chain), `trustedAlgorithms` (`[]` = any; entries `{"did", \
        "filesChecksum", "containerSectionChecksum"}`, each may use `*` wildcards, a missing field is `*`), \
        `images` (`[]`; see [Images](#images)), `imagePullSecrets` (`[]`, Kubernetes: Secrets the algorithm pod \
        pulls its image with), `dataVolumeClaim` (Kubernetes: a `ReadOnlyMany` claim in the jobs namespace with the \
        datasets `path` inputs are read from; unset: `path` inputs are refused at submit); ocean-node's fields \
        (docs/ocean-node.md): `resources` (`[{id, type, total, min, max}]`: GPUs, and `min` of cpu/ram/disk), \
        `minJobDuration` (0), `fees` (`{}`), `access` (open), `free` (none: no free tier; `maxJobs` caps free jobs \
        at once), `gpuNodeSelector` (`{}`)
        """)

    static let apiAuth = Setting(
        "C2D_API_AUTH", default: .value(GatewayConfiguration().authMode.rawValue),
        """
        native API authentication: `token` (bearer tokens from `c2d token create`) or `none` (every caller may do \
        everything)
        """)

    static let sseMaxStreams = Setting(
        "C2D_SSE_MAX_STREAMS", default: .value(String(EventStreamLimiter.Limits().total)),
        "event streams and followed logs (`/v1/events`, `/v1/jobs/{id}/events`, `…/logs/{step}?follow=true`, "
            + "`computeStreamableLogs`) one gateway keeps open; 429 `too_many_streams` above")

    static let sseMaxStreamsPerCaller = Setting(
        "C2D_SSE_MAX_STREAMS_PER_CALLER", default: .value(String(EventStreamLimiter.Limits().perCaller)),
        "event streams and followed logs one caller (token owner; with `C2D_API_AUTH=none` the IP address) may "
            + "hold on one gateway")

    static let metricsAddress = Setting(
        "C2D_METRICS_ADDRESS", default: .described("unset"),
        "`host:port` of a separate listener for `/metrics`; when set the API's port no longer serves it")

    static let metricsToken = Setting(
        "C2D_METRICS_TOKEN", default: .described("unset"),
        """
        when set (16+ printable characters), `/metrics` answers only `Authorization: Bearer <token>` (401 \
        `metrics_unauthorized` otherwise)
        """)

    static let tokenCacheSeconds = Setting(
        "C2D_TOKEN_CACHE_SECONDS", default: .seconds(GatewayConfiguration().tokenCacheTTL),
        "how long a gateway caches a token lookup (also unknown ones); a revoked token works at most this long")

    static let allowedProviders = Setting(
        "C2D_ALLOWED_PROVIDERS", default: .described("empty"),
        """
        comma-separated Ethereum addresses of the Ocean Providers allowed to sign operator-service calls; empty = \
        the Ocean API is off
        """)

    static let oceanOpenDevelopment = Setting(
        "C2D_OCEAN_OPEN_DEVELOPMENT", default: .described("unset"),
        """
        `1` turns the Ocean API on for any signer (each signer sees only the jobs it started), for development \
        only; excludes `C2D_ALLOWED_PROVIDERS`
        """)

    static let operatorAddress = Setting(
        "C2D_OPERATOR_ADDRESS", default: .described("none"),
        "the operator's address, shown as `address` on `GET /` and as environments' `consumerAddress`")

    static let operatorPrivateKey = Setting(
        "C2D_OPERATOR_PRIVATE_KEY", default: .described("none"),
        """
        the operator's secp256k1 key (64 hex digits) that signs Provider downloads of `remote` inputs and \
        algorithms; without it `remote` sources fail. With Kubernetes the configure pods read it from the Secret \
        `C2D_KUBERNETES_OPERATOR_KEY_SECRET` instead
        """)

    static let dataDir = Setting(
        "C2D_DATA_DIR", default: .value(".data/datasets"),
        "the publisher's data: where `path` inputs are read from (local executor; on Kubernetes an environment's "
            + "`dataVolumeClaim`)")

    static let allowPrivateUrls = Setting(
        "C2D_ALLOW_PRIVATE_URLS", default: .described("unset"),
        """
        `1` lets input and algorithm URLs (and their redirects) reach loopback, private, link-local and similar \
        addresses; by default they are refused, so a consumer's URL cannot make a worker fetch from the operator's \
        own network (see [docs/operations.md](docs/operations.md#outbound-requests))
        """)

    static let allowedPrivateNetworks = Setting(
        "C2D_ALLOWED_PRIVATE_NETWORKS", default: .described("unset"),
        """
        comma-separated networks (CIDR, e.g. `10.1.2.0/24`) that input and algorithm URLs may reach although they \
        are not public, e.g. a data server inside the perimeter (local executor)
        """)

    static let sandboxIsolation = Setting(
        "C2D_SANDBOX_ISOLATION", default: .value(SandboxIsolationConfiguration().mode.rawValue),
        """
        hard limits of the local sandbox: `auto` uses a cgroup per job, a size-capped output volume and a network \
        namespace for network jobs where the host allows (root) and says at start what it cannot; `strict` refuses \
        to start without all three; `basic` uses rlimits only and lets network jobs share the worker's network \
        (see [operations](docs/operations.md#sandbox-limits))
        """)

    static let sandboxCgroup = Setting(
        "C2D_SANDBOX_CGROUP", default: .described("unset"),
        """
        a cgroup v2 directory delegated to the worker for job cgroups; unset: the worker's own cgroup (v2) or its \
        v1 hierarchies
        """)

    static let sandboxNetworkPool = Setting(
        "C2D_SANDBOX_NETWORK_POOL", default: .value(SandboxIsolationConfiguration().networkPool.description),
        "IPv4 addresses of sandbox network links, a /30 per running network job")

    static let sandboxDns = Setting(
        "C2D_SANDBOX_DNS", default: .described("the host's non-loopback nameservers"),
        "comma-separated IPv4 resolvers that network jobs use and may reach")

    static let sandboxAllowedNetworks = Setting(
        "C2D_SANDBOX_ALLOWED_NETWORKS", default: .described("unset"),
        "comma-separated non-public networks (CIDR) that network jobs may reach all the same")

    static let workDir = Setting(
        "C2D_WORK_DIR", default: .value(".data/work"),
        "job workspaces of the local executor (removed when a job ends)")

    static let resultStore = Setting(
        "C2D_RESULT_STORE", default: .value("file"),
        "where results live: `file` (`C2D_RESULTS_DIR`) or `s3` (an S3-compatible bucket, below)")

    static let resultsDir = Setting(
        "C2D_RESULTS_DIR", default: .value(".data/results"),
        "the filesystem result store; gateways, workers and schedulers must see the same one")

    static let s3Bucket = Setting(
        "C2D_S3_BUCKET", default: .described("none"),
        "`s3`: the bucket (it must exist)")

    static let s3Endpoint = Setting(
        "C2D_S3_ENDPOINT", default: .described("`https://s3.<region>.amazonaws.com`"),
        "`s3`: base URL of an S3-compatible server, e.g. `http://127.0.0.1:9000`")

    static let s3Region = Setting(
        "C2D_S3_REGION", default: .described("`AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`"),
        "`s3`: the signing region")

    static let s3PathStyle = Setting(
        "C2D_S3_PATH_STYLE", default: .described("`true` with an endpoint, else `false`"),
        "`s3`: `endpoint/bucket/key` rather than `bucket.host/key`")

    static let s3Prefix = Setting(
        "C2D_S3_PREFIX", default: .described("empty"),
        "`s3`: prepended to every object key (`<prefix><job id>/…`)")

    static let s3PartBytes = Setting(
        "C2D_S3_PART_BYTES", default: .value(String(S3Configuration.defaultPartSize)),
        """
        `s3`: files above this go up as multipart uploads in parts of this size (at least 5 MiB; one part in \
        memory per upload)
        """)

    static let s3PresignSeconds = Setting(
        "C2D_S3_PRESIGN_SECONDS", default: .seconds(S3Configuration.defaultPresignDuration),
        "`s3`: validity of presigned result URLs (1 to 604,800)")

    static let awsCredentials = Setting(
        "AWS_ACCESS_KEY_ID", shownAs: "`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`",
        default: .described("none"),
        "`s3`: credentials (the session token for temporary ones); requests are signed with SigV4")

    /// Read with ``awsCredentials`` and shown in its row.
    static let awsSecretAccessKey = Setting(
        "AWS_SECRET_ACCESS_KEY", default: .described("none"), "see AWS_ACCESS_KEY_ID")
    static let awsSessionToken = Setting("AWS_SESSION_TOKEN", default: .described("none"), "see AWS_ACCESS_KEY_ID")
    /// Fallbacks of ``s3Region``, shown in its row.
    static let awsRegion = Setting("AWS_REGION", default: .described("none"), "see C2D_S3_REGION")
    static let awsDefaultRegion = Setting("AWS_DEFAULT_REGION", default: .described("none"), "see C2D_S3_REGION")

    static let imagesDir = Setting(
        "C2D_IMAGES_DIR", default: .value(".data/images"),
        "local executor: where environments' relative image `layout`s are")

    static let imageCacheDir = Setting(
        "C2D_IMAGE_CACHE_DIR", default: .value(".data/image-cache"),
        "local executor: unpacked image roots, one per manifest digest (removable when no job runs)")

    package static let url = Setting(
        "C2D_URL", default: .value("http://127.0.0.1:8080"),
        "`c2d job` and `c2d batch`: the gateway (or `--url`)")

    package static let token = Setting(
        "C2D_TOKEN", default: .described("none"),
        "`c2d job` and `c2d batch`: the API token (or `--token`)")

    static let migrationsDir = Setting(
        "C2D_MIGRATIONS_DIR", default: .described("the checkout's `migrations/`"),
        "SQL migrations `c2d migrate` applies")

    static let workerSlots = Setting(
        "C2D_WORKER_SLOTS", default: .described("local: the machine's cores (at least 2); kubernetes: `10000`"),
        """
        jobs one worker runs (local) or monitors (Kubernetes) at once, 1 to 100,000; registered for the \
        dispatcher, which admits no more than the live workers' free slots
        """)

    static let leaseSeconds = Setting(
        "C2D_LEASE_SECONDS", default: .seconds(WorkerConfiguration(slots: 1).leaseDuration),
        """
        a worker's claim on a job lasts this long unless renewed (every third of it, at most every 5 s); a worker \
        that has not refreshed its registration this long no longer counts for admission
        """)

    static let leaseGraceSeconds = Setting(
        "C2D_LEASE_GRACE_SECONDS", default: .seconds(ReconcilePlanner.Configuration().leaseGrace),
        "the scheduler hands a job to another worker this long after its worker's lease lapsed")

    static let deliveryLimit = Setting(
        "C2D_DELIVERY_LIMIT", default: .value("5"),
        """
        times a job message may return to its queue before it is dead-lettered (quorum `x-delivery-limit`; \
        changing it for an existing queue is refused with an error naming the queue)
        """)

    static let poisonAttempts = Setting(
        "C2D_POISON_ATTEMPTS", default: .described("the delivery limit"),
        """
        workers lost while holding a job (leases lapsed) before it fails with reason `poison` instead of being \
        handed over again; also the claims a dead-lettered job must have had to fail as poison (fewer: it is \
        published again)
        """)

    static let eventsMaxAge = Setting(
        "C2D_EVENTS_MAX_AGE", default: .value("7D"),
        """
        how long the `c2d.events.stream` stream keeps events (RabbitMQ `x-max-age`: a number and Y, M, D, h, m or \
        s)
        """)

    static let maxBodyBytes = Setting(
        "C2D_MAX_BODY_BYTES", default: .value(String(SubmissionLimits().maxBodyBytes)),
        "largest request body the gateway accepts (413 above), batches excepted")

    static let maxInputs = Setting(
        "C2D_MAX_INPUTS", default: .value(String(SubmissionLimits().maxInputs)),
        "most inputs one workflow may name")

    static let maxFilesPerInput = Setting(
        "C2D_MAX_FILES_PER_INPUT", default: .value(String(SubmissionLimits().maxFilesPerInput)),
        "most files (URLs) one input may name")

    static let maxFieldBytes = Setting(
        "C2D_MAX_FIELD_BYTES", default: .value(String(SubmissionLimits().maxFieldBytes)),
        "longest string field (ids, URLs, entrypoint, owner, viewers)")

    static let maxRawcodeBytes = Setting(
        "C2D_MAX_RAWCODE_BYTES", default: .value(String(SubmissionLimits().maxRawCodeBytes)),
        "largest `rawcode` algorithm (413 above)")

    static let maxWorkflowBytes = Setting(
        "C2D_MAX_WORKFLOW_BYTES", default: .value(String(SubmissionLimits().maxWorkflowBytes)),
        "largest workflow as JSON")

    static let maxBatchJobs = Setting(
        "C2D_MAX_BATCH_JOBS", default: .value(String(GatewayConfiguration().maxBatchJobs)),
        "most jobs one `POST /v1/batches` may carry (413 `batch_too_large` above)")

    static let maxBatchBodyBytes = Setting(
        "C2D_MAX_BATCH_BODY_BYTES", default: .value(String(GatewayConfiguration().maxBatchBodyBytes)),
        "largest `POST /v1/batches` body (413 above)")

    static let maxUploadBytes = Setting(
        "C2D_MAX_UPLOAD_BYTES", default: .value(String(GatewayConfiguration().maxUploadBytes)),
        """
        largest result file a publish pod may upload to `PUT \
        /internal/v1/jobs/{id}/attempts/{n}/results/{kind}/{name}` (413 above)
        """)

    static let uploadSpoolDir = Setting(
        "C2D_UPLOAD_SPOOL_DIR", default: .described("`<tmp>/c2d-uploads`"),
        "where the gateway spools upload bodies before they go to the result store")

    static let kubeconfig = Setting(
        "KUBECONFIG", default: .described("unset"),
        """
        with `C2D_EXECUTOR=kubernetes`: the first existing file of this colon-separated list (files are not \
        merged); else `~/.kube/config`; else the in-cluster service account (`KUBERNETES_SERVICE_HOST`). Exec \
        plugins and auth providers are not supported
        """)

    static let kubernetesNamespace = Setting(
        "C2D_KUBERNETES_NAMESPACE",
        default: .described("the kubeconfig context's namespace, in a cluster the pod's own, else `default`"),
        "namespace of every job object; set it (e.g. `c2d-jobs`)")

    static let kubernetesQps = Setting(
        "C2D_KUBERNETES_QPS", default: .value(Setting.number(KubernetesConfiguration(server: "").queriesPerSecond)),
        """
        client-side rate limit on Kubernetes API requests per second, per process (workers and scheduler); an \
        attempt costs 3 writes, so one worker launches at most about QPS / 3 jobs per second. Deletes go before \
        reads, reads before creates
        """)

    static let kubernetesBurst = Setting(
        "C2D_KUBERNETES_BURST", default: .value(String(KubernetesConfiguration(server: "").burst)),
        "requests allowed at once above that rate")

    static let kubernetesFinishedTtlSeconds = Setting(
        "C2D_KUBERNETES_FINISHED_TTL_SECONDS",
        default: .value(String(KubernetesExecutorConfiguration().finishedTTLSeconds)),
        "`ttlSecondsAfterFinished` of each attempt's Job: a backstop, since the attempt is deleted once its end is "
            + "recorded")

    static let kubernetesOperatorKeySecret = Setting(
        "C2D_KUBERNETES_OPERATOR_KEY_SECRET", default: .value(KubernetesExecutorConfiguration().operatorKeySecret),
        "the Secret in the jobs namespace (key `operator-key`) configure pods read the operator's key from; optional, "
            + "c2d never writes it")

    static let kubernetesS3Secret = Setting(
        "C2D_KUBERNETES_S3_SECRET", default: .described("unset"),
        """
        with `C2D_RESULT_STORE=s3`: the Secret in the jobs namespace (keys `AWS_ACCESS_KEY_ID`, \
        `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`) publish pods take credentials from to upload results \
        straight to the bucket; unset, they upload through the gateway. c2d never writes it
        """)

    static let podImage = Setting(
        "C2D_POD_IMAGE", default: .value(KubernetesExecutorConfiguration().podImage),
        "the image of c2d's own step containers (configure, publish, await-inputs, signal-end, algorithm-log)")

    static let resultsUrl = Setting(
        "C2D_RESULTS_URL", default: .value(KubernetesExecutorConfiguration().resultsURL),
        "the gateway's base URL as job pods reach it (workflow download, uploads)")

    static let imagePullTimeoutSeconds = Setting(
        "C2D_IMAGE_PULL_TIMEOUT_SECONDS", default: .seconds(KubernetesExecutorConfiguration().imagePullTimeout),
        """
        how long an image may fail to pull (or a container fail to be created) before the job ends with status 11 \
        (22, 41); the scheduler uses the same value
        """)

    static let schedulerLeaseSeconds = Setting(
        "C2D_SCHEDULER_LEASE_SECONDS", default: .seconds(SchedulerLeadership.Configuration().leaseDuration),
        """
        the scheduler leader lease; a standby takes over about this long after the leader died (at once after a \
        graceful stop)
        """)

    static let schedulerReconcileIntervalSeconds = Setting(
        "C2D_SCHEDULER_RECONCILE_INTERVAL_SECONDS", default: .seconds(Reconciler.Configuration().interval),
        "time between reconcile passes")

    static let schedulerFullPassSeconds = Setting(
        "C2D_SCHEDULER_FULL_PASS_SECONDS", default: .seconds(Reconciler.Configuration().fullPassInterval),
        "time between passes that re-read every unfinished job (and relist the cluster)")

    static let schedulerBatchSize = Setting(
        "C2D_SCHEDULER_BATCH_SIZE", default: .value(String(Reconciler.Configuration().batchSize)),
        "rows per incremental read and actions per transaction")

    static let schedulerRepublishAfterSeconds = Setting(
        "C2D_SCHEDULER_REPUBLISH_AFTER_SECONDS", default: .seconds(Dispatcher.Configuration().redispatchAfter),
        "an admitted job no worker took this long after its message was published gets it again (a lost message)")

    static let dispatchBatchSize = Setting(
        "C2D_DISPATCH_BATCH_SIZE", default: .value(String(Dispatcher.Configuration().batchSize)),
        "most jobs one dispatch pass admits in one environment (a full pass is followed by another at once)")

    static let dispatchSweepSeconds = Setting(
        "C2D_DISPATCH_SWEEP_SECONDS", default: .seconds(Dispatcher.Configuration().sweepInterval),
        "time between the dispatcher's sweeps over every environment (the safety net for lost notifications)")

    static let schedulerMissingGraceSeconds = Setting(
        "C2D_SCHEDULER_MISSING_GRACE_SECONDS", default: .seconds(ReconcilePlanner.Configuration().missingObjectGrace),
        "a launched attempt whose objects are gone this long is retried or failed `lost` (duty 5)")

    static let schedulerOrphanGraceSeconds = Setting(
        "C2D_SCHEDULER_ORPHAN_GRACE_SECONDS", default: .seconds(ReconcilePlanner.Configuration().orphanGrace),
        "objects younger than this are never deleted as orphans (duty 4)")

    static let schedulerTimeoutGraceSeconds = Setting(
        "C2D_SCHEDULER_TIMEOUT_GRACE_SECONDS", default: .seconds(ReconcilePlanner.Configuration().timeoutGrace),
        "how long past its limit a job may run before the scheduler times it out (duty 7)")

    static let schedulerMaxAttempts = Setting(
        "C2D_SCHEDULER_MAX_ATTEMPTS", default: .value(String(ReconcilePlanner.Configuration().maxAttempts)),
        "attempts before a lost job fails instead of being retried")

    static let schedulerEnvironmentStaleSeconds = Setting(
        "C2D_SCHEDULER_ENVIRONMENT_STALE_SECONDS",
        default: .seconds(ReconcilePlanner.Configuration().environmentStaleAfter),
        "an environment no running process refreshed this long is marked hidden in Postgres (duty 12)")

    static let schedulerLogLimitBytes = Setting(
        "C2D_SCHEDULER_LOG_LIMIT_BYTES",
        default: .value(String(KubernetesReconcileCluster.Configuration(namespace: "").logLimitBytes)),
        "most bytes of one c2d step's container log the scheduler archives (when publish could not upload it)")

    static let schedulerListPageSize = Setting(
        "C2D_SCHEDULER_LIST_PAGE_SIZE",
        default: .value(String(KubernetesReconcileCluster.Configuration(namespace: "").pageSize)),
        "items per Kubernetes list page of the scheduler's informer")

    static let startupWaitSeconds = Setting(
        "C2D_STARTUP_WAIT_SECONDS", default: .seconds(Settings.defaultStartupWait),
        """
        how long a starting gateway, worker or scheduler waits for Postgres (a warning per try) before it stops; \
        0 = stop at once
        """)

    static let logLevel = Setting(
        "LOG_LEVEL", default: .value("info"),
        "`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`")

    static let faultExitAfterClaim = Setting(
        "C2D_FAULT_EXIT_AFTER_CLAIM", default: .described("unset"),
        "tests only: a worker exits right after claiming, before acknowledging")

    package static let all: [Setting] = [
        .databaseUrl,
        .libpqVariables,
        .pgMaxConnections,
        .amqpUrl,
        .executor,
        .environments,
        .apiAuth,
        .sseMaxStreams,
        .sseMaxStreamsPerCaller,
        .metricsAddress,
        .metricsToken,
        .tokenCacheSeconds,
        .allowedProviders,
        .oceanOpenDevelopment,
        .operatorAddress,
        .operatorPrivateKey,
        .dataDir,
        .allowPrivateUrls,
        .allowedPrivateNetworks,
        .sandboxIsolation,
        .sandboxCgroup,
        .sandboxNetworkPool,
        .sandboxDns,
        .sandboxAllowedNetworks,
        .workDir,
        .resultStore,
        .resultsDir,
        .s3Bucket,
        .s3Endpoint,
        .s3Region,
        .s3PathStyle,
        .s3Prefix,
        .s3PartBytes,
        .s3PresignSeconds,
        .awsCredentials,
        .imagesDir,
        .imageCacheDir,
        .url,
        .token,
        .migrationsDir,
        .workerSlots,
        .leaseSeconds,
        .leaseGraceSeconds,
        .deliveryLimit,
        .poisonAttempts,
        .eventsMaxAge,
        .maxBodyBytes,
        .maxInputs,
        .maxFilesPerInput,
        .maxFieldBytes,
        .maxRawcodeBytes,
        .maxWorkflowBytes,
        .maxBatchJobs,
        .maxBatchBodyBytes,
        .maxUploadBytes,
        .uploadSpoolDir,
        .kubeconfig,
        .kubernetesNamespace,
        .kubernetesQps,
        .kubernetesBurst,
        .kubernetesFinishedTtlSeconds,
        .kubernetesOperatorKeySecret,
        .kubernetesS3Secret,
        .podImage,
        .resultsUrl,
        .imagePullTimeoutSeconds,
        .schedulerLeaseSeconds,
        .schedulerReconcileIntervalSeconds,
        .schedulerFullPassSeconds,
        .schedulerBatchSize,
        .schedulerRepublishAfterSeconds,
        .dispatchBatchSize,
        .dispatchSweepSeconds,
        .schedulerMissingGraceSeconds,
        .schedulerOrphanGraceSeconds,
        .schedulerTimeoutGraceSeconds,
        .schedulerMaxAttempts,
        .schedulerEnvironmentStaleSeconds,
        .schedulerLogLimitBytes,
        .schedulerListPageSize,
        .startupWaitSeconds,
        .logLevel,
        .faultExitAfterClaim,
    ]
}
