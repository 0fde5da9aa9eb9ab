import Domain
import Foundation
import Persistence

/// The operator-service's status object (docs/ocean-operator-service.md, "Status object"), field for field and
/// type for type.
struct OceanStatusView: Encodable {
    var agreementId: String?
    var jobId: String
    var owner: String
    var status: Int
    var statusText: String
    var dateCreated: String
    var dateFinished: String?
    /// `""` until there are results, then `[{filename, filesize, type}]` (Ocean removes the URLs).
    var results: [OceanResultView]
    var stopreq: Int
    var removed: Int
    var algoDID: String
    var inputDID: [String]
    /// ocean-node's `{exitCode, OOMKilled}` (both null until the job ends), so a crashed algorithm is told apart from a
    /// success; Ocean's clients ignore fields they do not know.
    var terminationDetails: OceanNodeJobView.TerminationDetails

    init(_ record: PostgresJobStore.OceanJobRecord) {
        terminationDetails = OceanNodeJobView.terminationDetails(record.job)
        agreementId = record.job.agreementID
        jobId = record.job.id.description
        owner = record.job.owner
        status = record.job.status.rawValue
        statusText = record.job.status.text
        dateCreated = record.createdEpoch
        dateFinished = record.finishedEpoch
        results = record.results.map(OceanResultView.init)
        stopreq = record.job.stopRequest
        removed = record.removed ? 1 : 0
        algoDID = record.job.workflow.stage?.algorithm.didOrRaw ?? "raw"
        inputDID = record.job.workflow.inputDIDs
    }

    enum CodingKeys: String, CodingKey {
        case agreementId, jobId, owner, status, statusText, dateCreated, dateFinished, results, stopreq, removed
        case algoDID, inputDID, terminationDetails
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        // Optional fields are written as null, never left out: Ocean's clients index them directly.
        try c.encode(agreementId, forKey: .agreementId)
        try c.encode(jobId, forKey: .jobId)
        try c.encode(owner, forKey: .owner)
        try c.encode(status, forKey: .status)
        try c.encode(statusText, forKey: .statusText)
        try c.encode(dateCreated, forKey: .dateCreated)
        try c.encode(dateFinished, forKey: .dateFinished)
        if results.isEmpty {
            try c.encode("", forKey: .results)
        } else {
            try c.encode(results, forKey: .results)
        }
        try c.encode(stopreq, forKey: .stopreq)
        try c.encode(removed, forKey: .removed)
        try c.encode(algoDID, forKey: .algoDID)
        try c.encode(inputDID, forKey: .inputDID)
        try c.encode(terminationDetails, forKey: .terminationDetails)
    }
}

struct OceanResultView: Encodable {
    var filename: String
    var filesize: Int64
    var type: String

    init(_ result: ResultFile) {
        filename = result.name
        filesize = result.size
        type = result.kind.rawValue
    }
}

/// An entry of `/runningjobs`.
struct OceanRunningJobView: Encodable {
    var agreementId: String?
    var jobId: String
    var owner: String
    var status: Int
    var statusText: String
    var dateCreated: String
    var namespace: String
    var algoDID: String
    var inputDID: [String]
    /// ocean-node's `{exitCode, OOMKilled}` (both null until the job ends), so a crashed algorithm is told apart from a
    /// success; Ocean's clients ignore fields they do not know.
    var terminationDetails: OceanNodeJobView.TerminationDetails

    init(_ record: PostgresJobStore.OceanJobRecord) {
        terminationDetails = OceanNodeJobView.terminationDetails(record.job)
        agreementId = record.job.agreementID
        jobId = record.job.id.description
        owner = record.job.owner
        status = record.job.status.rawValue
        statusText = record.job.status.text
        dateCreated = record.createdEpoch
        namespace = record.job.environment
        algoDID = record.job.workflow.stage?.algorithm.didOrRaw ?? "raw"
        inputDID = record.job.workflow.inputDIDs
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(agreementId, forKey: .agreementId)
        try c.encode(jobId, forKey: .jobId)
        try c.encode(owner, forKey: .owner)
        try c.encode(status, forKey: .status)
        try c.encode(statusText, forKey: .statusText)
        try c.encode(dateCreated, forKey: .dateCreated)
        try c.encode(namespace, forKey: .namespace)
        try c.encode(algoDID, forKey: .algoDID)
        try c.encode(inputDID, forKey: .inputDID)
        try c.encode(terminationDetails, forKey: .terminationDetails)
    }

    enum CodingKeys: String, CodingKey {
        case agreementId, jobId, owner, status, statusText, dateCreated, namespace, algoDID, inputDID
        case terminationDetails
    }
}

/// The legacy environment object the operator-engine announced, derived from c2d's
/// environment. The legacy API has no pricing, hence the zero price; GPUs are the environment's `gpu` resources.
struct OceanEnvironmentView: Encodable {
    var id: String
    var cpuNumber: Double
    var cpuType = ""
    /// The GPUs one job may use (the `max` of the environment's `gpu` resources, as `cpuNumber` is per job).
    var gpuNumber: Double
    /// Their descriptions (or ids when undescribed), comma-separated; empty without GPUs.
    var gpuType: String
    var ramGB: Double
    var diskGB: Double
    var priceMin = 0
    var desc: String
    var currentJobs: Int
    var maxJobs: Int
    var consumerAddress: String?
    var storageExpiry: Int
    var maxJobDuration: Int
    var lastSeen: String

    /// `maxJobs` is the environment's cap, or, for an environment without one, the slots of the workers serving it:
    /// what Ocean clients read as capacity is then what the fleet can really run.
    init(
        _ environment: ComputeEnvironment, currentJobs: Int, workerSlots: Int, lastSeen: String,
        consumerAddress: String?
    ) {
        id = environment.id
        cpuNumber = environment.cpus
        let gpus = environment.resources.filter { $0.type == .gpu }
        gpuNumber = gpus.map(\.max).reduce(0, +)
        gpuType = gpus.map { $0.description ?? $0.id }.joined(separator: ", ")
        ramGB = Double(environment.memoryMiB) / 1024
        diskGB = Double(environment.diskMiB) / 1024
        desc = environment.description
        self.currentJobs = currentJobs
        maxJobs = environment.maxJobs > 0 ? environment.maxJobs : workerSlots
        self.consumerAddress = consumerAddress
        storageExpiry = environment.storageExpiry
        maxJobDuration = environment.maxJobDuration
        self.lastSeen = lastSeen
    }

    enum CodingKeys: String, CodingKey {
        case id, cpuNumber, cpuType, gpuNumber, gpuType, ramGB, diskGB, priceMin, desc, currentJobs, maxJobs
        case consumerAddress, storageExpiry, maxJobDuration, lastSeen
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try Self.encodeNumber(cpuNumber, forKey: .cpuNumber, in: &c)
        try c.encode(cpuType, forKey: .cpuType)
        try Self.encodeNumber(gpuNumber, forKey: .gpuNumber, in: &c)
        try c.encode(gpuType, forKey: .gpuType)
        try Self.encodeNumber(ramGB, forKey: .ramGB, in: &c)
        try Self.encodeNumber(diskGB, forKey: .diskGB, in: &c)
        try c.encode(priceMin, forKey: .priceMin)
        try c.encode(desc, forKey: .desc)
        try c.encode(currentJobs, forKey: .currentJobs)
        try c.encode(maxJobs, forKey: .maxJobs)
        try c.encode(consumerAddress, forKey: .consumerAddress)
        try c.encode(storageExpiry, forKey: .storageExpiry)
        try c.encode(maxJobDuration, forKey: .maxJobDuration)
        try c.encode(lastSeen, forKey: .lastSeen)
    }

    /// Whole numbers as integers (`1`, not `1.0`), as the operator-engine announced them.
    private static func encodeNumber(
        _ value: Double, forKey key: CodingKeys, in container: inout KeyedEncodingContainer<CodingKeys>
    ) throws {
        if value.rounded() == value, abs(value) < 1e15 {
            try container.encode(Int(value), forKey: key)
        } else {
            try container.encode(value, forKey: key)
        }
    }
}

/// `GET /`: what the operator-service says about itself.
struct OceanServiceInfo: Encodable {
    var software = "Operator service"
    var version: String
    var address: String?
    var algoTimeLimit: String?
    var storageExpiry: String?

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(software, forKey: .software)
        try c.encode(version, forKey: .version)
        try c.encode(address, forKey: .address)
        try c.encode(algoTimeLimit, forKey: .algoTimeLimit)
        try c.encode(storageExpiry, forKey: .storageExpiry)
    }

    enum CodingKeys: String, CodingKey {
        case software, version, address, algoTimeLimit, storageExpiry
    }
}
