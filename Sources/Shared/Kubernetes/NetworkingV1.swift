/// networking.k8s.io/v1 NetworkPolicy.
package struct NetworkPolicy: KubernetesResource, Hashable {
    package static let resource = ResourceInfo(
        group: "networking.k8s.io", version: "v1", kind: "NetworkPolicy", plural: "networkpolicies")

    package var apiVersion: String?
    package var kind: String?
    package var metadata: ObjectMeta
    package var spec: Spec?

    package init(metadata: ObjectMeta, spec: Spec) {
        self.apiVersion = Self.resource.apiVersion
        self.kind = Self.resource.kind
        self.metadata = metadata
        self.spec = spec
    }

    package struct Spec: Codable, Sendable, Hashable {
        /// Selects the pods the policy applies to; an empty selector selects every pod in the namespace.
        package var podSelector: LabelSelector
        /// `Ingress`, `Egress`. Listing `Egress` with no `egress` rules denies all egress.
        package var policyTypes: [String]?
        package var ingress: [IngressRule]?
        package var egress: [EgressRule]?

        package init(
            podSelector: LabelSelector, policyTypes: [String]? = nil, ingress: [IngressRule]? = nil,
            egress: [EgressRule]? = nil
        ) {
            self.podSelector = podSelector
            self.policyTypes = policyTypes
            self.ingress = ingress
            self.egress = egress
        }
    }

    package struct IngressRule: Codable, Sendable, Hashable {
        package var from: [Peer]?
        package var ports: [Port]?

        package init(from: [Peer]? = nil, ports: [Port]? = nil) {
            self.from = from
            self.ports = ports
        }
    }

    package struct EgressRule: Codable, Sendable, Hashable {
        package var to: [Peer]?
        package var ports: [Port]?

        package init(to: [Peer]? = nil, ports: [Port]? = nil) {
            self.to = to
            self.ports = ports
        }
    }

    package struct Peer: Codable, Sendable, Hashable {
        package var podSelector: LabelSelector?
        package var namespaceSelector: LabelSelector?
        package var ipBlock: IPBlock?

        package init(
            podSelector: LabelSelector? = nil, namespaceSelector: LabelSelector? = nil, ipBlock: IPBlock? = nil
        ) {
            self.podSelector = podSelector
            self.namespaceSelector = namespaceSelector
            self.ipBlock = ipBlock
        }
    }

    package struct IPBlock: Codable, Sendable, Hashable {
        package var cidr: String
        package var except: [String]?

        package init(cidr: String, except: [String]? = nil) {
            self.cidr = cidr
            self.except = except
        }
    }

    package struct Port: Codable, Sendable, Hashable {
        /// `TCP` (default), `UDP` or `SCTP`.
        package var `protocol`: String?
        package var port: IntOrString?
        package var endPort: Int?

        package init(protocol: String? = nil, port: IntOrString? = nil, endPort: Int? = nil) {
            self.protocol = `protocol`
            self.port = port
            self.endPort = endPort
        }
    }
}

/// A field that holds either a number or a name (a port, a percentage).
package enum IntOrString: Codable, Sendable, Hashable {
    case int(Int)
    case string(String)

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        }
    }
}
