import AsyncHTTPClient
import Domain
import Foundation
import NIOSSL
import Synchronization
import TestSupport
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
        "special-purpose addresses and the IPv6 forms that lead to them are refused, public ones are not",
        arguments: [
            ("127.0.0.1", true), ("10.1.2.3", true), ("172.16.0.1", true), ("172.31.255.255", true),
            ("192.168.1.1", true), ("169.254.169.254", true), ("100.64.0.1", true), ("0.0.0.0", true),
            ("224.0.0.1", true), ("255.255.255.255", true), ("192.0.2.10", true), ("198.51.100.1", true),
            ("203.0.113.80", true), ("198.18.0.1", true), ("192.0.0.8", true), ("::1", true), ("::", true),
            ("fd00::1", true), ("fe80::1", true), ("fec0::1", true), ("ff02::1", true), ("2001:db8::1", true),
            ("::ffff:127.0.0.1", true), ("::ffff:169.254.169.254", true), ("::ffff:0:10.0.0.1", true),
            ("::127.0.0.1", true), ("64:ff9b::7f00:1", true), ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b:1::808:808", true), ("2002:7f00:1::1", true), ("2001::1", true), ("100::1", true),
            ("5f00::1", true), ("3fff::1", true),
            ("8.8.8.8", false), ("172.32.0.1", false), ("2606:4700::1111", false), ("::ffff:8.8.8.8", false),
            ("64:ff9b::808:808", false), ("2002:808:808::1", false),
        ])
    func ranges(address: String, blocked: Bool) throws {
        let parsed = try #require(IPAddress(address), "\(address)")
        let refusal = OutboundAddressPolicy().refusal(for: parsed)
        #expect((refusal != nil) == blocked, "\(address): \(refusal ?? "allowed")")
    }

    @Test("networks the operator allows are reachable, in their IPv4-mapped form too; nothing else is")
    func allowedNetworks() throws {
        let policy = OutboundAddressPolicy(
            allowedNetworks: try OutboundAddressPolicy.parseNetworks("10.1.2.0/24, 127.0.0.1,fd12::/16"))
        for (address, allowed) in [
            ("10.1.2.200", true), ("10.1.3.1", false), ("127.0.0.1", true), ("127.0.0.2", false),
            ("::ffff:10.1.2.3", true), ("fd12:3::1", true), ("fd13::1", false),
        ] {
            #expect((policy.refusal(for: IPAddress(address)!) == nil) == allowed, "\(address)")
        }
        #expect(OutboundAddressPolicy(allowsEverything: true).refusal(for: IPAddress("127.0.0.1")!) == nil)
        for bad in ["10.0.0.0/33", "example.org", "10.0.0/8", "::1/129"] {
            #expect(throws: (any Error).self, "\(bad)") { try OutboundAddressPolicy.parseNetworks(bad) }
        }
    }
}

/// Outbound requests connect to the address that was checked, on every hop, and TLS still verifies the name.
@Suite("Pinned outbound requests", .serialized)
struct PinnedRequestTests {
    /// A resolver whose answers change after the first: what a rebinding DNS server does.
    final class RebindingResolver: Sendable {
        let first: [String: String]
        let later: [String: String]
        let calls = Mutex([String]())

        init(first: [String: String], later: [String: String]) {
            self.first = first
            self.later = later
        }

        var resolver: HostResolver {
            HostResolver { host in
                let earlier = self.calls.withLock { calls in
                    defer { calls.append(host) }
                    return calls.contains(host)
                }
                guard let text = (earlier ? self.later : self.first)[host], let address = IPAddress(text) else {
                    throw CocoaError(.fileNoSuchFile)
                }
                return [address]
            }
        }
    }

    struct Servers {
        let base: URL
        let checked: LocalHTTPServer
        let rebound: LocalHTTPServer
        let port: Int
        let checkedRoot: URL
        let reboundRoot: URL

        /// The server the guard approves (127.0.0.1) and one on the same port at an address it refuses
        /// (127.0.0.2), each serving `data.txt` with its own content.
        static func start(tls: (certificate: URL, key: URL)? = nil, in base: URL) async throws -> Servers {
            let checkedRoot = base.appendingPathComponent("checked")
            let reboundRoot = base.appendingPathComponent("rebound")
            for (root, text) in [(checkedRoot, "checked"), (reboundRoot, "rebound")] {
                try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
                try Data(text.utf8).write(to: root.appendingPathComponent("data.txt"))
            }
            let checked = try await LocalHTTPServer(root: checkedRoot, tls: tls)
            let rebound = try await LocalHTTPServer(root: reboundRoot, host: "127.0.0.2", port: checked.port, tls: tls)
            return Servers(
                base: base, checked: checked, rebound: rebound, port: checked.port, checkedRoot: checkedRoot,
                reboundRoot: reboundRoot)
        }

        func stop() {
            checked.stop()
            rebound.stop()
        }
    }

    static let policy = ProvisionerConfiguration.withAllowedNetworks(["127.0.0.1/32"])

    /// Provisions one input from `url`; returns the file's text, or the failure reason.
    static func fetch(
        _ url: String, resolver: HostResolver, clientConfiguration: HTTPClient.Configuration? = nil, base: URL
    ) async throws -> Result<String, ProvisioningError> {
        let client = Provisioner.makeHTTPClient(configuration: policy)
        defer { _ = client.shutdown() }
        let provisioner = Provisioner(
            configuration: policy, httpClient: client, resolver: resolver, clientConfiguration: clientConfiguration)
        let workspace = JobWorkspace(data: base.appendingPathComponent("ws-\(UUID().uuidString)/data"))
        try workspace.createLayoutBlocking()
        let input = Workflow.Input(id: "did:op:pinned", url: [url])
        do {
            try await provisioner.provision(
                RuntimeFixture.workflow(rawcode: "print(1)", inputs: [input]), into: workspace)
        } catch {
            return .failure(error)
        }
        let file = workspace.inputFile(input, position: 0, file: 0)
        return .success(try String(contentsOf: file, encoding: .utf8))
    }

    static func temporaryDirectory() throws -> URL {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-pinned-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        return base
    }

    @Test("the host is resolved once and the download comes from the checked address, not a rebound one")
    func rebinding() async throws {
        let base = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let servers = try await Servers.start(in: base)
        defer { servers.stop() }
        let dns = RebindingResolver(first: ["data.pinned.test": "127.0.0.1"], later: ["data.pinned.test": "127.0.0.2"])
        let result = try await Self.fetch(
            "http://data.pinned.test:\(servers.port)/data.txt", resolver: dns.resolver, base: base)
        #expect(try result.get() == "checked")
        #expect(dns.calls.withLock { $0 } == ["data.pinned.test"])
        #expect(LocalHTTPServer.requests(in: servers.reboundRoot).isEmpty)
        // The rebound address itself is refused.
        let refused = try await Self.fetch(
            "http://data.pinned.test:\(servers.port)/data.txt", resolver: dns.resolver, base: base)
        guard case .failure(let error) = refused else { throw TestFailure("a rebound address was used") }
        #expect(error.reason.contains("resolves to 127.0.0.2, a non-public address (loopback)"), "\(error.reason)")
    }

    @Test("every redirect hop is resolved, checked and pinned, including IPv4-mapped and NAT64 literals")
    func redirectHops() async throws {
        let base = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let servers = try await Servers.start(in: base)
        defer { servers.stop() }
        let port = servers.port
        for target in [
            "http://inner.pinned.test:\(port)/data.txt", "http://[::ffff:127.0.0.2]:\(port)/data.txt",
            "http://[64:ff9b::7f00:2]:\(port)/data.txt", "http://2130706434:\(port)/data.txt",
        ] {
            let dns = RebindingResolver(
                first: ["data.pinned.test": "127.0.0.1", "inner.pinned.test": "127.0.0.2", "2130706434": "127.0.0.2"],
                later: [:])
            let query = target.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            let result = try await Self.fetch(
                "http://data.pinned.test:\(port)/goto?url=\(query)", resolver: dns.resolver, base: base)
            guard case .failure(let error) = result else { throw TestFailure("\(target) was fetched") }
            #expect(error.reason.contains("non-public address"), "\(target): \(error.reason)")
        }
        #expect(LocalHTTPServer.requests(in: servers.reboundRoot).isEmpty, "nothing reached the refused server")
        let dns = RebindingResolver(
            first: ["data.pinned.test": "127.0.0.1", "next.pinned.test": "127.0.0.1"], later: [:])
        let allowed = try await Self.fetch(
            "http://data.pinned.test:\(port)/goto?url=http%3A%2F%2Fnext.pinned.test%3A\(port)%2Fdata.txt",
            resolver: dns.resolver, base: base)
        #expect(try allowed.get() == "checked")
    }

    @Test("over TLS the pinned connection still verifies the certificate against the host name")
    func tlsVerifiesTheName() async throws {
        let base = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let pki = try TestPKI(in: base, names: ["data.pinned.test"])
        let servers = try await Servers.start(tls: (pki.certificate, pki.key), in: base)
        defer { servers.stop() }
        var clientConfiguration = Provisioner.clientConfiguration(Self.policy)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(pki.authority.path)
        clientConfiguration.tlsConfiguration = tls
        let dns = RebindingResolver(
            first: ["data.pinned.test": "127.0.0.1", "other.pinned.test": "127.0.0.1"],
            later: ["data.pinned.test": "127.0.0.1"])
        let good = try await Self.fetch(
            "https://data.pinned.test:\(servers.port)/data.txt", resolver: dns.resolver,
            clientConfiguration: clientConfiguration, base: base)
        #expect(try good.get() == "checked")
        let wrongName = try await Self.fetch(
            "https://other.pinned.test:\(servers.port)/data.txt", resolver: dns.resolver,
            clientConfiguration: clientConfiguration, base: base)
        guard case .failure(let error) = wrongName else { throw TestFailure("a certificate for another name passed") }
        #expect(error.status == .dataProvisioningFailed)
        #expect(LocalHTTPServer.requests(in: servers.checkedRoot) == ["/data.txt"], "the mismatch sent no request")
    }
}

/// A certificate authority and one server certificate for `names`, made with the openssl command.
struct TestPKI {
    let authority: URL
    let certificate: URL
    let key: URL

    init(in directory: URL, names: [String]) throws {
        authority = directory.appendingPathComponent("ca.pem")
        certificate = directory.appendingPathComponent("server.pem")
        key = directory.appendingPathComponent("server.key")
        let authorityKey = directory.appendingPathComponent("ca.key")
        let request = directory.appendingPathComponent("server.csr")
        let extensions = directory.appendingPathComponent("server.ext")
        try Data("subjectAltName=\(names.map { "DNS:\($0)" }.joined(separator: ","))\n".utf8).write(to: extensions)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try Self.openssl(
            ["req", "-x509"] + ec + [
                "-keyout", authorityKey.path, "-out", authority.path, "-days", "1", "-subj", "/CN=c2d test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            ])
        try Self.openssl(["req"] + ec + ["-keyout", key.path, "-out", request.path, "-subj", "/CN=\(names[0])"])
        try Self.openssl([
            "x509", "-req", "-in", request.path, "-CA", authority.path, "-CAkey", authorityKey.path,
            "-CAcreateserial", "-out", certificate.path, "-days", "1", "-extfile", extensions.path,
        ])
    }

    static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestFailure("openssl \(arguments.prefix(2).joined(separator: " ")) failed")
        }
    }
}

extension ProvisionerConfiguration {
    /// A configuration that refuses non-public addresses except these networks.
    static func withAllowedNetworks(_ networks: [String]) -> ProvisionerConfiguration {
        var configuration = ProvisionerConfiguration(connectTimeout: .seconds(2), downloadTimeout: .seconds(20))
        configuration.allowedNetworks = networks.compactMap(IPNetwork.init)
        return configuration
    }
}
