import Domain
import Foundation
import Persistence

/// What c2d keeps about a job started through the ocean-node API besides its workflow (the `ocean_node` column).
struct OceanNodeJobDetails: Codable, Sendable {
    var isFree: Bool
    var maxJobDuration: Int
    var queueMaxWaitTime: Int
    /// Every resource of the job's tier with its amount, as ocean-node fills them in.
    var resources: [Workflow.ResourceRequest]
    var metadata: JSONValue?
    var payment: Payment?
    /// The algorithm's and datasets' document ids, as sent.
    var algorithmDocumentId: String?
    var datasetDocumentIds: [String]

    struct Payment: Codable, Sendable {
        var chainId: Int
        var token: String
        var lockTx: String?
        var claimTx: String?
        var cancelTx: String?
        var cost: Double
    }
}

/// ocean-node's status texts, where they differ from the operator-service's (docs/ocean-node.md, "Statuses").
extension JobStatus {
    var oceanNodeText: String {
        switch self {
        case .queued: "Job queued"
        case .started: "Pulling algorithm image"
        case .provisioningSuccess: "Provisioning data"
        default: text
        }
    }
}

/// ocean-node's public `ComputeJob`, field for field (its `omitDBComputeFieldsFromComputeJob` output). Dates are
/// epoch seconds as strings; `dateFinished` is null until the job ends; `terminationDetails` carries the
/// algorithm's exit code and whether it was killed for memory, null until known.
struct OceanNodeJobView: Encodable {
    var record: PostgresJobStore.OceanNodeJobRecord
    var details: OceanNodeJobDetails

    init(_ record: PostgresJobStore.OceanNodeJobRecord) {
        self.record = record
        details =
            (try? JSONDecoder().decode(OceanNodeJobDetails.self, from: Data(record.details.utf8)))
            ?? OceanNodeJobDetails(
                isFree: record.freeTier, maxJobDuration: 0, queueMaxWaitTime: 0, resources: [], metadata: nil,
                payment: nil, algorithmDocumentId: nil, datasetDocumentIds: [])
    }

    enum CodingKeys: String, CodingKey {
        case owner, did, jobId, dateCreated, dateFinished, status, statusText, results, inputDID, algoDID
        case maxJobDuration, agreementId, environment, metadata, terminationDetails, queueMaxWaitTime
        case stopRequested, isFree, algoStartTimestamp, algoStopTimestamp, resources, payment, additionalViewers
        case algoDuration
    }

    struct Result: Encodable {
        var filename: String
        var filesize: Int64
        var type: String
        var index: Int
    }

    struct TerminationDetails: Encodable {
        var exitCode: Int?
        var OOMKilled: Bool?

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(exitCode, forKey: .exitCode)
            try c.encode(OOMKilled, forKey: .OOMKilled)
        }

        enum CodingKeys: String, CodingKey {
            case exitCode, OOMKilled
        }
    }

    /// Known once the job has ended; ocean-node writes `{exitCode: null, OOMKilled: null}` until then.
    static func terminationDetails(_ job: Job) -> TerminationDetails {
        guard job.finishedAt != nil else { return TerminationDetails(exitCode: nil, OOMKilled: nil) }
        let exitCode = job.exitCode ?? (job.outcome == .succeeded ? 0 : nil)
        return TerminationDetails(exitCode: exitCode, OOMKilled: job.oomKilled)
    }

    func encode(to encoder: any Encoder) throws {
        let job = record.job
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job.owner, forKey: .owner)
        try c.encode(details.datasetDocumentIds.first, forKey: .did)
        try c.encode(job.id.description, forKey: .jobId)
        try c.encode(record.createdEpoch, forKey: .dateCreated)
        try c.encode(record.finishedEpoch, forKey: .dateFinished)
        try c.encode(job.status.rawValue, forKey: .status)
        try c.encode(job.status.oceanNodeText, forKey: .statusText)
        try c.encode(
            record.results.map {
                Result(filename: $0.name, filesize: $0.size, type: Self.resultType($0.kind), index: $0.index)
            }, forKey: .results)
        try c.encode(details.datasetDocumentIds, forKey: .inputDID)
        try c.encode(details.algorithmDocumentId, forKey: .algoDID)
        try c.encode(details.maxJobDuration, forKey: .maxJobDuration)
        try c.encode(job.agreementID, forKey: .agreementId)
        try c.encode(job.environment, forKey: .environment)
        try c.encode(details.metadata, forKey: .metadata)
        try c.encode(Self.terminationDetails(job), forKey: .terminationDetails)
        try c.encode(details.queueMaxWaitTime, forKey: .queueMaxWaitTime)
        try c.encode(job.stopRequest != 0, forKey: .stopRequested)
        try c.encode(details.isFree, forKey: .isFree)
        try c.encode(record.algorithmStartEpoch ?? "0", forKey: .algoStartTimestamp)
        try c.encode(record.algorithmStopEpoch ?? "0", forKey: .algoStopTimestamp)
        try c.encode(details.resources, forKey: .resources)
        try c.encode(details.payment, forKey: .payment)
        try c.encode(job.viewers, forKey: .additionalViewers)
        try c.encode(Self.algorithmDuration(record), forKey: .algoDuration)
    }

    /// Seconds the algorithm ran (0 until it stopped).
    static func algorithmDuration(_ record: PostgresJobStore.OceanNodeJobRecord) -> Double {
        guard let start = record.algorithmStartEpoch.flatMap(Double.init),
            let stop = record.algorithmStopEpoch.flatMap(Double.init), stop >= start
        else { return 0 }
        return ((stop - start) * 1000).rounded() / 1000
    }

    /// ocean-node spells the configure log `configurationLog` (the operator-service's `configrationLog`).
    static func resultType(_ kind: ResultKind) -> String {
        kind == .configurationLog ? "configurationLog" : kind.rawValue
    }
}

/// ocean-node's `ComputeEnvironment`, from c2d's environment and what its jobs use now, fleet-wide.
struct OceanNodeEnvironmentView: Encodable {
    var id: String
    var description: String
    var consumerAddress: String?
    var storageExpiry: Int
    var minJobDuration: Int
    var maxJobDuration: Int
    var maxJobs: Int
    var runningJobs: Int
    var runningfreeJobs: Int
    var queuedJobs: Int
    var queuedFreeJobs: Int
    var queMaxWaitTime: Double
    var queMaxWaitTimeFree: Double
    var runMaxWaitTime: Double
    var runMaxWaitTimeFree: Double
    var fees: [String: [EnvironmentFee]]
    var resources: [Resource]
    var access: AccessList
    var free: Free?
    var platform = Platform()
    var enableNetwork: Bool

    struct Resource: Encodable {
        var id: String
        var type: String
        var kind: String
        var total: Double
        var min: Double
        var max: Double
        var inUse: Double
        var description: String?
    }

    struct Free: Encodable {
        var storageExpiry: Int
        var maxJobDuration: Int
        var minJobDuration: Int
        var maxJobs: Int
        var resources: [Resource]
        var access: AccessList
    }

    struct Platform: Encodable {
        var architecture = Self.machineArchitecture
        var os = "linux"

        static let machineArchitecture: String = {
            #if arch(arm64)
                "arm64"
            #else
                "x86_64"
            #endif
        }()
    }

    /// `capacity` is how many of the environment's jobs may run at once: its `maxJobs`, or without one the live
    /// workers' slots. `inUse` of a resource is what the running jobs asked for, or the environment's amount for a
    /// job that did not ask.
    init(_ environment: ComputeEnvironment, usage: PostgresJobStore.EnvironmentUsage, consumerAddress: String?) {
        let capacity = environment.maxJobs > 0 ? environment.maxJobs : usage.workerSlots
        id = environment.id
        description = environment.description
        self.consumerAddress = consumerAddress
        storageExpiry = environment.storageExpiry
        minJobDuration = environment.minJobDuration
        maxJobDuration = environment.maxJobDuration
        maxJobs = capacity
        runningJobs = usage.running
        runningfreeJobs = usage.runningFree
        queuedJobs = usage.queued
        queuedFreeJobs = usage.queuedFree
        queMaxWaitTime = usage.queueRemainingSeconds.rounded()
        queMaxWaitTimeFree = usage.queueRemainingSecondsFree.rounded()
        runMaxWaitTime = usage.runRemainingSeconds.rounded()
        runMaxWaitTimeFree = usage.runRemainingSecondsFree.rounded()
        fees = environment.fees
        access = environment.access
        enableNetwork = environment.allowNetwork
        func views(_ catalog: [ComputeResource], running: Int, requested: [String: (amount: Double, jobs: Int)])
            -> [Resource]
        {
            catalog.map { resource in
                let asked = requested[resource.id] ?? (0, 0)
                // Jobs that did not name a built-in resource run with the environment's amount of it.
                let defaulted = resource.type == .gpu ? 0 : Double(max(0, running - asked.jobs)) * resource.max
                return Resource(
                    id: resource.id, type: resource.type.rawValue,
                    kind: resource.type == .gpu ? "discrete" : "fungible", total: resource.total, min: resource.min,
                    max: resource.max, inUse: asked.amount + defaulted, description: resource.description)
            }
        }
        resources = views(
            environment.resourceCatalog(capacity: capacity), running: usage.running, requested: usage.requested)
        if let tier = environment.free {
            let freeCapacity = tier.maxJobs > 0 ? min(tier.maxJobs, capacity) : capacity
            free = Free(
                storageExpiry: tier.storageExpiry ?? environment.storageExpiry,
                maxJobDuration: tier.maxJobDuration ?? environment.maxJobDuration,
                minJobDuration: tier.minJobDuration, maxJobs: tier.maxJobs,
                resources: views(
                    environment.tierCatalog(free: true, capacity: freeCapacity).map { resource in
                        var scaled = resource
                        if resource.type != .gpu { scaled.total = resource.max * Double(freeCapacity) }
                        return scaled
                    }, running: usage.runningFree, requested: usage.requestedFree),
                access: tier.access)
        }
    }
}
