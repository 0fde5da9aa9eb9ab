import Foundation

/// Where a kind lives in the API: its group, version, kind and plural resource name.
public struct ResourceInfo: Sendable, Hashable {
    /// Empty for the core group (`/api/v1`).
    public var group: String
    public var version: String
    public var kind: String
    /// The plural, lower-case resource name used in paths (`jobs`, `persistentvolumeclaims`).
    public var plural: String
    public var isNamespaced: Bool

    public init(group: String, version: String, kind: String, plural: String, isNamespaced: Bool = true) {
        self.group = group
        self.version = version
        self.kind = kind
        self.plural = plural
        self.isNamespaced = isNamespaced
    }

    /// `v1` for the core group, `group/version` otherwise.
    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// `/api/v1` for the core group, `/apis/<group>/<version>` otherwise.
    public var groupPath: String { group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)" }

    /// The collection path, scoped to `namespace` when the kind is namespaced and a namespace is given.
    public func collectionPath(namespace: String?) -> String {
        guard isNamespaced, let namespace else { return "\(groupPath)/\(plural)" }
        return "\(groupPath)/namespaces/\(Self.escape(namespace))/\(plural)"
    }

    /// The path of one object.
    public func objectPath(name: String, namespace: String?) -> String {
        "\(collectionPath(namespace: namespace))/\(Self.escape(name))"
    }

    /// Names are DNS labels in practice; escape anyway so a bad name yields a 404, not a different path.
    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .kubernetesUnreserved) ?? segment
    }
}

/// A kind the client can create, get, list, watch, patch and delete. Conformers carry `apiVersion` and `kind` as
/// stored properties so that encoded manifests are complete; list items arrive without them, hence optional.
public protocol KubernetesResource: Codable, Sendable {
    static var resource: ResourceInfo { get }
    var apiVersion: String? { get set }
    var kind: String? { get set }
    var metadata: ObjectMeta { get set }
}

/// Standard object metadata (meta/v1 ObjectMeta), the subset c2d reads or writes.
public struct ObjectMeta: Codable, Sendable, Hashable {
    public var name: String?
    public var generateName: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var generation: Int?
    public var creationTimestamp: Date?
    public var deletionTimestamp: Date?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var ownerReferences: [OwnerReference]?
    public var finalizers: [String]?

    public init(
        name: String? = nil, generateName: String? = nil, namespace: String? = nil, uid: String? = nil,
        resourceVersion: String? = nil, generation: Int? = nil, creationTimestamp: Date? = nil,
        deletionTimestamp: Date? = nil, labels: [String: String]? = nil, annotations: [String: String]? = nil,
        ownerReferences: [OwnerReference]? = nil, finalizers: [String]? = nil
    ) {
        self.name = name
        self.generateName = generateName
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.generation = generation
        self.creationTimestamp = creationTimestamp
        self.deletionTimestamp = deletionTimestamp
        self.labels = labels
        self.annotations = annotations
        self.ownerReferences = ownerReferences
        self.finalizers = finalizers
    }
}

/// Points at the owner whose deletion cascades to this object.
public struct OwnerReference: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var name: String
    public var uid: String
    public var controller: Bool?
    public var blockOwnerDeletion: Bool?

    public init(
        apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = nil,
        blockOwnerDeletion: Bool? = nil
    ) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.uid = uid
        self.controller = controller
        self.blockOwnerDeletion = blockOwnerDeletion
    }

    /// A reference to `owner`, which must have been read back from the server (it needs the uid).
    public init<Owner: KubernetesResource>(
        to owner: Owner, controller: Bool? = nil, blockOwnerDeletion: Bool? = nil
    ) throws(KubernetesError) {
        guard let name = owner.metadata.name, let uid = owner.metadata.uid else {
            throw KubernetesError(
                code: .invalid, message: "owner reference to a \(Owner.resource.kind) without name and uid")
        }
        self.init(
            apiVersion: Owner.resource.apiVersion, kind: Owner.resource.kind, name: name, uid: uid,
            controller: controller, blockOwnerDeletion: blockOwnerDeletion)
    }
}

/// List metadata (meta/v1 ListMeta).
public struct ListMeta: Codable, Sendable, Hashable {
    /// The collection's version at the time of the list; start a watch from it.
    public var resourceVersion: String?
    /// Present when more pages follow; pass it back as the continue token.
    public var `continue`: String?
    public var remainingItemCount: Int?

    public init(resourceVersion: String? = nil, continue: String? = nil, remainingItemCount: Int? = nil) {
        self.resourceVersion = resourceVersion
        self.continue = `continue`
        self.remainingItemCount = remainingItemCount
    }
}

/// A page of a list, with items decoded as `Item`: the full kind, or a caller-chosen projection of it.
public struct ObjectList<Item: Decodable & Sendable>: Decodable, Sendable {
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ListMeta
    public var items: [Item]

    public init(apiVersion: String? = nil, kind: String? = nil, metadata: ListMeta = ListMeta(), items: [Item]) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.metadata = metadata
        self.items = items
    }

    private enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, items }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try container.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try container.decodeIfPresent(String.self, forKey: .kind)
        metadata = try container.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
        // The API server sends `"items": null` for an empty list in some versions.
        items = try container.decodeIfPresent([Item].self, forKey: .items) ?? []
    }
}

extension ObjectList: Encodable where Item: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(apiVersion, forKey: .apiVersion)
        try container.encodeIfPresent(kind, forKey: .kind)
        try container.encode(metadata, forKey: .metadata)
        try container.encode(items, forKey: .items)
    }
}

/// meta/v1 LabelSelector.
public struct LabelSelector: Codable, Sendable, Hashable {
    public var matchLabels: [String: String]?
    public var matchExpressions: [LabelSelectorRequirement]?

    public init(matchLabels: [String: String]? = nil, matchExpressions: [LabelSelectorRequirement]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }
}

public struct LabelSelectorRequirement: Codable, Sendable, Hashable {
    public var key: String
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    public var `operator`: String
    public var values: [String]?

    public init(key: String, operator: String, values: [String]? = nil) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }
}

/// JSON coders matching the API server's conventions: RFC 3339 times, base64 `Data`.
public enum KubernetesJSON {
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }

    /// Accepts times with and without fractional seconds: `Time` has none, `MicroTime` has six digits.
    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? Date(text, strategy: .iso8601) { return date }
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
                return date
            }
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "not an RFC 3339 time: \(text)")
        }
        return decoder
    }
}

extension CharacterSet {
    /// RFC 3986 unreserved characters; everything else in a path segment or query value is percent-encoded.
    static let kubernetesUnreserved = CharacterSet(
        charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
}
