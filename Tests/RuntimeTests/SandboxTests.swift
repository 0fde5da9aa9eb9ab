import Domain
import Foundation
import Runtime
import Testing

@Suite("Sandbox")
struct SandboxTests {
    @Test("bubblewrap works on this machine")
    func selfCheck() async throws {
        try await Sandbox().selfCheck()
    }

    @Test("a missing bwrap is reported as such")
    func selfCheckMissingTool() async {
        let sandbox = Sandbox(configuration: SandboxConfiguration(bwrapPath: "/nonexistent/bwrap"))
        await #expect(throws: SandboxError.self) { try await sandbox.selfCheck() }
    }

    @Test("the command line binds system directories and the workspace, never the host root")
    func arguments() {
        let workspace = JobWorkspace(data: URL(fileURLWithPath: "/w/j-1/data"))
        let specification = SandboxSpecification(
            workspace: workspace, entrypoint: "python3 $ALGO", inputDIDs: ["abc"], transformationDID: "alg",
            timeLimitSeconds: 5, memoryMiB: 512, diskMiB: 100)
        let arguments = Sandbox().arguments(for: specification, argv: ["python3", Sandbox.algorithmPath])
        let joined = arguments.joined(separator: " ")
        #expect(joined.hasPrefix("--unshare-all --die-with-parent --new-session"))
        #expect(!arguments.contains("--share-net"))
        #expect(!joined.contains("--bind / /") && !joined.contains("--ro-bind / /"))
        #expect(!joined.contains("/etc /etc"))
        #expect(joined.contains("--ro-bind /usr /usr"))
        #expect(joined.contains("--ro-bind /w/j-1/data/inputs /data/inputs"))
        #expect(joined.contains("--ro-bind /w/j-1/data/transformations /data/transformations"))
        #expect(joined.contains("--bind /w/j-1/data/outputs /data/outputs"))
        #expect(joined.contains("--bind /w/j-1/data/logs /data/logs"))
        #expect(!joined.contains("adminlogs"))
        #expect(joined.contains("--setenv DIDS [\"abc\"]"))
        #expect(joined.contains("--as=536870912"))
        #expect(joined.contains("--fsize=104857600"))
        #expect(joined.hasSuffix("-- python3 /data/transformations/algorithm"))

        var networked = specification
        networked.allowNetwork = true
        #expect(Sandbox().arguments(for: networked, argv: ["true"]).contains("--share-net"))
    }

    @Test("time limit is the smaller of compute.maxtime and maxJobDuration")
    func timeLimit() {
        let workflow = Workflow(stages: [
            Workflow.Stage(
                input: [Workflow.Input(id: "did:op:abc", path: ["x"])],
                algorithm: Workflow.Algorithm(rawcode: "x", container: Workflow.Container(entrypoint: "python3 $ALGO")),
                compute: Workflow.Compute(maxtime: 120))
        ])
        let job = Job(id: JobID(), environment: "e", owner: "o", workflow: workflow)
        let workspace = JobWorkspace(data: URL(fileURLWithPath: "/w/data"))
        let short = SandboxSpecification(
            job: job, environment: ComputeEnvironment(id: "e", maxJobDuration: 60), workspace: workspace)
        #expect(short.timeLimitSeconds == 60)
        #expect(short.inputDIDs == ["abc"])
        let long = SandboxSpecification(
            job: job, environment: ComputeEnvironment(id: "e", maxJobDuration: 600), workspace: workspace)
        #expect(long.timeLimitSeconds == 120)
    }
}

@Suite("Entrypoint splitting")
struct CommandLineSplitterTests {
    let variables = ["ALGO": "/data/transformations/algorithm"]

    @Test(
        "splits like a shell for simple quoting",
        arguments: [
            ("python3 $ALGO", ["python3", "/data/transformations/algorithm"]),
            ("node ${ALGO} --x=1", ["node", "/data/transformations/algorithm", "--x=1"]),
            ("  sh  -c 'echo $ALGO; ls'  ", ["sh", "-c", "echo $ALGO; ls"]),
            (#"python3 "$ALGO" "two words" a\ b"#, ["python3", "/data/transformations/algorithm", "two words", "a b"]),
            (#"echo "say \"hi\"" $HOME ''"#, ["echo", #"say "hi""#, "$HOME", ""]),
        ])
    func split(line: String, expected: [String]) throws {
        #expect(try CommandLineSplitter.split(line, variables: variables) == expected)
    }

    @Test("unbalanced quotes are refused", arguments: ["python3 'x", #"python3 "x"#, "python3 x\\"])
    func unbalanced(line: String) {
        #expect(throws: CommandLineSplitter.SplitError.self) { try CommandLineSplitter.split(line) }
    }
}
