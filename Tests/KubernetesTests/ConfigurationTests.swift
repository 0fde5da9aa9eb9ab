import Foundation
import Testing

@testable import Kubernetes

@Suite struct ConfigurationTests {
    static let kubeconfig = """
        apiVersion: v1
        kind: Config
        current-context: kind
        clusters:
        - name: kind-cluster
          cluster:
            server: https://127.0.0.1:6443/
            certificate-authority-data: \(Data("CA PEM".utf8).base64EncodedString())
        - name: emulator
          cluster:
            server: http://127.0.0.1:8001
            insecure-skip-tls-verify: true
        contexts:
        - name: kind
          context:
            cluster: kind-cluster
            user: kind-admin
            namespace: c2d
        - name: emu
          context:
            cluster: emulator
            user: token-user
        users:
        - name: kind-admin
          user:
            client-certificate-data: \(Data("CERT PEM".utf8).base64EncodedString())
            client-key-data: \(Data("KEY PEM".utf8).base64EncodedString())
        - name: token-user
          user:
            token: s3cret
        """

    @Test func currentContextWithInlineData() throws {
        let configuration = try KubernetesConfiguration.kubeconfig(yaml: Self.kubeconfig, directory: "/nowhere")
        #expect(configuration.server == "https://127.0.0.1:6443")
        #expect(configuration.namespace == "c2d")
        #expect(configuration.certificateAuthorityPEM == "CA PEM")
        #expect(
            configuration.authentication == .clientCertificate(certificatePEM: "CERT PEM", privateKeyPEM: "KEY PEM"))
        #expect(!configuration.insecureSkipTLSVerify)
        #expect(configuration.queriesPerSecond == 50)
        #expect(configuration.burst == 100)
        #expect(configuration.requestTimeout == .seconds(10))
        #expect(configuration.maxRetries == 5)
    }

    @Test func namedContextWithToken() throws {
        let configuration = try KubernetesConfiguration.kubeconfig(
            yaml: Self.kubeconfig, directory: "/nowhere", context: "emu")
        #expect(configuration.server == "http://127.0.0.1:8001")
        #expect(configuration.namespace == "default")
        #expect(configuration.authentication == .bearerToken("s3cret"))
        #expect(configuration.insecureSkipTLSVerify)
        #expect(configuration.certificateAuthorityPEM == nil)
    }

    @Test func missingContextIsNamed() {
        let error = #expect(throws: KubernetesError.self) {
            try KubernetesConfiguration.kubeconfig(yaml: Self.kubeconfig, directory: "/", context: "prod")
        }
        #expect(error?.code == .configuration)
        #expect(error?.message.contains("context \"prod\" not found") == true)
    }

    @Test func missingUserIsNamed() {
        let yaml = """
            current-context: a
            clusters: [{name: c, cluster: {server: "https://k"}}]
            contexts: [{name: a, context: {cluster: c, user: ghost}}]
            """
        let error = #expect(throws: KubernetesError.self) {
            try KubernetesConfiguration.kubeconfig(yaml: yaml, directory: "/")
        }
        #expect(error?.message.contains("user \"ghost\"") == true)
    }

    @Test func execPluginsAreRejected() {
        let yaml = """
            current-context: a
            clusters: [{name: c, cluster: {server: "https://k"}}]
            contexts: [{name: a, context: {cluster: c, user: u}}]
            users: [{name: u, user: {exec: {command: gke-gcloud-auth-plugin}}}]
            """
        let error = #expect(throws: KubernetesError.self) {
            try KubernetesConfiguration.kubeconfig(yaml: yaml, directory: "/")
        }
        #expect(error?.message.contains("exec plugin") == true)
    }

    @Test func filePathsResolveAgainstTheKubeconfigDirectory() throws {
        try withTemporaryDirectory { directory in
            try "CA FROM FILE".write(toFile: "\(directory)/ca.crt", atomically: true, encoding: .utf8)
            let yaml = """
                current-context: files
                clusters:
                - name: c
                  cluster: {server: "https://api.example:443", certificate-authority: ca.crt}
                contexts:
                - name: files
                  context: {cluster: c, user: u, namespace: jobs}
                users:
                - name: u
                  user: {tokenFile: tokens/token}
                """
            try yaml.write(toFile: "\(directory)/config", atomically: true, encoding: .utf8)
            let configuration = try KubernetesConfiguration.kubeconfig(path: "\(directory)/config")
            #expect(configuration.certificateAuthorityPEM == "CA FROM FILE")
            #expect(configuration.authentication == .bearerTokenFile(path: "\(directory)/tokens/token"))
            #expect(configuration.namespace == "jobs")

            let viaEnvironment = try KubernetesConfiguration.fromEnvironment(
                environment: ["KUBECONFIG": "/does/not/exist:\(directory)/config"])
            #expect(viaEnvironment.server == "https://api.example:443")
        }
    }

    @Test func missingFileIsNamed() {
        let error = #expect(throws: KubernetesError.self) {
            try KubernetesConfiguration.kubeconfig(path: "/does/not/exist/config")
        }
        #expect(error?.message.contains("/does/not/exist/config") == true)
    }

    @Test func inClusterReadsTheServiceAccountDirectory() throws {
        try withTemporaryDirectory { directory in
            try "token-1".write(toFile: "\(directory)/token", atomically: true, encoding: .utf8)
            try "CLUSTER CA".write(toFile: "\(directory)/ca.crt", atomically: true, encoding: .utf8)
            try "c2d-jobs\n".write(toFile: "\(directory)/namespace", atomically: true, encoding: .utf8)
            let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
            let configuration = try KubernetesConfiguration.inCluster(directory: directory, environment: environment)
            #expect(configuration.server == "https://10.96.0.1:443")
            #expect(configuration.namespace == "c2d-jobs")
            #expect(configuration.certificateAuthorityPEM == "CLUSTER CA")
            #expect(configuration.authentication == .bearerTokenFile(path: "\(directory)/token"))

            let fallback = try KubernetesConfiguration.fromEnvironment(
                environment: environment.merging(["HOME": directory]) { $1 }, inClusterDirectory: directory)
            #expect(fallback.server == "https://10.96.0.1:443")

            let ipv6 = try KubernetesConfiguration.inCluster(
                directory: directory, environment: ["KUBERNETES_SERVICE_HOST": "fd00::1"])
            #expect(ipv6.server == "https://[fd00::1]:443")
        }
    }

    @Test func inClusterNeedsTheServiceHost() {
        let error = #expect(throws: KubernetesError.self) {
            try KubernetesConfiguration.inCluster(directory: "/nowhere", environment: [:])
        }
        #expect(error?.message.contains("KUBERNETES_SERVICE_HOST") == true)
    }

    @Test func clientRejectsBadSettingsWithoutTouchingTheNetwork() {
        let badURL = #expect(throws: KubernetesError.self) {
            _ = try KubernetesClient(configuration: KubernetesConfiguration(server: "ftp://cluster"))
        }
        #expect(badURL?.code == .configuration)
        let badCA = #expect(throws: KubernetesError.self) {
            _ = try KubernetesClient(
                configuration: KubernetesConfiguration(server: "https://cluster", certificateAuthorityPEM: "nope"))
        }
        #expect(badCA?.code == .configuration)
    }
}

func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("c2d-kube-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try body(directory)
}
