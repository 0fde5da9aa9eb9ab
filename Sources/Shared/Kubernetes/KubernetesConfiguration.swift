import Foundation
import Yams

/// How to reach the Kubernetes API server and how the client behaves. A value; build it once at startup with
/// ``inCluster(directory:environment:)``, ``kubeconfig(path:context:)`` or ``fromEnvironment(environment:)``.
package struct KubernetesConfiguration: Sendable {
    /// How the client proves who it is.
    package enum Authentication: Sendable, Hashable {
        case none
        case bearerToken(String)
        /// A token read from a file and re-read whenever the file's modification time changes: projected
        /// service-account tokens are rotated in place by the kubelet.
        case bearerTokenFile(path: String)
        /// Mutual TLS with a PEM certificate (chain) and its PEM private key.
        case clientCertificate(certificatePEM: String, privateKeyPEM: String)
    }

    /// `https://host:port` (or `http://` for a loopback emulator), without a trailing path.
    package var server: String
    package var authentication: Authentication
    /// PEM of the CA(s) that signed the server certificate; nil uses the system trust store.
    package var certificateAuthorityPEM: String?
    /// Skips server certificate verification. For throwaway test clusters only.
    package var insecureSkipTLSVerify: Bool
    /// Namespace used when a call names none (default `default`).
    package var namespace: String
    /// Sustained client-side request rate (default 50/s: what a shared API server gives one controller-like
    /// client comfortably; at three writes per attempt about 16 launches a second). Zero or less disables the
    /// limit.
    package var queriesPerSecond: Double
    /// Requests allowed at once above the sustained rate (default 100).
    package var burst: Int
    /// Budget for one non-streaming request, response body included (default 10 s).
    package var requestTimeout: Duration
    /// Budget for establishing a connection, TLS included (default 5 s).
    package var connectTimeout: Duration
    /// A watch or followed log with no bytes for this long is abandoned (default 6 min). Watches ask the server to
    /// end them sooner (`timeoutSeconds`), so this only catches dead connections.
    package var streamIdleTimeout: Duration
    /// Retries after 429, and after 5xx or transport failures of reads (default 5).
    package var maxRetries: Int
    /// Largest response body accepted (default 256 MiB); page big lists with `limit`.
    package var maxResponseBytes: Int
    /// HTTP/1.1 connections to the API server (default 64). Watches and log follows each hold one for their whole
    /// life, and AsyncHTTPClient's default of 8 would queue a busy worker's requests behind them.
    package var maxConnections: Int = 64

    package init(
        server: String,
        authentication: Authentication = .none,
        certificateAuthorityPEM: String? = nil,
        insecureSkipTLSVerify: Bool = false,
        namespace: String = "default",
        queriesPerSecond: Double = 50,
        burst: Int = 100,
        requestTimeout: Duration = .seconds(10),
        connectTimeout: Duration = .seconds(5),
        streamIdleTimeout: Duration = .seconds(360),
        maxRetries: Int = 5,
        maxResponseBytes: Int = 256 << 20
    ) {
        self.server = server
        self.authentication = authentication
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.namespace = namespace
        self.queriesPerSecond = queriesPerSecond
        self.burst = burst
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.streamIdleTimeout = streamIdleTimeout
        self.maxRetries = maxRetries
        self.maxResponseBytes = maxResponseBytes
    }

    /// Where the kubelet mounts the pod's service-account credentials.
    package static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The pod's own identity: `token`, `ca.crt` and `namespace` from `directory`, the server from
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    package static func inCluster(
        directory: String = serviceAccountDirectory,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(KubernetesError) -> KubernetesConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw .configuration("in-cluster configuration: KUBERNETES_SERVICE_HOST is not set")
        }
        let port = environment["KUBERNETES_SERVICE_PORT"].flatMap { $0.isEmpty ? nil : $0 } ?? "443"
        let tokenPath = (directory as NSString).appendingPathComponent("token")
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw .configuration("in-cluster configuration: no readable service-account token at \(tokenPath)")
        }
        let caPath = (directory as NSString).appendingPathComponent("ca.crt")
        let ca = try readText(caPath, what: "in-cluster CA certificate")
        let namespacePath = (directory as NSString).appendingPathComponent("namespace")
        let namespace = (try? String(contentsOfFile: namespacePath, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let hostPart = host.contains(":") ? "[\(host)]" : host  // IPv6 service address
        return KubernetesConfiguration(
            server: "https://\(hostPart):\(port)",
            authentication: .bearerTokenFile(path: tokenPath),
            certificateAuthorityPEM: ca,
            namespace: namespace.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        )
    }

    /// Reads a kubeconfig file: the named `context`, or its `current-context`. Relative file references are resolved
    /// against the file's directory, as kubectl does. Exec credential plugins and auth providers are not supported.
    package static func kubeconfig(path: String, context: String? = nil) throws(KubernetesError)
        -> KubernetesConfiguration
    {
        let yaml = try readText(path, what: "kubeconfig")
        return try kubeconfig(
            yaml: yaml, directory: (path as NSString).deletingLastPathComponent, context: context, source: path)
    }

    /// Parses kubeconfig YAML; `directory` anchors relative file references.
    package static func kubeconfig(
        yaml: String, directory: String, context: String? = nil, source: String = "kubeconfig"
    ) throws(KubernetesError) -> KubernetesConfiguration {
        let file: KubeconfigFile
        do {
            file = try YAMLDecoder().decode(KubeconfigFile.self, from: yaml)
        } catch {
            throw .configuration("\(source): not a valid kubeconfig: \(error)")
        }
        guard let contextName = context ?? file.currentContext.flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw .configuration("\(source): no context given and current-context is not set")
        }
        guard let namedContext = file.contexts?.first(where: { $0.name == contextName }) else {
            throw .configuration("\(source): context \"\(contextName)\" not found")
        }
        guard let contextBody = namedContext.context else {
            throw .configuration("\(source): context \"\(contextName)\" has no context body")
        }
        guard let clusterName = contextBody.cluster else {
            throw .configuration("\(source): context \"\(contextName)\" names no cluster")
        }
        guard let cluster = file.clusters?.first(where: { $0.name == clusterName })?.cluster else {
            throw .configuration("\(source): cluster \"\(clusterName)\" (of context \"\(contextName)\") not found")
        }
        guard let server = cluster.server, !server.isEmpty else {
            throw .configuration("\(source): cluster \"\(clusterName)\" has no server")
        }

        func resolve(_ path: String) -> String {
            path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
        }
        func pem(data: String?, file: String?, field: String) throws(KubernetesError) -> String? {
            if let data, !data.isEmpty {
                guard let decoded = Data(base64Encoded: data, options: .ignoreUnknownCharacters) else {
                    throw .configuration("\(source): \(field)-data is not valid base64")
                }
                return String(decoding: decoded, as: UTF8.self)
            }
            if let file, !file.isEmpty { return try readText(resolve(file), what: field) }
            return nil
        }

        var authentication = Authentication.none
        if let userName = contextBody.user, !userName.isEmpty {
            guard let user = file.users?.first(where: { $0.name == userName })?.user else {
                throw .configuration("\(source): user \"\(userName)\" (of context \"\(contextName)\") not found")
            }
            if user.exec != nil || user.authProvider != nil {
                throw .configuration(
                    "\(source): user \"\(userName)\" uses an exec plugin or auth provider, which is not supported; "
                        + "use a token, tokenFile or client certificate")
            }
            let certificate = try pem(
                data: user.clientCertificateData, file: user.clientCertificate, field: "client-certificate")
            let key = try pem(data: user.clientKeyData, file: user.clientKey, field: "client-key")
            if let token = user.token, !token.isEmpty {
                authentication = .bearerToken(token)
            } else if let tokenFile = user.tokenFile, !tokenFile.isEmpty {
                authentication = .bearerTokenFile(path: resolve(tokenFile))
            } else if let certificate, let key {
                authentication = .clientCertificate(certificatePEM: certificate, privateKeyPEM: key)
            } else if certificate != nil || key != nil {
                throw .configuration(
                    "\(source): user \"\(userName)\" has a client certificate without a key, or a key without one")
            }
        }

        return KubernetesConfiguration(
            server: server.hasSuffix("/") ? String(server.dropLast()) : server,
            authentication: authentication,
            certificateAuthorityPEM: try pem(
                data: cluster.certificateAuthorityData, file: cluster.certificateAuthority,
                field: "certificate-authority"),
            insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
            namespace: contextBody.namespace.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        )
    }

    /// The first that applies: the first existing file in `KUBECONFIG` (colon-separated; files are not merged),
    /// `~/.kube/config`, then the in-cluster service account when `KUBERNETES_SERVICE_HOST` is set.
    package static func fromEnvironment(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        inClusterDirectory: String = serviceAccountDirectory
    ) throws(KubernetesError) -> KubernetesConfiguration {
        let fileManager = FileManager.default
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            let paths = list.split(separator: ":").map(String.init)
            guard let path = paths.first(where: { fileManager.fileExists(atPath: $0) }) else {
                throw .configuration("KUBECONFIG=\(list): no such file")
            }
            return try kubeconfig(path: path)
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let defaultPath = (home as NSString).appendingPathComponent(".kube/config")
        if fileManager.fileExists(atPath: defaultPath) { return try kubeconfig(path: defaultPath) }
        if environment["KUBERNETES_SERVICE_HOST"].map({ !$0.isEmpty }) ?? false {
            return try inCluster(directory: inClusterDirectory, environment: environment)
        }
        throw .configuration(
            "no Kubernetes configuration: KUBECONFIG is unset, \(defaultPath) does not exist, and not in a cluster")
    }

    private static func readText(_ path: String, what: String) throws(KubernetesError) -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .configuration("cannot read \(what) at \(path): \(error.localizedDescription)")
        }
    }
}

/// The parts of a kubeconfig file the loader reads; unknown keys are ignored.
private struct KubeconfigFile: Decodable {
    var currentContext: String?
    var clusters: [NamedCluster]?
    var contexts: [NamedContext]?
    var users: [NamedUser]?

    enum CodingKeys: String, CodingKey {
        case currentContext = "current-context"
        case clusters, contexts, users
    }

    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster?
    }

    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }

    struct NamedContext: Decodable {
        var name: String
        var context: Context?
    }

    struct Context: Decodable {
        var cluster: String?
        var user: String?
        var namespace: String?
    }

    struct NamedUser: Decodable {
        var name: String
        var user: User?
    }

    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var exec: Present?
        var authProvider: Present?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, exec
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
        }
    }

    /// Marks that a key is present, whatever its content.
    struct Present: Decodable {
        init(from decoder: any Decoder) throws {}
    }
}
