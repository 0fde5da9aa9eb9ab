/// networking.k8s.io/v1 NetworkPolicy.
public struct NetworkPolicy: KubernetesResource, Hashable {
    public static let resource = ResourceInfo(
        group: "networking.k8s.io", version: "v1", kind: "NetworkPolicy", plural: "networkpolicies")

    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: Spec?

    public init(metadata: ObjectMeta, spec: Spec) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
    }

    public struct Spec: Codable, Sendable, Hashable {
        /// Selects the pods the policy applies to; an empty selector selects every pod in the namespace.
        public var podSelector: LabelSelector
        /// `Ingress`, `Egress`. Listing `Egress` with no `egress` rules denies all egress.
        public var policyTypes: [String]?
        public var ingress: [IngressRule]?
        public var egress: [EgressRule]?

        public init(
            podSelector: LabelSelector, policyTypes: [String]? = nil, ingress: [IngressRule]? = nil,
            egress: [EgressRule]? = nil
        ) {
            self.podSelector = podSelector
            self.policyTypes = policyTypes
            self.ingress = ingress
            self.egress = egress
        }
    }

    public struct IngressRule: Codable, Sendable, Hashable {
        public var from: [Peer]?
        public var ports: [Port]?

        public init(from: [Peer]? = nil, ports: [Port]? = nil) {
            self.from = from
            self.ports = ports
        }
    }

    public struct EgressRule: Codable, Sendable, Hashable {
        public var to: [Peer]?
        public var ports: [Port]?

        public init(to: [Peer]? = nil, ports: [Port]? = nil) {
            self.to = to
            self.ports = ports
        }
    }

    public struct Peer: Codable, Sendable, Hashable {
        public var podSelector: LabelSelector?
        public var namespaceSelector: LabelSelector?
        public var ipBlock: IPBlock?

        public init(
            podSelector: LabelSelector? = nil, namespaceSelector: LabelSelector? = nil, ipBlock: IPBlock? = nil
        ) {
            self.podSelector = podSelector
            self.namespaceSelector = namespaceSelector
            self.ipBlock = ipBlock
        }
    }

    public struct IPBlock: Codable, Sendable, Hashable {
        public var cidr: String
        public var except: [String]?

        public init(cidr: String, except: [String]? = nil) {
            self.cidr = cidr
            self.except = except
        }
    }

    public struct Port: Codable, Sendable, Hashable {
        /// `TCP` (default), `UDP` or `SCTP`.
        public var `protocol`: String?
        public var port: IntOrString?
        public var endPort: Int?

        public init(protocol: String? = nil, port: IntOrString? = nil, endPort: Int? = nil) {
            self.protocol = `protocol`
            self.port = port
            self.endPort = endPort
        }
    }
}

/// A field that holds either a number or a name (a port, a percentage).
public enum IntOrString: Codable, Sendable, Hashable {
    case int(Int)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        }
    }
}
