import AsyncHTTPClient
import Domain
import Foundation
import Signatures
import Testing

@testable import Runtime

/// `remote` sources: resolved through the DDO and the Provider's endpoints like pod-configuration, each file
/// downloaded with a request signed by the operator's key.
@Suite("Remote inputs")
struct RemoteInputTests {
    static let operatorKey = [UInt8](repeating: 0x11, count: 32)

    @Test("a remote input is fetched file by file with signed Provider downloads; the DDO is kept")
    func remoteInput() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-remote-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        let server = try await LocalHTTPServer(root: base)
        defer { server.stop() }
        var configuration = ProvisionerConfiguration(allowPrivateNetworks: true)
        configuration.operatorPrivateKey = Self.operatorKey
        let client = Provisioner.makeHTTPClient(configuration: configuration)
        defer { _ = client.shutdown() }
        let provisioner = Provisioner(configuration: configuration, httpClient: client)

        let did = "did:op:" + String(repeating: "ab", count: 32)
        let input = Workflow.Input(
            id: did, remote: .object(["txId": .string("0xfeed"), "serviceId": .string("svc1")]))
        var workflow = RuntimeFixture.workflow(rawcode: "print(1)", inputs: [input])
        workflow.stages[0].output = .object(["metadataUri": .string("http://127.0.0.1:\(server.port)")])
        let workspace = JobWorkspace(data: base.appendingPathComponent("ws/data"))
        try workspace.createLayoutBlocking()
        try await provisioner.provision(workflow, into: workspace)

        for index in 0..<2 {
            let file = workspace.inputFile(input, position: 0, file: index)
            #expect(try String(contentsOf: file, encoding: .utf8) == "file \(index)")
        }
        let ddo = workspace.ddos.appendingPathComponent(String(did.dropFirst("did:op:".count)))
        #expect(FileManager.default.fileExists(atPath: ddo.path))

        let operatorAddress = try Secp256k1.shared.address(privateKey: Self.operatorKey)
        let queries = try String(contentsOf: base.appendingPathComponent("downloads.log"), encoding: .utf8)
            .split(separator: "\n").map { URLComponents(string: "?" + $0)?.queryItems ?? [] }
        #expect(queries.count == 2)
        var nonces = Set<String>()
        for items in queries {
            func value(_ name: String) -> String? { items.first { $0.name == name }?.value }
            #expect(value("documentId") == did)
            #expect(value("transferTxId") == "0xfeed")
            #expect(value("serviceId") == "svc1")
            #expect(value("consumerAddress") == operatorAddress.description)
            let nonce = try #require(value("nonce"))
            nonces.insert(nonce)
            let signer = try OceanSignature.verify(
                message: did, nonce: nonce, signatureHex: try #require(value("signature")))
            #expect(signer == operatorAddress)
        }
        #expect(nonces.count == 2, "every download carries a fresh nonce")
    }

    @Test("without the operator's key a remote input fails provisioning with a reason, and so do bad remotes")
    func remoteInputWithoutKey() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-remote-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        let configuration = ProvisionerConfiguration(allowPrivateNetworks: true)
        let client = Provisioner.makeHTTPClient(configuration: configuration)
        defer { _ = client.shutdown() }
        let provisioner = Provisioner(configuration: configuration, httpClient: client)
        let input = Workflow.Input(
            id: "did:op:x",
            remote: .object([
                "txId": .string("0x1"), "serviceId": .string("svc1"),
                "serviceEndpoint": .string("http://127.0.0.1:9/provider"),
            ]))
        let workspace = JobWorkspace(data: base.appendingPathComponent("ws/data"))
        try workspace.createLayoutBlocking()
        let error = await #expect(throws: ProvisioningError.self) {
            try await provisioner.provision(
                RuntimeFixture.workflow(rawcode: "print(1)", inputs: [input]), into: workspace)
        }
        #expect(error?.status == .dataProvisioningFailed)
        #expect(error?.reason.contains("C2D_OPERATOR_PRIVATE_KEY") == true, "\(error?.reason ?? "")")

        let validator = WorkflowValidator()
        let environment = ComputeEnvironment(id: "e")
        for remote: JSONValue in [.object(["txId": .string("0x1")]), .string("x"), .object(["serviceId": .number(1)])] {
            let workflow = RuntimeFixture.workflow(
                rawcode: "print(1)", inputs: [Workflow.Input(id: "did:op:x", remote: remote)])
            #expect(
                throws: SubmissionError(
                    code: "invalid_remote", message: "input 0 'remote' needs 'txId' and 'serviceId' strings")
            ) {
                try validator.validate(workflow, environment: environment)
            }
        }
    }
}
