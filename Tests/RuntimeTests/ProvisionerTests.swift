import AsyncHTTPClient
import Domain
import Foundation
import Testing

@testable import Runtime

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
        let configuration = ProvisionerConfiguration(
            dataDirectory: data, maxFileBytes: 1000, allowPrivateNetworks: true)
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

    @Test("a URL that resolves to the operator's own network is refused unless private networks are allowed")
    func privateAddressesRefused() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-provisioner-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        try Data("secret".utf8).write(to: base.appendingPathComponent("internal.txt"))
        let server = try await LocalHTTPServer(root: base)
        defer { server.stop() }
        let configuration = ProvisionerConfiguration()
        let client = Provisioner.makeHTTPClient(configuration: configuration)
        let provisioner = Provisioner(configuration: configuration, httpClient: client)
        for url in [server.url("internal.txt"), "http://localhost:1/x", "http://169.254.169.254/latest/meta-data/"] {
            let workspace = JobWorkspace(data: base.appendingPathComponent("ws-\(UUID().uuidString)/data"))
            try workspace.createLayoutBlocking()
            let workflow = RuntimeFixture.workflow(rawcode: "print(1)", inputs: [Workflow.Input(id: "d", url: [url])])
            let error = await #expect(throws: ProvisioningError.self) {
                try await provisioner.provision(workflow, into: workspace)
            }
            #expect(error?.status == .dataProvisioningFailed)
            #expect(error?.reason.contains("non-public address") == true, "\(error?.reason ?? "")")
        }
        try await client.shutdown()
    }
}

@Suite("Address guard")
struct AddressGuardTests {
    @Test(
        "non-public addresses are blocked, public ones are not",
        arguments: [
            ("127.0.0.1", true), ("10.1.2.3", true), ("172.16.0.1", true), ("172.31.255.255", true),
            ("192.168.1.1", true), ("169.254.169.254", true), ("100.64.0.1", true), ("0.0.0.0", true),
            ("224.0.0.1", true), ("::1", true), ("::", true), ("fd00::1", true), ("fe80::1", true),
            ("::ffff:127.0.0.1", true), ("8.8.8.8", false), ("172.32.0.1", false), ("2606:4700::1111", false),
        ])
    func ranges(address: String, blocked: Bool) throws {
        let resolved = try #require(try AddressGuard.resolve(address).first)
        #expect(AddressGuard.isBlocked(resolved) == blocked, "\(address)")
    }
}
