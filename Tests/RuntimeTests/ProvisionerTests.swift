import AsyncHTTPClient
import Domain
import Foundation
import Runtime
import Testing

@Suite("Provisioner")
struct ProvisionerTests {
    @Test("files above the size cap are refused, from a URL and from the data directory")
    func sizeCap() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-provisioner-\(UUID().uuidString)")
        let data = base.appendingPathComponent("data-dir")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        try Data(repeating: 0x61, count: 4096).write(to: data.appendingPathComponent("big.bin"))
        let server = try await LocalHTTPServer(root: data)
        defer { server.stop() }
        let configuration = ProvisionerConfiguration(dataDirectory: data, maxFileBytes: 1000)
        let client = Provisioner.makeHTTPClient(configuration: configuration)
        let provisioner = Provisioner(configuration: configuration, httpClient: client)

        for input in [
            Workflow.Input(id: "did:op:u", url: [server.url("big.bin")]),
            Workflow.Input(id: "did:op:p", path: ["big.bin"]),
        ] {
            let workspace = JobWorkspace(data: base.appendingPathComponent("ws-\(input.id.suffix(1))/data"))
            try workspace.createLayoutBlocking()
            let workflow = RuntimeFixture.workflow(rawcode: "print(1)", inputs: [input])
            let error = await #expect(throws: ProvisioningError.self) {
                try await provisioner.provision(workflow, into: workspace)
            }
            #expect(error?.status == .dataProvisioningFailed)
            #expect(error?.reason.contains("limit") == true, "\(error?.reason ?? "")")
            // Nothing half-downloaded is left in the inputs.
            let leftovers = FileManager.default.subpaths(atPath: workspace.inputs.path) ?? []
            #expect(leftovers.allSatisfy { !$0.hasSuffix("/0") && !$0.contains("partial") }, "\(leftovers)")
        }
        try await client.shutdown()
    }
}
