import Domain
import Foundation
import Testing

/// ocean-node's environment model in c2d's environments file, and its resource admission (`ResourcePlan`).
@Suite("ocean-node environments and resources")
struct OceanNodeEnvironmentTests {
    static func decode(_ json: String) throws -> ComputeEnvironment {
        try JSONDecoder().decode(ComputeEnvironment.self, from: Data(json.utf8))
    }

    static let gpuEnvironment = """
        {"id": "gpu", "cpus": 4, "memoryMiB": 8192, "diskMiB": 20480, "maxJobs": 2, "minJobDuration": 60,
         "resources": [{"id": "cpu", "min": 1}, {"id": "gpu0", "type": "gpu", "total": 2, "max": 1,
                        "description": "NVIDIA A100"}],
         "gpuNodeSelector": {"nvidia.com/gpu.present": "true"},
         "fees": {"1": [{"feeToken": "0x967da4048cD07aB37855c090aAF366e4ce1b9F48",
                         "prices": [{"id": "cpu", "price": 1}, {"id": "gpu0", "price": 3}]}]},
         "access": {"addresses": ["0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"], "accessLists": null},
         "free": {"maxJobs": 1, "maxJobDuration": 60, "resources": [{"id": "cpu", "max": 1}, {"id": "ram", "max": 1}]}}
        """

    @Test("an environments file without the new fields loads as before")
    func backwardCompatible() throws {
        let environment = try Self.decode(#"{"id": "old", "cpus": 2, "memoryMiB": 2048, "maxJobs": 3}"#)
        #expect(environment.cpus == 2 && environment.memoryMiB == 2048 && environment.maxJobs == 3)
        #expect(environment.resources.isEmpty && environment.fees.isEmpty && environment.free == nil)
        #expect(environment.access.isOpen && environment.gpuNodeSelector.isEmpty && environment.minJobDuration == 0)
        #expect(environment.configurationProblem == nil)
        let catalog = environment.resourceCatalog(capacity: 3)
        #expect(catalog.map(\.id) == ["cpu", "ram", "disk"])
        #expect(catalog[0].total == 6 && catalog[0].max == 2 && catalog[1].max == 2 && catalog[2].max == 1)
    }

    @Test("resources, fees, access lists, a free tier and a GPU node selector decode")
    func newFields() throws {
        let environment = try Self.decode(Self.gpuEnvironment)
        #expect(environment.configurationProblem == nil)
        #expect(environment.minJobDuration == 60)
        #expect(environment.fees["1"]?.first?.prices.count == 2)
        #expect(environment.access.addresses.count == 1 && environment.access.accessLists.isEmpty)
        #expect(environment.free?.maxJobs == 1 && environment.free?.maxJobDuration == 60)
        #expect(environment.gpuNodeSelector == ["nvidia.com/gpu.present": "true"])
        let catalog = environment.resourceCatalog(capacity: 2)
        #expect(catalog.map(\.id) == ["cpu", "ram", "disk", "gpu0"])
        #expect(catalog[0].min == 1 && catalog[0].max == 4 && catalog[0].total == 8)
        #expect(catalog[3].type == .gpu && catalog[3].total == 2 && catalog[3].max == 1)
        // The free tier keeps only what it names, with its limits.
        let free = environment.tierCatalog(free: true, capacity: 1)
        #expect(free.map(\.id) == ["cpu", "ram"] && free[0].max == 1 && free[1].max == 1)
    }

    @Test("ocean-node's cpu, ram and disk maxima set c2d's limits when those are not given")
    func oceanNodeTerms() throws {
        let environment = try Self.decode(
            #"{"id": "on", "resources": [{"id": "cpu", "max": 3}, {"id": "ram", "max": 2}, {"id": "disk", "max": 4}]}"#)
        #expect(environment.cpus == 3 && environment.memoryMiB == 2048 && environment.diskMiB == 4096)
    }

    @Test(
        "configuration problems are named",
        arguments: [
            (#"{"id": "x", "resources": [{"id": "nic0", "type": "cpu", "max": 1}]}"#, "only GPUs"),
            (#"{"id": "x", "resources": [{"id": "gpu0", "type": "gpu", "total": 1, "max": 2}]}"#, "max <= total"),
            (
                #"{"id": "x", "resources": [{"id": "gpu0", "type": "gpu", "max": 1}, {"id": "gpu0", "type": "gpu", "max": 1}]}"#,
                "twice"
            ),
            (#"{"id": "x", "free": {"resources": [{"id": "gpu9"}]}}"#, "does not have"),
            (#"{"id": "x", "minJobDuration": 100, "maxJobDuration": 60}"#, "minJobDuration"),
        ])
    func problems(json: String, expected: String) throws {
        let problem = try Self.decode(json).configurationProblem
        #expect(problem?.contains(expected) == true, "\(problem ?? "no problem")")
    }

    @Test("a GPU resource without a type is refused when decoding")
    func gpuNeedsType() {
        #expect(throws: DecodingError.self) {
            try Self.decode(#"{"id": "x", "resources": [{"id": "gpu0", "max": 1}]}"#)
        }
    }

    // MARK: Resource admission

    static func fill(_ requests: [(String, Double)], free: Bool = false) throws(SubmissionError)
        -> [String: Double]
    {
        let environment = try! Self.decode(Self.gpuEnvironment)
        let filled = try ResourcePlan.fill(
            requests.map { Workflow.ResourceRequest(id: $0.0, amount: $0.1) }, environment: environment, free: free)
        return Dictionary(uniqueKeysWithValues: filled.map { ($0.id, $0.amount) })
    }

    @Test("unrequested cpu, ram and disk get the tier's maximum, a GPU its minimum; small requests rise to the minimum")
    func fillsMissing() throws {
        #expect(try Self.fill([]) == ["cpu": 4, "ram": 8, "disk": 20, "gpu0": 0])
        #expect(try Self.fill([("cpu", 0.5), ("gpu0", 1)]) == ["cpu": 1, "ram": 8, "disk": 20, "gpu0": 1])
        #expect(try Self.fill([], free: true) == ["cpu": 1, "ram": 1])
    }

    @Test(
        "refusals carry ocean-node's messages",
        arguments: [
            ([("cpu", 5.0)], false, "Not enough cpu resources. Requested 5, but max is 4"),
            ([("gpu0", 2.0)], false, "Not enough gpu0 resources. Requested 2, but max is 1"),
            ([("ram", 2.0)], true, "Not enough ram resources. Requested 2, but max is 1"),
            ([("gpu0", 1.0)], true, "No such free resource gpu0"),
            ([("tpu", 1.0)], false, "No such resource tpu"),
        ])
    func refusals(requests: [(String, Double)], free: Bool, message: String) {
        do {
            _ = try Self.fill(requests, free: free)
            Issue.record("accepted \(requests)")
        } catch {
            #expect(error.message == message)
        }
    }

    @Test("an environment without a free tier refuses free jobs")
    func noFreeTier() throws {
        let environment = try Self.decode(#"{"id": "paid"}"#)
        #expect(throws: SubmissionError(code: "no_free_tier", message: "This env does not support free jobs")) {
            try ResourcePlan.fill([], environment: environment, free: true)
        }
    }

    @Test("GPUs a workflow asks for are counted by the environment's GPU ids")
    func gpuCount() throws {
        let environment = try Self.decode(Self.gpuEnvironment)
        func workflow(_ resources: [Workflow.ResourceRequest]) -> Workflow {
            Workflow(stages: [
                Workflow.Stage(
                    input: [], algorithm: Workflow.Algorithm(rawcode: "x"),
                    compute: Workflow.Compute(resources: resources))
            ])
        }
        #expect(environment.gpuCount(of: workflow([.init(id: "cpu", amount: 2)])) == 0)
        #expect(environment.gpuCount(of: workflow([.init(id: "gpu0", amount: 1)])) == 1)
    }

    @Test("the native validator accepts the environment's GPUs within their maximum")
    func validatorKnowsGPUs() throws {
        let environment = try Self.decode(Self.gpuEnvironment)
        func workflow(_ amount: Double) -> Workflow {
            Workflow(stages: [
                Workflow.Stage(
                    input: [],
                    algorithm: Workflow.Algorithm(rawcode: "x", container: .init(entrypoint: "python3 $ALGO")),
                    compute: Workflow.Compute(resources: [.init(id: "gpu0", amount: amount)]))
            ])
        }
        try WorkflowValidator().validate(workflow(1), environment: environment)
        #expect(throws: SubmissionError.self) {
            try WorkflowValidator().validate(workflow(2), environment: environment)
        }
    }
}
