import Domain
import Foundation
import Testing

@Suite("Workflow validation")
struct WorkflowValidatorTests {
    static let environment = ComputeEnvironment(id: "ocean-compute", maxJobDuration: 600)

    static func workflow(
        input: [Workflow.Input] = [Workflow.Input(id: "did:op:abc", url: ["https://example.org/data.csv"])],
        algorithm: Workflow.Algorithm = Workflow.Algorithm(
            rawcode: "print(1)", container: Workflow.Container(entrypoint: "python3 $ALGO")),
        maxtime: Int? = nil
    ) -> Workflow {
        Workflow(stages: [
            Workflow.Stage(input: input, algorithm: algorithm, compute: maxtime.map { Workflow.Compute(maxtime: $0) })
        ])
    }

    func code(_ workflow: Workflow, environment: ComputeEnvironment = environment) -> String? {
        do {
            try WorkflowValidator().validate(workflow, environment: environment)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func acceptsAValidWorkflow() {
        #expect(code(Self.workflow()) == nil)
        #expect(code(Self.workflow(input: [Workflow.Input(id: "d1", path: ["sets/iris.csv"])])) == nil)
    }

    @Test(
        "rejections carry a code",
        arguments: [
            (Workflow(stages: []), "missing_stages"),
            (workflow(input: [Workflow.Input(id: "x", url: ["ftp://example.org/f"])]), "invalid_input_url"),
            (workflow(input: [Workflow.Input(id: "x", url: ["file:///etc/passwd"])]), "invalid_input_url"),
            (workflow(input: [Workflow.Input(id: "x", path: ["../secret"])]), "input_path_outside_data_dir"),
            (workflow(input: [Workflow.Input(id: "x", path: ["/etc/passwd"])]), "input_path_outside_data_dir"),
            (workflow(input: [Workflow.Input(id: "x", path: ["a/../../b"])]), "input_path_outside_data_dir"),
            (workflow(input: [Workflow.Input(id: "x")]), "missing_input_source"),
            (workflow(input: [Workflow.Input(id: "../x", url: ["https://e.org/"])]), "invalid_input_id"),
            (
                workflow(input: [Workflow.Input(id: "x", url: ["https://e.org/"], checksum: ["abc"])]),
                "invalid_checksum"
            ),
            (
                workflow(algorithm: Workflow.Algorithm(container: .init(entrypoint: "x"))),
                "meta_oneof_url_rawcode_remote"
            ),
            (workflow(algorithm: Workflow.Algorithm(rawcode: "print(1)")), "missing_entrypoint"),
            (workflow(maxtime: 601), "duration_exceeds_limit"),
            (
                workflow(
                    algorithm: Workflow.Algorithm(
                        rawcode: "print(1)\u{0}", container: .init(entrypoint: "python3 $ALGO"))),
                "invalid_character"
            ),
        ])
    func rejects(workflow: Workflow, expected: String) {
        #expect(code(workflow) == expected)
    }

    @Test("a valid workflow's JSON decodes to the same workflow, so the store can write it as is")
    func validatedJSON() throws {
        let workflow = Self.workflow()
        let json = try #require(try WorkflowValidator().validatedJSON(workflow, environment: Self.environment))
        #expect(try JSONDecoder().decode(Workflow.self, from: Data(json.utf8)) == workflow)
    }

    @Test("text that only spells the escape \\u0000 is not a NUL character, and passes")
    func spelledEscapeIsNotNUL() throws {
        var workflow = Self.workflow()
        workflow.stages[0].algorithm.rawcode = #"print("\u0000")"#
        #expect(code(workflow) == nil)
    }

    @Test func rawCodeNeedsPermission() {
        var environment = Self.environment
        environment.allowRawAlgorithm = false
        #expect(code(Self.workflow(), environment: environment) == "no_raw_algo_allowed")
    }

    @Test("Ocean's url may be one string or a list")
    func decodesOceanShapes() throws {
        let json = """
            {"stages":[{"index":0,"input":[{"index":0,"id":"did:op:1","url":"https://e.org/a"}],
            "algorithm":{"id":"","rawcode":"print(1)","container":{"entrypoint":"python3 $ALGO","image":"python","tag":"3"}},
            "compute":{"Instances":1,"namespace":"ocean-compute","maxtime":60},"output":{}}]}
            """
        let workflow = try JSONDecoder().decode(Workflow.self, from: Data(json.utf8))
        #expect(workflow.stage?.input.first?.url == ["https://e.org/a"])
        #expect(workflow.stage?.algorithm.didOrRaw == "raw")
        #expect(workflow.inputDIDs == ["did:op:1"])
        #expect(WorkflowValidator.inputDirectoryName(workflow.stage!.input[0], position: 0) == "1")
    }
}
