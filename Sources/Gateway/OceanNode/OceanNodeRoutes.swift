import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Persistence
import Signatures
import Storage

/// ocean-node's compute API under `/api/services` (docs/ocean-node.md), so ocean.js, ocean-cli and anything else
/// written against an Ocean node can use c2d: the same routes, parameter names and sources, consumer signatures over
/// `consumerAddress + nonce + command` with strictly increasing nonces, the `ComputeJob` object, ocean-node's error
/// texts. Jobs go through c2d's own submission path (one insert; the dispatcher admits them). Only jobs started here
/// are visible here.
struct OceanNodeRoutes: Sendable {
    static let base = "/api/services"
    /// Largest `metadata`, as JSON, ocean-node accepts.
    static let maxMetadataBytes = 1024

    let configuration: GatewayConfiguration
    let submitter: JobSubmitter
    let store: PostgresJobStore
    let resultStore: any ReadableResultStore
    let authenticator: OceanNodeAuthenticator
    let logs: StepLogStreamer
    /// The gateway's limit on open streams: a followed log holds a slot, per consumer address (as an owner).
    let streams: EventStreamLimiter

    init(
        configuration: GatewayConfiguration, submitter: JobSubmitter, store: PostgresJobStore,
        resultStore: any ReadableResultStore, streams: EventStreamLimiter
    ) {
        self.streams = streams
        self.configuration = configuration
        self.submitter = submitter
        self.store = store
        self.resultStore = resultStore
        authenticator = OceanNodeAuthenticator(store: store)
        logs = StepLogStreamer(store: store, resultStore: resultStore, source: configuration.liveLogSource)
    }

    func register(on router: Router<GatewayRequestContext>) {
        router.get("\(Self.base)/computeEnvironments", use: environments)
        router.post("\(Self.base)/initializeCompute", use: initialize)
        router.post("\(Self.base)/compute") { request, context in try await start(request, context, free: false) }
        router.post("\(Self.base)/freeCompute") { request, context in try await start(request, context, free: true) }
        router.get("\(Self.base)/compute", use: status)
        router.put("\(Self.base)/compute", use: stop)
        router.delete("\(Self.base)/compute") { _, _ in
            Response(status: .notFound, body: .init(byteBuffer: ByteBuffer(string: "Not yet implemented!")))
        }
        router.get("\(Self.base)/computeResult", use: result)
        router.get("\(Self.base)/computeStreamableLogs", use: streamableLogs)
    }

    // MARK: Environments

    /// Every listed environment with its resources and what its jobs use now, fleet-wide. With `chainId`, only those
    /// with prices on that chain (as ocean-node filters).
    @Sendable func environments(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let usage = try await Self.storeCall { try await store.environmentUsage() }
        var listed = await configuration.listedEnvironments(store)
        if let chain = request.uri.queryParameters.get("chainId").flatMap({ Int($0) }) {
            listed = listed.filter { $0.fees[String(chain)]?.isEmpty == false }
        }
        let views = listed.map {
            OceanNodeEnvironmentView(
                $0, usage: usage[$0.id] ?? PostgresJobStore.EnvironmentUsage(),
                consumerAddress: configuration.operatorAddress)
        }
        return try Self.json(views)
    }

    // MARK: Initialize

    /// The payment quote of a paid job. Needs a chain verifier (escrow address, amount in the token's units).
    @Sendable func initialize(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let input = OceanNodeInput(body: try await Self.body(request, limit: configuration.limits.maxBodyBytes))
        try input.checkRequired(
            ["datasets", "algorithm", "payment", "consumerAddress", "environment"], command: "initializeCompute")
        guard let consumer = input.text("consumerAddress"), (try? EthereumAddress(consumer)) != nil else {
            throw OceanNodeError.invalidConsumer
        }
        let payment = try input.decode(PaymentInput.self, "payment")
        guard let chainID = payment?.chainId, let token = payment?.token, !token.isEmpty else {
            throw OceanNodeError(code: "invalid_payment", message: "Invalid payment options")
        }
        if let duration = input.integer("maxJobDuration"), duration <= 0 { throw OceanNodeError.invalidMaxJobDuration }
        guard let environment = configuration.environment(input.text("environment") ?? "") else {
            throw OceanNodeError.invalidEnvironment
        }
        let maxJobDuration = min(
            input.integer("maxJobDuration") ?? environment.maxJobDuration, environment.maxJobDuration)
        let requested = try input.decode([ResourceRequestInput].self, "resources") ?? payment?.resources ?? []
        let resources = try Self.fill(requested, environment: environment, free: false)
        guard let prices = Self.prices(environment, chainID: chainID, token: token) else {
            throw OceanNodeError.noPayments(chainID: chainID, token: token)
        }
        guard let verifier = configuration.chainVerifier else {
            throw OceanNodeError.paymentUnverifiable(chainID: chainID)
        }
        let terms = PaymentRequest(
            consumer: consumer, environment: environment.id, chainID: chainID, token: token,
            cost: Self.cost(resources, prices: prices, seconds: max(maxJobDuration, environment.minJobDuration)),
            maxJobDuration: maxJobDuration, queueMaxWaitTime: max(0, input.integer("queueMaxWaitTime") ?? 0),
            orders: [:], jobID: JobID())
        do {
            let quote = try await verifier.quote(terms)
            return try Self.json(InitializeView(algorithm: nil, datasets: [], payment: quote))
        } catch let error as ChainVerifierError {
            throw OceanNodeError(code: "payment_refused", message: error.message)
        }
    }

    struct InitializeView: Encodable {
        var algorithm: String?
        var datasets: [String]
        var payment: PaymentQuote

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(algorithm, forKey: .algorithm)
            try c.encode(datasets, forKey: .datasets)
            try c.encode(payment, forKey: .payment)
        }

        enum CodingKeys: String, CodingKey {
            case algorithm, datasets, payment
        }
    }

    // MARK: Start

    /// `POST /compute` (paid) and `POST /freeCompute`: ocean-node's checks in ocean-node's order — parameters,
    /// signature and nonce, environment, resources, access, payment — then c2d's own validation and one insert.
    func start(_ request: Request, _ context: GatewayRequestContext, free: Bool) async throws -> Response {
        let input = OceanNodeInput(body: try await Self.body(request, limit: configuration.limits.maxBodyBytes))
        let command: OceanNodeSignature.Command = free ? .freeStartCompute : .startCompute
        let (consumer, environment) = try await authorizeStart(input, command: command, free: free)

        let tierMax = free ? environment.free?.maxJobDuration ?? environment.maxJobDuration : environment.maxJobDuration
        let maxJobDuration = min(input.integer("maxJobDuration").flatMap { $0 > 0 ? $0 : nil } ?? tierMax, tierMax)
        let queueMaxWaitTime = max(0, input.integer("queueMaxWaitTime") ?? 0)
        let requested = try input.decode([ResourceRequestInput].self, "resources") ?? []
        let resources = try Self.fill(requested, environment: environment, free: free)
        try checkGPUs(resources, environment: environment)
        if queueMaxWaitTime == 0 { try await checkRoom(environment, free: free) }

        guard let algorithm = try input.decode(ComputeAlgorithmInput.self, "algorithm") else {
            throw OceanNodeError.missingField("algorithm", command: command.rawValue, required: ["algorithm"])
        }
        let datasets = try input.decode([ComputeAssetInput].self, "datasets") ?? []
        if input["output"] != nil {
            throw OceanNodeError(
                code: "output_unsupported",
                message: "output (remote storage) is not supported: results are kept by this node")
        }
        let metadata = try metadata(input)
        let viewers: [String]
        do {
            viewers = try submitter.viewers(try input.decode([String].self, "additionalViewers"))
        } catch let error as APIError {
            throw OceanNodeError(code: error.code, message: error.message)
        }
        let workflow = try OceanNodeWorkflow.make(
            algorithm: algorithm, datasets: datasets, resources: resources, maxJobDuration: maxJobDuration,
            environment: environment, free: free, resolvesDocuments: configuration.chainVerifier != nil)
        let payment = try input.decode(PaymentInput.self, "payment")
        let workflowJSON: String?
        do {
            workflowJSON = try submitter.validate(workflow, environment: environment, chainID: payment?.chainId)
        } catch {
            throw OceanNodeError(.init(code: error.httpStatus), code: error.code, message: error.message)
        }

        let jobID = JobID()
        var details = OceanNodeJobDetails(
            isFree: free, maxJobDuration: maxJobDuration, queueMaxWaitTime: queueMaxWaitTime, resources: resources,
            metadata: metadata, payment: nil, algorithmDocumentId: algorithm.documentId,
            datasetDocumentIds: datasets.compactMap(\.documentId))
        var lock: PaymentLock?
        if !free {
            guard let chainID = payment?.chainId, let token = payment?.token, !token.isEmpty else {
                throw OceanNodeError.missingField(
                    "payment", command: command.rawValue, required: ["environment", "algorithm", "datasets", "payment"])
            }
            let paid = try await lockPayment(
                consumer: consumer, environment: environment, chainID: chainID, token: token, resources: resources,
                maxJobDuration: maxJobDuration, queueMaxWaitTime: queueMaxWaitTime,
                assets: [(algorithm.documentId, algorithm.transferTxId)]
                    + datasets.map { ($0.documentId, $0.transferTxId) },
                jobID: jobID)
            lock = paid
            details.payment = .init(
                chainId: chainID, token: token, lockTx: paid.agreementID, claimTx: nil, cancelTx: nil,
                cost: paid.terms.cost)
        }
        let job = Job(
            id: jobID, environment: environment.id, owner: consumer, viewers: viewers,
            agreementID: lock?.agreementID, workflow: workflow)
        let requestID = request.headers[.requestID] ?? UUID().uuidString.lowercased()
        let record = try await insert(
            job, workflowJSON: workflowJSON, free: free, details: details, lock: lock, requestID: requestID)
        return try Self.json([OceanNodeJobView(record)], headers: [.requestID: requestID])
    }

    /// Records the job; if that fails, a payment locked for it is released, so a refused start costs nothing.
    private func insert(
        _ job: Job, workflowJSON: String?, free: Bool, details: OceanNodeJobDetails, lock: PaymentLock?,
        requestID: String
    ) async throws -> PostgresJobStore.OceanNodeJobRecord {
        let encodedDetails = String(decoding: try JSONEncoder().encode(details), as: UTF8.self)
        let createdEpoch: String
        do {
            createdEpoch = try await store.insertOceanNode(
                job, workflowJSON: workflowJSON, freeTier: free, details: encodedDetails,
                trace: .new(requestID: requestID))
        } catch {
            if let lock { await lock.verifier.cancelLock(lock.agreementID, request: lock.terms) }
            if error is PostgresError { throw OceanNodeError.unavailable }
            throw error
        }
        return PostgresJobStore.OceanNodeJobRecord(
            job: job, freeTier: free, details: encodedDetails, createdEpoch: createdEpoch, finishedEpoch: nil,
            algorithmStartEpoch: nil, algorithmStopEpoch: nil, results: [])
    }

    /// The first of ocean-node's checks: required parameters, signature and nonce, environment and tier, access
    /// list. Returns the consumer and the environment.
    private func authorizeStart(
        _ input: OceanNodeInput, command: OceanNodeSignature.Command, free: Bool
    ) async throws -> (String, ComputeEnvironment) {
        try input.checkRequired(
            free
                ? ["algorithm", "datasets", "environment"]
                : ["environment", "algorithm", "datasets", "maxJobDuration"],
            command: command.rawValue)
        if !free, let duration = input.integer("maxJobDuration"), duration <= 0 {
            throw OceanNodeError.invalidMaxJobDuration
        }
        let consumer = try await authenticator.authenticate(
            consumer: input.text("consumerAddress"), nonce: input.text("nonce"), signature: input.text("signature"),
            command: command)
        guard let environment = configuration.environment(input.text("environment") ?? "") else {
            throw OceanNodeError.invalidEnvironment
        }
        if free, environment.free == nil {
            throw OceanNodeError(code: "no_free_tier", message: "This env does not support free jobs")
        }
        // Who may start: the tier's access list (addresses here; AccessList contracts only through the verifier).
        try await checkAccess(consumer, list: free ? environment.free?.access ?? AccessList() : environment.access)
        return (consumer, environment)
    }

    /// A paid job's escrow lock, released again if the job cannot be recorded.
    private struct PaymentLock {
        var terms: PaymentRequest
        var verifier: any ChainVerifier
        var agreementID: String
    }

    /// Prices the job at the environment's fees for `chainID`/`token` and locks the payment on chain.
    private func lockPayment(
        consumer: String, environment: ComputeEnvironment, chainID: Int, token: String,
        resources: [Workflow.ResourceRequest], maxJobDuration: Int, queueMaxWaitTime: Int,
        assets: [(document: String?, transfer: String?)], jobID: JobID
    ) async throws -> PaymentLock {
        guard let prices = Self.prices(environment, chainID: chainID, token: token) else {
            throw OceanNodeError.noPayments(chainID: chainID, token: token)
        }
        guard let verifier = configuration.chainVerifier else {
            throw OceanNodeError.paymentUnverifiable(chainID: chainID)
        }
        var orders: [String: String] = [:]
        for asset in assets {
            if let document = asset.document { orders[document] = asset.transfer ?? "" }
        }
        let terms = PaymentRequest(
            consumer: consumer, environment: environment.id, chainID: chainID, token: token,
            cost: Self.cost(resources, prices: prices, seconds: max(maxJobDuration, environment.minJobDuration)),
            maxJobDuration: maxJobDuration, queueMaxWaitTime: queueMaxWaitTime, orders: orders, jobID: jobID)
        do {
            return PaymentLock(terms: terms, verifier: verifier, agreementID: try await verifier.lockPayment(terms))
        } catch let error as ChainVerifierError {
            throw OceanNodeError(code: "payment_refused", message: error.message)
        }
    }

    /// The local executor has no GPUs: a job asking for one is refused at once instead of failing later.
    private func checkGPUs(_ resources: [Workflow.ResourceRequest], environment: ComputeEnvironment) throws {
        let wantsGPU = resources.contains { resource in
            resource.amount > 0 && environment.resources.contains { $0.id == resource.id && $0.type == .gpu }
        }
        guard configuration.executor == .local, wantsGPU else { return }
        throw OceanNodeError(
            code: "gpu_not_available",
            message: "environment '\(environment.id)' runs jobs on the local executor, which has no GPUs; "
                + "request no GPU, or use a Kubernetes environment")
    }

    /// ocean-node refuses a job it cannot start now unless the job may queue (`queueMaxWaitTime` > 0); c2d counts
    /// what the dispatcher counts. Advisory: the dispatcher's caps are what hold.
    private func checkRoom(_ environment: ComputeEnvironment, free: Bool) async throws {
        let usage =
            try await Self.storeCall { try await store.environmentUsage() }[environment.id]
            ?? PostgresJobStore.EnvironmentUsage()
        let capacity = environment.maxJobs > 0 ? environment.maxJobs : usage.workerSlots
        if capacity > 0, usage.running + usage.queued >= capacity {
            throw OceanNodeError(code: "no_capacity", message: "Too many running jobs ")
        }
        if free, let cap = environment.free?.maxJobs, cap > 0, usage.runningFree + usage.queuedFree >= cap {
            throw OceanNodeError(code: "no_free_capacity", message: "Too many running free jobs ")
        }
    }

    private func checkAccess(_ consumer: String, list: AccessList) async throws {
        if list.isOpen { return }
        if list.addresses.contains(where: { $0.lowercased() == consumer.lowercased() }) { return }
        if !list.accessLists.values.allSatisfy(\.isEmpty), let verifier = configuration.chainVerifier,
            (try? await verifier.isOnAccessList(consumer, lists: list.accessLists)) == true
        {
            return
        }
        throw OceanNodeError.accessDenied
    }

    private func metadata(_ input: OceanNodeInput) throws -> JSONValue? {
        guard let value = input["metadata"] else { return nil }
        guard value.json.count <= Self.maxMetadataBytes else {
            throw OceanNodeError(code: "metadata_too_large", message: "Metadata size is too large")
        }
        guard case .object = value else {
            throw OceanNodeError(code: "invalid_field", message: "Invalid metadata: it must be an object")
        }
        return try JSONDecoder().decode(JSONValue.self, from: value.json)
    }

    // MARK: Status and stop

    /// Jobs by `jobId`, `consumerAddress` or `agreementId` (ANDed). Unauthenticated, as ocean-node's.
    @Sendable func status(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let input = OceanNodeInput(query: request.uri.query, body: ByteBuffer())
        let consumer = input.text("consumerAddress")
        if let consumer, (try? EthereumAddress(consumer)) == nil { throw OceanNodeError.invalidConsumer }
        let jobID = input.text("jobId")
        let agreementID = input.text("agreementId")
        guard consumer != nil || jobID != nil || agreementID != nil else { throw OceanNodeError.statusSelectorRequired }
        let records = try await Self.storeCall {
            try await store.oceanNodeJobs(jobID: jobID, owner: consumer, agreementID: agreementID)
        }
        return try Self.json(records.map(OceanNodeJobView.init))
    }

    /// Asks the consumer's matching jobs to stop (another consumer's job matches nothing), then shows them.
    @Sendable func stop(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let body = try await Self.body(request, limit: configuration.limits.maxBodyBytes)
        let input = OceanNodeInput(query: request.uri.query, body: body)
        try input.checkRequired(["jobId"], command: OceanNodeSignature.Command.stopCompute.rawValue)
        let consumer = try await authenticator.authenticate(
            consumer: input.text("consumerAddress"), nonce: input.text("nonce"), signature: input.text("signature"),
            command: .stopCompute)
        let jobID = input.text("jobId")
        let agreementID = input.text("agreementId")
        let matching = try await Self.storeCall {
            try await store.oceanNodeJobs(jobID: jobID, owner: consumer, agreementID: agreementID)
        }
        let unfinished = matching.filter { $0.job.finishedAt == nil }.map(\.job.id)
        if !unfinished.isEmpty { _ = try await Self.storeCall { try await store.requestStop(jobIDs: unfinished) } }
        let records = try await Self.storeCall {
            try await store.oceanNodeJobs(jobID: jobID, owner: consumer, agreementID: agreementID)
        }
        return try Self.json(records.map(OceanNodeJobView.init))
    }

    // MARK: Results and logs

    /// One result by its index (the `index` of the job's `results`), to the owner or an additional viewer.
    @Sendable func result(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let input = OceanNodeInput(query: request.uri.query, body: ByteBuffer())
        let command = OceanNodeSignature.Command.getComputeResult
        do {
            try input.checkRequired(["jobId", "index"], command: command.rawValue)
        } catch let error as OceanNodeError {
            // `index=0` is falsy to the helper but a valid index.
            guard error.code == "missing_field", input.members["index"]?.text == "0", input["jobId"] != nil else {
                throw error.asText()
            }
        }
        guard let indexText = input.members["index"]?.text, let index = Int(indexText), index >= 0 else {
            throw OceanNodeError.invalidResultIndex
        }
        let consumer: String
        do {
            consumer = try await authenticator.authenticate(
                consumer: input.text("consumerAddress"), nonce: input.text("nonce"),
                signature: input.text("signature"), command: command)
        } catch let error as OceanNodeError {
            throw error.asText()
        }
        let jobIDText = input.text("jobId") ?? ""
        let job = try await ownedJob(jobIDText, consumer: consumer)
        let results = try await Self.storeCall { try await store.results(of: job.id) }
        guard let file = results.first(where: { $0.index == index }) else {
            throw OceanNodeError(
                .notFound, code: "no_such_index", message: "No such index \(index) in this compute job", body: .text)
        }
        do {
            return try await ResultDownload(result: file, resultStore: resultStore).response(
                request: request, context: context,
                contentDisposition: "attachment;filename=\(ResultDownload.bareFilename(file.name))",
                extraHeaders: [.cacheControl: "private, no-store"])
        } catch ResultDownload.Failure.rangeNotSatisfiable(let range, let size) {
            throw OceanNodeError(
                .rangeNotSatisfiable, code: "range_not_satisfiable",
                message: "Range '\(range)' does not fit a file of \(size) bytes", body: .text)
        } catch ResultDownload.Failure.fileMissing {
            throw OceanNodeError(
                .gone, code: "result_unavailable", message: "Result \(index) is recorded but no longer stored",
                body: .text)
        }
    }

    /// The running algorithm's output as it is written, ending when the algorithm does; the same owner rules as
    /// results. A job that has ended answers 404, as ocean-node's.
    @Sendable func streamableLogs(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let input = OceanNodeInput(query: request.uri.query, body: ByteBuffer())
        let command = OceanNodeSignature.Command.getComputeStreamableLogs
        let consumer: String
        do {
            try input.checkRequired(["jobId"], command: command.rawValue)
            consumer = try await authenticator.authenticate(
                consumer: input.text("consumerAddress"), nonce: input.text("nonce"),
                signature: input.text("signature"), command: command)
        } catch let error as OceanNodeError {
            throw error.asText()
        }
        let job = try await ownedJob(input.text("jobId") ?? "", consumer: consumer)
        guard job.finishedAt == nil, LogStep.algorithm.phase(of: job, attempt: job.attempt) != .after else {
            throw OceanNodeError(
                .notFound, code: "not_running", message: "Job not found or not running", body: .text)
        }
        let lease: EventStreamLimiter.Lease
        do {
            // The same key as a native token of that owner: one address, one allowance across both APIs.
            lease = try streams.acquire(caller: "owner:" + consumer.lowercased())
        } catch let error as APIError {
            throw OceanNodeError(
                error.status, code: error.code, message: error.message, body: .text, headers: error.headers)
        }
        do {
            let body = try await logs.body(job: job, step: .algorithm).holding(lease)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache"],
                body: body)
        } catch StepLogStreamer.Failure.unavailable {
            throw OceanNodeError(
                .serviceUnavailable, code: "live_logs_unavailable",
                message: "this node cannot follow running jobs' logs", body: .text)
        } catch StepLogStreamer.Failure.noLog {
            throw OceanNodeError(
                .notFound, code: "not_running", message: "Job not found or not running", body: .text)
        }
    }

    /// An ocean-node job the consumer owns or may view; anything else answers like ocean-node: not found, or not
    /// authorized.
    private func ownedJob(_ jobIDText: String, consumer: String) async throws -> Job {
        guard
            let record = try await Self.storeCall({
                try await store.oceanNodeJobs(jobID: jobIDText, owner: nil, agreementID: nil)
            }).first
        else {
            throw OceanNodeError.jobNotFound(jobIDText)
        }
        let job = record.job
        let lower = consumer.lowercased()
        guard job.owner.lowercased() == lower || job.viewers.contains(where: { $0.lowercased() == lower }) else {
            throw OceanNodeError.notAuthorizedForResults(consumer: consumer, jobID: jobIDText)
        }
        return job
    }

    // MARK: Helpers

    static func fill(_ requested: [ResourceRequestInput], environment: ComputeEnvironment, free: Bool) throws
        -> [Workflow.ResourceRequest]
    {
        do {
            return try ResourcePlan.fill(
                requested.map { Workflow.ResourceRequest(id: $0.id, amount: $0.amount) }, environment: environment,
                free: free)
        } catch {
            throw OceanNodeError(code: error.code, message: error.message)
        }
    }

    static func prices(_ environment: ComputeEnvironment, chainID: Int, token: String) -> [EnvironmentFee.Price]? {
        environment.fees[String(chainID)]?.first { $0.feeToken.lowercased() == token.lowercased() }?.prices
    }

    /// price × amount × started minutes, summed (docs/ocean-node.md, "Prices").
    static func cost(_ resources: [Workflow.ResourceRequest], prices: [EnvironmentFee.Price], seconds: Int) -> Double {
        let minutes = Double((max(0, seconds) + 59) / 60)
        return resources.reduce(0) { total, resource in
            total + (prices.first { $0.id == resource.id }?.price ?? 0) * resource.amount * minutes
        }
    }

    static func body(_ request: Request, limit: Int) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw OceanNodeError(
                .contentTooLarge, code: "body_too_large",
                message: "the request body is larger than the limit of \(limit) bytes")
        }
    }

    static func storeCall<T>(_ body: () async throws -> T) async throws -> T {
        try await unavailableOnStoreError(answering: OceanNodeError.unavailable, body)
    }

    static func json(_ value: some Encodable, headers: HTTPFields = [:]) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(
            status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}
