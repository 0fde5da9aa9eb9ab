import AMQP
import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import Persistence
import Storage

/// Ocean's operator-service API under `/api/v1/operator`, plus `GET /` (docs/ocean-operator-service.md, "Routes"),
/// so Ocean's Provider can use c2d by pointing `OPERATOR_SERVICE_URL` at it. Routes, parameters, error texts, codes
/// and the status object are Ocean's. Unlike Ocean's, every route but `GET /` and `/environments` needs a Provider's
/// signature with a fresh nonce (``OceanAuthenticator``), and the routes see only jobs started through this API.
/// Off unless the operator lists the Providers allowed to use it (``OceanAccess``).
struct OceanRoutes: Sendable {
    static let base = "/api/v1/operator"
    /// The operator-service version whose API this is (setup.py of operator-service v4main).
    static let apiVersion = "1.0.1"

    let configuration: GatewayConfiguration
    let submitter: JobSubmitter
    let store: PostgresJobStore
    let resultStore: any ReadableResultStore
    let authenticator: OceanAuthenticator

    init(
        configuration: GatewayConfiguration, submitter: JobSubmitter, store: PostgresJobStore,
        resultStore: any ReadableResultStore
    ) {
        self.configuration = configuration
        self.submitter = submitter
        self.store = store
        self.resultStore = resultStore
        self.authenticator = OceanAuthenticator(access: configuration.oceanAccess, store: store)
    }

    func register(on router: Router<GatewayRequestContext>) {
        guard configuration.oceanAccess.isEnabled else {
            // The same routes answer that the API is off, so a misconfigured Provider gets a reason, not a bare 404.
            let disabled: @Sendable (Request, GatewayRequestContext) async throws -> Response = { _, _ in
                throw OceanError.disabled
            }
            router.get("/", use: disabled)
            for method in [HTTPRequest.Method.get, .post, .put, .delete] {
                router.on("\(Self.base)/**", method: method, use: disabled)
            }
            return
        }
        router.get("/", use: info)
        router.post("\(Self.base)/compute", use: start)
        router.put("\(Self.base)/compute", use: stop)
        router.get("\(Self.base)/compute", use: status)
        router.delete("\(Self.base)/compute", use: delete)
        router.get("\(Self.base)/runningjobs", use: runningJobs)
        router.get("\(Self.base)/getResult", use: getResult)
        router.get("\(Self.base)/environments", use: environments)
    }

    // MARK: Routes

    @Sendable func info(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let primary = configuration.environments.first
        return try Self.json(
            OceanServiceInfo(
                version: Self.apiVersion, address: configuration.operatorAddress,
                algoTimeLimit: primary.map { String($0.maxJobDuration) },
                storageExpiry: primary.map { String($0.storageExpiry) }))
    }

    /// Start a job: Ocean's checks in Ocean's order, except that the signature is checked before anything is looked
    /// up, then the native submission path (one statement; the dispatcher admits the job from there).
    @Sendable func start(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let parameters = try await Self.parameters(request, limit: configuration.limits.maxBodyBytes)
        guard !parameters.isEmpty else { throw OceanError.payloadEmpty }
        let required = ["workflow", "agreementId", "owner", "providerSignature", "environment", "nonce"]
        if let missing = parameters.firstMissing(required) {
            throw OceanError.missingAttribute(missing, call: "POST:/compute")
        }
        let workflowMembers = try Self.workflowMembers(parameters["workflow"])
        let agreementID = parameters["agreementId"]?.text ?? ""
        let owner = parameters["owner"]?.text ?? ""
        for (name, value) in [("agreementId", agreementID), ("owner", owner)] {
            guard value.utf8.count <= configuration.limits.maxFieldBytes, !value.contains("\0") else {
                throw OceanError(code: "invalid_field", message: "\(name) is too long or contains NUL characters")
            }
        }
        let caller = try await authenticator.authenticate(
            signature: parameters["providerSignature"], message: owner, nonce: parameters["nonce"])
        if try await Self.storeCall({ try await store.oceanAgreementInUse(agreementID) }) {
            throw OceanError.agreementInUse
        }
        guard let environment = configuration.environment(parameters["environment"]?.text ?? "") else {
            throw OceanError.environmentInvalid
        }

        guard let stagesValue = workflowMembers["stages"], !stagesValue.isFalsy,
            case .array(let stages) = stagesValue
        else { throw OceanError.missingStages }
        guard stages.count == 1 else { throw OceanError.multipleStages }
        for name in ["algorithm", "compute", "input", "output"] {
            guard case .object(let stage) = stages[0], stage[name] != nil else { throw OceanError.missingInStage(name) }
        }
        let workflow: Workflow
        do {
            workflow = try JSONDecoder().decode(Workflow.self, from: OceanValue.object(workflowMembers).json)
        } catch {
            throw OceanError(code: "invalid_workflow", message: "Invalid workflow: \(Self.describe(error))")
        }
        if configuration.oceanAccess == .openDevelopment {
            submitter.logger.warning(
                "Ocean job started by an unlisted signer: the Ocean API runs in open development mode",
                metadata: ["ocean.signer": "\(caller.signer)"])
        }
        let requestID = request.headers[.requestID] ?? UUID().uuidString.lowercased()
        let (job, createdEpoch) = try await submitter.insertOcean(
            workflow: workflow, environment: environment, owner: owner, agreementID: agreementID,
            signer: caller.signer, chainID: parameters["chainId"].flatMap { Int($0.text) }, requestID: requestID)
        // The answer shows the job as created (status 1), as Ocean's does, not whatever a fast worker made of it
        // since the commit.
        let record = PostgresJobStore.OceanJobRecord(
            job: job, removed: false, createdEpoch: createdEpoch, finishedEpoch: nil, results: [])
        return try Self.json([record].map(OceanStatusView.init), headers: [.requestID: requestID])
    }

    /// Stop: `stopreq = 1` on every matching unfinished job the caller may see (a job no worker holds yet is
    /// finished at once), then their status.
    @Sendable func stop(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let parameters = try await Self.parameters(request, limit: configuration.limits.maxBodyBytes)
        guard !parameters.isEmpty else { throw OceanError.payloadEmpty }
        if let missing = parameters.firstMissing(["owner", "providerSignature", "nonce"]) {
            throw OceanError.missingAttribute(missing, call: "PUT:/compute")
        }
        let selection = try Selection(parameters)
        let caller = try await authenticator.authenticate(
            signature: parameters["providerSignature"], message: selection.signedMessage, nonce: parameters["nonce"])
        let matching = try await Self.storeCall { try await selection.jobs(in: store, scope: caller.scope) }
        let unfinished = matching.filter { $0.finishedEpoch == nil }.map(\.job.id)
        if !unfinished.isEmpty {
            try await Self.storeCall { try await store.requestStop(jobIDs: unfinished) }
        }
        let records = try await Self.storeCall { try await selection.jobs(in: store, scope: caller.scope) }
        return try Self.json(records.map(OceanStatusView.init))
    }

    /// Status, signed like a stop (Ocean's Provider always signs it, though Ocean's own route does not check).
    @Sendable func status(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let parameters = try await Self.parameters(request, limit: configuration.limits.maxBodyBytes)
        let selection = try Selection(parameters)
        let caller = try await authenticator.authenticate(
            signature: parameters["providerSignature"], message: selection.signedMessage, nonce: parameters["nonce"])
        let records = try await Self.storeCall { try await selection.jobs(in: store, scope: caller.scope) }
        return try Self.json(records.map(OceanStatusView.init))
    }

    /// Kept by Ocean "for backwards compat": does nothing, but is signed like a stop, as the Provider sends it.
    @Sendable func delete(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let parameters = try await Self.parameters(request, limit: configuration.limits.maxBodyBytes)
        _ = try await authenticator.authenticate(
            signature: parameters["providerSignature"], message: Selection.signedMessage(parameters),
            nonce: parameters["nonce"])
        return try Self.json("")
    }

    /// Unfinished Ocean jobs the caller may see, of one `owner` if given; signed over `owner` (or `None`) + nonce,
    /// as the Provider's `sign_for_compute` would sign it.
    @Sendable func runningJobs(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let parameters = try await Self.parameters(request, limit: configuration.limits.maxBodyBytes)
        let caller = try await authenticator.authenticate(
            signature: parameters["providerSignature"], message: Selection.signedMessage(parameters),
            nonce: parameters["nonce"])
        let owner = parameters.selector("owner")
        let records = try await Self.storeCall { try await store.oceanRunningJobs(owner: owner, scope: caller.scope) }
        return try Self.json(records.map(OceanRunningJobView.init))
    }

    /// One result file, by Ocean's index (outputs, then logs, then admin logs), streamed with Range support.
    @Sendable func getResult(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let parameters = try await Self.parameters(request, limit: configuration.limits.maxBodyBytes)
        guard !parameters.isEmpty else { throw OceanError.payloadEmpty }
        if let missing = parameters.firstMissing(["owner", "providerSignature", "nonce", "index", "jobId"]) {
            throw OceanError.missingAttribute(missing, call: "GET:/getResult")
        }
        let owner = parameters["owner"]?.text ?? ""
        let jobIDText = parameters["jobId"]?.text ?? ""
        let caller = try await authenticator.authenticate(
            signature: parameters["providerSignature"], message: owner + jobIDText, nonce: parameters["nonce"])
        let indexText = (parameters["index"]?.text ?? "").trimmingCharacters(in: .whitespaces)
        guard let index = Int(indexText) else {
            throw OceanError(
                code: "invalid_index", message: "Error getResult: index '\(indexText.prefix(32))' is not an integer")
        }
        // A job that does not exist, or that the caller may not see, answers like another owner's job, so job ids
        // leak nothing.
        let job = try await Self.storeCall {
            try await JobID(jobIDText).asyncFlatMap { try await store.oceanJob($0, scope: caller.scope) }
        }
        guard let job, Self.sameOwner(job.owner, owner) else {
            throw OceanError.ownerMismatch(owner: owner, jobID: jobIDText)
        }
        let results = try await Self.storeCall { try await store.results(of: job.id) }
        guard !results.isEmpty else { throw OceanError.noResults(jobID: jobIDText) }
        guard index >= 0 else { throw OceanError.negativeIndex(index) }
        guard let result = results.first(where: { $0.index == index }) else { throw OceanError.noSuchIndex(index) }
        do {
            return try await ResultDownload(result: result, resultStore: resultStore).response(
                request: request, context: context,
                contentDisposition: "attachment;filename=\(ResultDownload.bareFilename(result.name))",
                extraHeaders: [.accessControlExposeHeaders: "Content-Disposition"])
        } catch ResultDownload.Failure.rangeNotSatisfiable(let range, let size) {
            throw OceanError(
                .rangeNotSatisfiable, code: "range_not_satisfiable",
                message: "Range '\(range)' does not fit a file of \(size) bytes",
                headers: [.contentRange: "bytes */\(size)"])
        } catch ResultDownload.Failure.fileMissing {
            throw OceanError(
                .gone, code: "result_unavailable",
                message: "Result \(index) of job \(jobIDText.prefix(64)) is recorded but no longer stored")
        }
    }

    @Sendable func environments(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let state = try await Self.storeCall { try await store.oceanEnvironmentState() }
        let now = String(format: "%.6f", Date().timeIntervalSince1970)
        let views = await configuration.listedEnvironments(store).map { environment in
            OceanEnvironmentView(
                environment, currentJobs: state[environment.id]?.currentJobs ?? 0,
                workerSlots: state[environment.id]?.workerSlots ?? 0,
                lastSeen: state[environment.id]?.lastSeenEpoch ?? now, consumerAddress: configuration.operatorAddress)
        }
        return try Self.json(views)
    }

    // MARK: Helpers

    /// The job selectors of the status and stop calls, read as Ocean reads them.
    struct Selection {
        var agreementID: String?
        var jobID: String?
        var owner: String?

        init(_ parameters: OceanParameters) throws {
            agreementID = parameters.selector("agreementId")
            jobID = parameters.selector("jobId")
            owner = parameters.selector("owner")
            guard agreementID != nil || jobID != nil || owner != nil else { throw OceanError.selectorRequired }
        }

        /// What the Provider signs (before the nonce): `owner + jobId`, or `owner`; Python prints a missing owner
        /// as `None`.
        var signedMessage: String { (owner ?? "None") + (jobID ?? "") }

        /// The same message for calls that need no selector.
        static func signedMessage(_ parameters: OceanParameters) -> String {
            (parameters.selector("owner") ?? "None") + (parameters.selector("jobId") ?? "")
        }

        func jobs(
            in store: PostgresJobStore, scope: PostgresJobStore.OceanScope
        ) async throws -> [PostgresJobStore.OceanJobRecord] {
            try await store.oceanJobs(agreementID: agreementID, jobID: jobID, owner: owner, scope: scope)
        }
    }

    static func parameters(_ request: Request, limit: Int) async throws -> OceanParameters {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw OceanError(
                .contentTooLarge, code: "body_too_large",
                message: "the request body is larger than the limit of \(limit) bytes")
        }
        return OceanParameters(query: request.uri.query, body: Data(buffer: body))
    }

    /// The workflow as a JSON object; a query string carries it as JSON text. Anything else is Ocean's
    /// "workflow is required" error.
    static func workflowMembers(_ value: OceanValue?) throws -> [String: OceanValue] {
        guard let value, !value.isFalsy else { throw OceanError.workflowRequired }
        switch value {
        case .object(let members):
            return members
        case .string(let text):
            var parser = OceanJSONParser(Array(text.utf8))
            guard case .object(let members)? = try? parser.parseDocument(), !members.isEmpty else {
                throw OceanError.workflowRequired
            }
            return members
        default:
            throw OceanError.workflowRequired
        }
    }

    /// Owners are compared as addresses when both are addresses (case carries only a checksum), else exactly.
    static func sameOwner(_ stored: String, _ given: String) -> Bool {
        if stored == given { return true }
        func isAddress(_ text: String) -> Bool {
            text.utf8.count == 42 && text.hasPrefix("0x") && text.utf8.dropFirst(2).allSatisfy { $0.isASCIIHexDigit }
        }
        return isAddress(stored) && isAddress(given) && stored.lowercased() == given.lowercased()
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing field '\(JobRoutes.path(context.codingPath + [key]))'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.dataCorrupted(let context):
            return "field '\(JobRoutes.path(context.codingPath))' is invalid: \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }

    /// A store that is down answers 503 promptly, in Ocean's error shape.
    @discardableResult
    static func storeCall<T>(_ body: () async throws -> T) async throws -> T {
        try await unavailableOnStoreError(answering: OceanError.unavailable, body)
    }

    static func json(_ value: some Encodable, headers: HTTPFields = [:]) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(
            status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

extension JobSubmitter {
    /// Accepts a job for the Ocean API: the same validation and insert as ``submit(_:principal:requestID:)``, with
    /// the agreement recorded. Returns the job and its creation time as Postgres's epoch text. Two concurrent starts
    /// with one agreement cannot both win: the loser hits the unique index of migration 0004 and gets Ocean's
    /// "already in use" error.
    func insertOcean(
        workflow: Workflow, environment: ComputeEnvironment, owner: String, agreementID: String, signer: String,
        chainID: Int?, requestID: String
    ) async throws -> (Job, createdEpoch: String) {
        let workflowJSON: String?
        do {
            workflowJSON = try validate(workflow, environment: environment, chainID: chainID)
        } catch {
            throw OceanError(.init(code: error.httpStatus), code: error.code, message: error.message)
        }
        let job = Job(
            id: JobID(), environment: environment.id, owner: owner, agreementID: agreementID,
            origin: .ocean(signer: signer), workflow: workflow)
        do {
            switch try await store.insert(job, workflowJSON: workflowJSON, trace: .new(requestID: requestID)) {
            case .inserted(let createdEpoch):
                return (job, createdEpoch)
            case .existing:
                // Without an idempotency key there is nothing to conflict with.
                throw OceanError.unavailable
            }
        } catch let error as PostgresError
            where error.isUniqueViolation && error.constraint == PostgresJobStore.activeAgreementIndex
        {
            throw OceanError.agreementInUse
        } catch let error as PostgresError {
            logger.error("job insert failed", metadata: ["error": "\(error)"])
            throw OceanError.unavailable
        }
    }
}

extension Optional {
    fileprivate func asyncFlatMap<U>(_ transform: (Wrapped) async throws -> U?) async rethrows -> U? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}

extension HTTPField.Name {
    static let accessControlExposeHeaders = HTTPField.Name("Access-Control-Expose-Headers")!
}

extension UInt8 {
    fileprivate var isASCIIHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x61...0x66).contains(self) || (0x41...0x46).contains(self)
    }
}
