/// Ocean-node's environment model (docs/ocean-node.md, "Environments"): resources as a list, prices per chain and
/// token, access lists, and a free tier with limits of its own. These types are what an environments file may say;
/// c2d's own fields (`cpus`, `memoryMiB`, `diskMiB`, `maxJobs`) stay the source of the cpu, ram and disk limits.

/// What a resource is. ocean-node keeps `type` a free hint; c2d needs to know GPUs apart (they become
/// `nvidia.com/gpu` requests on Kubernetes and are refused by the local executor).
package enum ComputeResourceType: String, Sendable, Hashable, Codable, CaseIterable {
    case cpu, ram, disk, gpu
}

/// One resource of an environment, as ocean-node lists it: per job at least `min` and at most `max` units (cores,
/// GiB, GiB, devices). `total` is how many units the environment has for all its jobs at once; for cpu, ram and disk
/// c2d derives it (per-job maximum × the jobs that may run at once), for a GPU the environments file states it.
package struct ComputeResource: Sendable, Hashable, Codable {
    package var id: String
    package var type: ComputeResourceType
    package var total: Double
    package var min: Double
    package var max: Double
    package var description: String?

    package init(
        id: String, type: ComputeResourceType, total: Double, min: Double = 0, max: Double,
        description: String? = nil
    ) {
        self.id = id
        self.type = type
        self.total = total
        self.min = min
        self.max = max
        self.description = description
    }

    enum CodingKeys: String, CodingKey {
        case id, type, total, min, max, description
    }

    /// `type` defaults from the id for the three built-in resources, else it must be given; `max` defaults to
    /// `total`, `total` to `max`, `min` to 0.
    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        if let type = try c.decodeIfPresent(ComputeResourceType.self, forKey: .type) {
            self.type = type
        } else if let builtIn = ComputeResourceType(rawValue: id), builtIn != .gpu {
            self.type = builtIn
        } else {
            throw DecodingError.keyNotFound(
                CodingKeys.type,
                .init(codingPath: c.codingPath, debugDescription: "resource '\(id)' needs a type (cpu, ram, disk, gpu)")
            )
        }
        let total = try c.decodeIfPresent(Double.self, forKey: .total)
        let max = try c.decodeIfPresent(Double.self, forKey: .max)
        self.total = total ?? max ?? 0
        self.max = max ?? total ?? 0
        min = try c.decodeIfPresent(Double.self, forKey: .min) ?? 0
        description = try c.decodeIfPresent(String.self, forKey: .description)
    }
}

/// A per-tier override of a resource's per-job limits (ocean-node's `free.resources` entries): a resource absent
/// from a tier's list is not available to that tier.
package struct ResourceLimit: Sendable, Hashable, Codable {
    package var id: String
    package var min: Double?
    package var max: Double?

    package init(id: String, min: Double? = nil, max: Double? = nil) {
        self.id = id
        self.min = min
        self.max = max
    }
}

/// Who may start jobs: `addresses` (Ethereum addresses), and `accessLists` (per chain id, AccessList contract
/// addresses whose token holders may). Both empty: everyone. Membership of an on-chain list can only be answered
/// by a chain verifier (see README, "What is verified on chain").
package struct AccessList: Sendable, Hashable, Codable {
    package var addresses: [String]
    package var accessLists: [String: [String]]

    package init(addresses: [String] = [], accessLists: [String: [String]] = [:]) {
        self.addresses = addresses
        self.accessLists = accessLists
    }

    package var isOpen: Bool { addresses.isEmpty && accessLists.values.allSatisfy(\.isEmpty) }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        addresses = try c.decodeIfPresent([String].self, forKey: .addresses) ?? []
        // ocean-node writes `null` for "no lists".
        accessLists = try c.decodeIfPresent([String: [String]].self, forKey: .accessLists) ?? [:]
    }
}

/// A price list for one fee token on one chain: `price` per unit of the resource per started minute.
package struct EnvironmentFee: Sendable, Hashable, Codable {
    package var feeToken: String
    package var prices: [Price]

    package struct Price: Sendable, Hashable, Codable {
        package var id: String
        package var price: Double

        package init(id: String, price: Double) {
            self.id = id
            self.price = price
        }
    }

    package init(feeToken: String, prices: [Price]) {
        self.feeToken = feeToken
        self.prices = prices
    }
}

/// Jobs that run without payment, under limits of their own.
package struct FreeTier: Sendable, Hashable, Codable {
    /// Free jobs of the environment that may run at once across the fleet; 0: no cap of its own (the environment's
    /// `maxJobs` still applies).
    package var maxJobs: Int
    /// Longest run of a free job, in seconds; nil: the environment's `maxJobDuration`.
    package var maxJobDuration: Int?
    package var minJobDuration: Int
    /// Seconds results of free jobs are kept; nil: the environment's `storageExpiry`.
    package var storageExpiry: Int?
    /// The resources free jobs may use, with their limits; empty: cpu, ram and disk at the environment's limits
    /// (GPUs are then not free).
    package var resources: [ResourceLimit]
    package var access: AccessList

    package init(
        maxJobs: Int = 0, maxJobDuration: Int? = nil, minJobDuration: Int = 0, storageExpiry: Int? = nil,
        resources: [ResourceLimit] = [], access: AccessList = AccessList()
    ) {
        self.maxJobs = maxJobs
        self.maxJobDuration = maxJobDuration
        self.minJobDuration = minJobDuration
        self.storageExpiry = storageExpiry
        self.resources = resources
        self.access = access
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxJobs = try c.decodeIfPresent(Int.self, forKey: .maxJobs) ?? 0
        maxJobDuration = try c.decodeIfPresent(Int.self, forKey: .maxJobDuration)
        minJobDuration = try c.decodeIfPresent(Int.self, forKey: .minJobDuration) ?? 0
        storageExpiry = try c.decodeIfPresent(Int.self, forKey: .storageExpiry)
        resources = try c.decodeIfPresent([ResourceLimit].self, forKey: .resources) ?? []
        access = try c.decodeIfPresent(AccessList.self, forKey: .access) ?? AccessList()
    }
}

extension ComputeEnvironment {
    /// Every resource of the environment with its per-job limits: cpu, ram and disk from `cpus`, `memoryMiB` and
    /// `diskMiB` (a `resources` entry of the same id may set their `min`), then the listed extra resources (GPUs).
    /// `capacity` is the number of jobs that may run at once; the built-in resources' `total` is max × capacity.
    package func resourceCatalog(capacity: Int) -> [ComputeResource] {
        func listed(_ id: String) -> ComputeResource? { resources.first { $0.id == id } }
        let jobs = Double(Swift.max(0, capacity))
        var catalog: [ComputeResource] = [
            ComputeResource(id: "cpu", type: .cpu, total: cpus * jobs, min: listed("cpu")?.min ?? 0, max: cpus),
            ComputeResource(
                id: "ram", type: .ram, total: Double(memoryMiB) / 1024 * jobs, min: listed("ram")?.min ?? 0,
                max: Double(memoryMiB) / 1024),
            ComputeResource(
                id: "disk", type: .disk, total: Double(diskMiB) / 1024 * jobs, min: listed("disk")?.min ?? 0,
                max: Double(diskMiB) / 1024),
        ]
        catalog += resources.filter { !Self.builtInResourceIDs.contains($0.id) }
        return catalog
    }

    /// The resources a tier's jobs may use, with the tier's limits: the paid tier is the catalog itself; the free tier
    /// keeps the resources its list names (all of cpu, ram and disk when the list is empty) with its overrides.
    package func tierCatalog(free: Bool, capacity: Int) -> [ComputeResource] {
        let catalog = resourceCatalog(capacity: capacity)
        guard free, let tier = self.free else { return catalog }
        if tier.resources.isEmpty { return catalog.filter { $0.type != .gpu } }
        return catalog.compactMap { resource in
            guard let limit = tier.resources.first(where: { $0.id == resource.id }) else { return nil }
            var limited = resource
            if let min = limit.min { limited.min = min }
            if let max = limit.max { limited.max = Swift.min(max, resource.max) }
            return limited
        }
    }

    static let builtInResourceIDs: Set<String> = ["cpu", "ram", "disk"]

    /// What is wrong with the environment's ocean-node fields, if anything: a listed resource besides cpu, ram and
    /// disk must be a GPU with a positive `max` no larger than its `total`, ids are unique, and a free tier may only
    /// name resources the environment has.
    package var configurationProblem: String? {
        var seen = Set<String>()
        for resource in resources {
            guard seen.insert(resource.id).inserted else { return "resource '\(resource.id)' is listed twice" }
            if Self.builtInResourceIDs.contains(resource.id) {
                guard resource.type.rawValue == resource.id else {
                    return "resource '\(resource.id)' must have type '\(resource.id)'"
                }
                continue
            }
            guard resource.type == .gpu else {
                return "resource '\(resource.id)': only GPUs may be listed besides cpu, ram and disk"
            }
            guard resource.max > 0, resource.max <= resource.total, resource.min <= resource.max else {
                return "resource '\(resource.id)' needs 0 <= min <= max <= total and max > 0"
            }
        }
        let ids = Set(resourceCatalog(capacity: 1).map(\.id))
        for limit in free?.resources ?? [] where !ids.contains(limit.id) {
            return "free.resources names '\(limit.id)', which the environment does not have"
        }
        if minJobDuration > maxJobDuration { return "minJobDuration is larger than maxJobDuration" }
        return nil
    }

    /// GPUs a workflow asks for: the amounts of its requested resources that are GPUs of this environment.
    package func gpuCount(of workflow: Workflow) -> Int {
        let gpuIDs = Set(resources.filter { $0.type == .gpu }.map(\.id))
        let amount = (workflow.stage?.compute?.resources ?? []).filter { gpuIDs.contains($0.id) }.map(\.amount)
            .reduce(0, +)
        return Int(amount.rounded(.up))
    }
}

/// ocean-node's resource admission for one job, as a pure function (its `checkAndFillMissingResources`): every
/// resource of the tier gets an amount — the requested one raised to the resource's `min`; when not requested, a
/// GPU's `min` and cpu, ram or disk's `max` — and a request above `max` is refused with ocean-node's message. A request for a resource the tier does
/// not have is refused too (ocean-node drops it silently; a job that asked for a GPU must not run without one).
package enum ResourcePlan {
    package static func fill(
        _ requests: [Workflow.ResourceRequest], environment: ComputeEnvironment, free: Bool
    ) throws(SubmissionError) -> [Workflow.ResourceRequest] {
        if free, environment.free == nil {
            throw SubmissionError(code: "no_free_tier", message: "This env does not support free jobs")
        }
        let catalog = environment.tierCatalog(free: free, capacity: 1)
        for request in requests where !catalog.contains(where: { $0.id == request.id }) {
            throw SubmissionError(
                code: "unknown_resource",
                message: free
                    ? "No such free resource \(request.id.prefix(64))" : "No such resource \(request.id.prefix(64))")
        }
        var filled: [Workflow.ResourceRequest] = []
        for resource in catalog {
            // Not requested: a GPU gets its minimum (none, usually), as in ocean-node; cpu, ram and disk get the
            // tier's maximum, what a c2d job runs with when it asks nothing (ocean-node would give the minimum, and
            // an amount of 0 would mean "unlimited" to an executor).
            let unrequested = resource.type == .gpu ? resource.min : resource.max
            var amount = requests.first { $0.id == resource.id }?.amount ?? unrequested
            guard amount.isFinite, amount >= 0 else {
                throw SubmissionError(
                    code: "invalid_resource", message: "resource '\(resource.id)' needs a non-negative amount")
            }
            amount = Swift.max(amount, resource.min)
            guard amount <= resource.max else {
                throw SubmissionError(
                    code: "resources_exceed_limit",
                    message: "Not enough \(resource.id) resources. Requested \(Self.number(amount)), but max is "
                        + Self.number(resource.max))
            }
            filled.append(Workflow.ResourceRequest(id: resource.id, amount: amount))
        }
        return filled
    }

    /// Numbers as JavaScript prints them (`2`, not `2.0`), so messages read like ocean-node's.
    package static func number(_ value: Double) -> String {
        if value.rounded() == value, Swift.abs(value) < 1e15 { return String(Int(value)) }
        return String(value)
    }
}
