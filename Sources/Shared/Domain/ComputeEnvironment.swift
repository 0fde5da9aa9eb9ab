/// A compute environment: where jobs run and the limits they run under. Ocean's legacy environment
/// object (`cpuNumber`, `ramGB`, `maxJobDuration`, …) is derived from it by the gateway.
package struct ComputeEnvironment: Sendable, Hashable, Codable {
    package var id: String
    package var description: String
    /// Longest run time of the algorithm step, in seconds.
    package var maxJobDuration: Int
    /// CPU cores one job may use.
    package var cpus: Double
    /// Memory one job may use, in MiB.
    package var memoryMiB: Int
    /// Disk one job may write (outputs and logs), in MiB.
    package var diskMiB: Int
    /// Jobs of this environment that may run at once across the whole fleet (admitted and not finished); 0 (the
    /// default) sets no cap of its own, so the live workers' free slots are the limit.
    package var maxJobs: Int
    /// Whether algorithms may reach the network when a job asks for it (`compute.allowNetwork`). Off by default:
    /// isolation is the default, and even where allowed a job gets network only by asking.
    package var allowNetwork: Bool
    /// Whether raw code (`rawcode`) algorithms are accepted.
    package var allowRawAlgorithm: Bool
    /// Seconds results are kept after a job finishes; 0 keeps them until deleted.
    package var storageExpiry: Int
    /// Seconds a job may wait in the queue before it ends with status 2 (expired in queue); 0 (the default) waits
    /// as long as it takes.
    package var maxQueueWait: Int = 0
    /// Ocean chain ids whose jobs this environment accepts; empty (the default) accepts any chain.
    package var chainIds: [Int] = []
    /// Published (non-raw) algorithms this environment runs; empty (the default) runs any. Each entry's fields may
    /// use `*` wildcards.
    package var trustedAlgorithms: [TrustedAlgorithm] = []
    /// Kubernetes executor: a `ReadOnlyMany` PersistentVolumeClaim in the jobs namespace holding the publisher's
    /// datasets; the configure step mounts it read-only and `path` inputs are read from it. Without it (the
    /// default) `path` inputs are refused at submit on Kubernetes.
    package var dataVolumeClaim: String?
    /// Container images this environment provides (`EnvironmentImage`): with the local executor the only images a
    /// workflow may name; with Kubernetes, when not empty, an allow-list. Default none.
    package var images: [EnvironmentImage] = []
    /// Kubernetes: names of Secrets (of type `kubernetes.io/dockerconfigjson`, in the jobs' namespace) the
    /// algorithm pod pulls its image with, for private registries. Default none.
    package var imagePullSecrets: [String] = []
    /// Shortest billable run of a paid job, in seconds (ocean-node's `minJobDuration`); 0 (the default): none.
    package var minJobDuration: Int = 0
    /// ocean-node's resource list, beyond what `cpus`, `memoryMiB` and `diskMiB` say: GPUs (with their `total`), and
    /// `min` amounts for cpu, ram and disk. Empty (the default): cpu, ram and disk only, no minimum.
    package var resources: [ComputeResource] = []
    /// Prices per chain id and fee token (ocean-node's `fees`); empty (the default): no paid jobs are offered.
    package var fees: [String: [EnvironmentFee]] = [:]
    /// Who may start paid jobs through the ocean-node API; open (the default): everyone.
    package var access: AccessList = AccessList()
    /// Jobs without payment and their own limits; nil (the default): no free tier.
    package var free: FreeTier?
    /// Node selector of algorithm pods that request GPUs (Kubernetes), e.g. `{"nvidia.com/gpu.present": "true"}`;
    /// empty (the default): none.
    package var gpuNodeSelector: [String: String] = [:]

    /// One trusted algorithm, as Ocean's `publisherTrustedAlgorithms` entries: `did`, `filesChecksum` (the
    /// algorithm file's sha-256 hex) and `containerSectionChecksum` (sha-256 hex of the entrypoint followed by the
    /// container checksum). A missing field is `*`.
    package struct TrustedAlgorithm: Sendable, Hashable, Codable {
        package var did: String
        package var filesChecksum: String
        package var containerSectionChecksum: String

        package init(did: String = "*", filesChecksum: String = "*", containerSectionChecksum: String = "*") {
            self.did = did
            self.filesChecksum = filesChecksum
            self.containerSectionChecksum = containerSectionChecksum
        }

        package init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            did = try c.decodeIfPresent(String.self, forKey: .did) ?? "*"
            filesChecksum = try c.decodeIfPresent(String.self, forKey: .filesChecksum) ?? "*"
            containerSectionChecksum = try c.decodeIfPresent(String.self, forKey: .containerSectionChecksum) ?? "*"
        }
    }

    package init(
        id: String, description: String = "", maxJobDuration: Int = 3600, cpus: Double = 1, memoryMiB: Int = 1024,
        diskMiB: Int = 1024, maxJobs: Int = 0, allowNetwork: Bool = false, allowRawAlgorithm: Bool = true,
        storageExpiry: Int = 0
    ) {
        self.id = id
        self.description = description
        self.maxJobDuration = maxJobDuration
        self.cpus = cpus
        self.memoryMiB = memoryMiB
        self.diskMiB = diskMiB
        self.maxJobs = maxJobs
        self.allowNetwork = allowNetwork
        self.allowRawAlgorithm = allowRawAlgorithm
        self.storageExpiry = storageExpiry
    }

    enum CodingKeys: String, CodingKey {
        case id, description, maxJobDuration, cpus, memoryMiB, diskMiB, maxJobs, allowNetwork, allowRawAlgorithm
        case storageExpiry, chainIds, trustedAlgorithms, maxQueueWait, images, imagePullSecrets, dataVolumeClaim
        case minJobDuration, resources, fees, access, free, gpuNodeSelector
    }

    /// Missing keys take the defaults above, so an environments file only states what differs.
    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = ComputeEnvironment(id: try c.decode(String.self, forKey: .id))
        self = defaults
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? defaults.description
        maxJobDuration = try c.decodeIfPresent(Int.self, forKey: .maxJobDuration) ?? defaults.maxJobDuration
        cpus = try c.decodeIfPresent(Double.self, forKey: .cpus) ?? defaults.cpus
        memoryMiB = try c.decodeIfPresent(Int.self, forKey: .memoryMiB) ?? defaults.memoryMiB
        diskMiB = try c.decodeIfPresent(Int.self, forKey: .diskMiB) ?? defaults.diskMiB
        maxJobs = try c.decodeIfPresent(Int.self, forKey: .maxJobs) ?? defaults.maxJobs
        allowNetwork = try c.decodeIfPresent(Bool.self, forKey: .allowNetwork) ?? defaults.allowNetwork
        allowRawAlgorithm = try c.decodeIfPresent(Bool.self, forKey: .allowRawAlgorithm) ?? defaults.allowRawAlgorithm
        storageExpiry = try c.decodeIfPresent(Int.self, forKey: .storageExpiry) ?? defaults.storageExpiry
        chainIds = try c.decodeIfPresent([Int].self, forKey: .chainIds) ?? []
        maxQueueWait = try c.decodeIfPresent(Int.self, forKey: .maxQueueWait) ?? 0
        trustedAlgorithms = try c.decodeIfPresent([TrustedAlgorithm].self, forKey: .trustedAlgorithms) ?? []
        dataVolumeClaim = try c.decodeIfPresent(String.self, forKey: .dataVolumeClaim)
        images = try c.decodeIfPresent([EnvironmentImage].self, forKey: .images) ?? []
        imagePullSecrets = try c.decodeIfPresent([String].self, forKey: .imagePullSecrets) ?? []
        minJobDuration = try c.decodeIfPresent(Int.self, forKey: .minJobDuration) ?? 0
        resources = try c.decodeIfPresent([ComputeResource].self, forKey: .resources) ?? []
        fees = try c.decodeIfPresent([String: [EnvironmentFee]].self, forKey: .fees) ?? [:]
        access = try c.decodeIfPresent(AccessList.self, forKey: .access) ?? AccessList()
        free = try c.decodeIfPresent(FreeTier.self, forKey: .free)
        gpuNodeSelector = try c.decodeIfPresent([String: String].self, forKey: .gpuNodeSelector) ?? [:]
        // A listed cpu, ram or disk `max` is the same limit as `cpus`, `memoryMiB`, `diskMiB`: where those are not
        // given it sets them, so a file written in ocean-node's terms means what it says.
        for resource in resources {
            switch resource.id {
            case "cpu" where !c.contains(.cpus): cpus = resource.max
            case "ram" where !c.contains(.memoryMiB): memoryMiB = Int((resource.max * 1024).rounded())
            case "disk" where !c.contains(.diskMiB): diskMiB = Int((resource.max * 1024).rounded())
            default: break
            }
        }
    }

    /// The environment c2d serves when nothing else is configured.
    package static let oceanCompute = ComputeEnvironment(id: "ocean-compute", description: "c2d default environment")

    /// Identifiers become queue names and routing keys, so they are kept to a safe alphabet.
    package static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 63
            && id.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }
}
