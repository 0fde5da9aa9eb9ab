import Foundation

/// Where a kind lives in the API: its group, version, kind and plural resource name.
package struct ResourceInfo: Sendable, Hashable {
    /// Empty for the core group (`/api/v1`).
    package var group: String
    package var version: String
    package var kind: String
    /// The plural, lower-case resource name used in paths (`jobs`, `persistentvolumeclaims`).
    package var plural: String
    package var isNamespaced: Bool

    package init(group: String, version: String, kind: String, plural: String, isNamespaced: Bool = true) {
        self.group = group
        self.version = version
        self.kind = kind
        self.plural = plural
        self.isNamespaced = isNamespaced
    }

    /// `v1` for the core group, `group/version` otherwise.
    package var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// `/api/v1` for the core group, `/apis/<group>/<version>` otherwise.
    package var groupPath: String { group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)" }

    /// The collection path, scoped to `namespace` when the kind is namespaced and a namespace is given.
    package func collectionPath(namespace: String?) -> String {
        guard isNamespaced, let namespace else { return "\(groupPath)/\(plural)" }
        return "\(groupPath)/namespaces/\(Self.escape(namespace))/\(plural)"
    }

    /// The path of one object.
    package func objectPath(name: String, namespace: String?) -> String {
        "\(collectionPath(namespace: namespace))/\(Self.escape(name))"
    }

    /// Names are DNS labels in practice; escape anyway so a bad name yields a 404, not a different path.
    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .kubernetesUnreserved) ?? segment
    }
}

/// A kind the client can create, get, list, watch, patch and delete. Conformers carry `apiVersion` and `kind` as
/// stored properties so that encoded manifests are complete; list items arrive without them, hence optional.
package protocol KubernetesResource: Codable, Sendable {
    static var resource: ResourceInfo { get }
    var apiVersion: String? { get set }
    var kind: String? { get set }
    var metadata: ObjectMeta { get set }
}

/// Standard object metadata (meta/v1 ObjectMeta), the subset c2d reads or writes.
package struct ObjectMeta: Codable, Sendable, Hashable {
    package var name: String?
    package var generateName: String?
    package var namespace: String?
    package var uid: String?
    package var resourceVersion: String?
    package var generation: Int?
    package var creationTimestamp: Date?
    package var deletionTimestamp: Date?
    package var labels: [String: String]?
    package var annotations: [String: String]?
    package var ownerReferences: [OwnerReference]?
    package var finalizers: [String]?

    package init(
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
package struct OwnerReference: Codable, Sendable, Hashable {
    package var apiVersion: String
    package var kind: String
    package var name: String
    package var uid: String
    package var controller: Bool?
    package var blockOwnerDeletion: Bool?

    package init(
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
    package init<Owner: KubernetesResource>(
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
package struct ListMeta: Codable, Sendable, Hashable {
    /// The collection's version at the time of the list; start a watch from it.
    package var resourceVersion: String?
    /// Present when more pages follow; pass it back as the continue token.
    package var `continue`: String?
    package var remainingItemCount: Int?

    package init(resourceVersion: String? = nil, continue: String? = nil, remainingItemCount: Int? = nil) {
        self.resourceVersion = resourceVersion
        self.continue = `continue`
        self.remainingItemCount = remainingItemCount
    }
}

/// A page of a list, with items decoded as `Item`: the full kind, or a caller-chosen projection of it.
package struct ObjectList<Item: Decodable & Sendable>: Decodable, Sendable {
    package var apiVersion: String?
    package var kind: String?
    package var metadata: ListMeta
    package var items: [Item]

    package init(apiVersion: String? = nil, kind: String? = nil, metadata: ListMeta = ListMeta(), items: [Item]) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.metadata = metadata
        self.items = items
    }

    private enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, items }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try container.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try container.decodeIfPresent(String.self, forKey: .kind)
        metadata = try container.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
        // The API server sends `"items": null` for an empty list in some versions.
        items = try container.decodeIfPresent([Item].self, forKey: .items) ?? []
    }
}

extension ObjectList: Encodable where Item: Encodable {
    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(apiVersion, forKey: .apiVersion)
        try container.encodeIfPresent(kind, forKey: .kind)
        try container.encode(metadata, forKey: .metadata)
        try container.encode(items, forKey: .items)
    }
}

/// meta/v1 LabelSelector.
package struct LabelSelector: Codable, Sendable, Hashable {
    package var matchLabels: [String: String]?
    package var matchExpressions: [LabelSelectorRequirement]?

    package init(matchLabels: [String: String]? = nil, matchExpressions: [LabelSelectorRequirement]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }
}

package struct LabelSelectorRequirement: Codable, Sendable, Hashable {
    package var key: String
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    package var `operator`: String
    package var values: [String]?

    package init(key: String, operator: String, values: [String]? = nil) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }
}

/// JSON coders matching the API server's conventions: RFC 3339 times, base64 `Data`.
package enum KubernetesJSON {
    package static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }

    /// Accepts times with and without fractional seconds: `Time` has none, `MicroTime` has six digits.
    package static func makeDecoder() -> JSONDecoder {
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
