/// One served resource type. Resources are all namespaced, as the subset c2d uses is.
struct ResourceType: Sendable, Hashable {
    var index: Int
    var name: String
    var singular: String
    var kind: String
    var group: String
    var version: String
    var shortNames: [String]
    /// Pods and Jobs answer a delete with the object, the others with a Success Status (as the real registries do).
    var returnsDeletedObject: Bool
    /// Status is a subresource: an update of the main resource keeps the stored status, and `/status` keeps the rest.
    var hasStatus: Bool

    var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    /// `jobs.batch` for messages; core resources have no group suffix.
    var qualifiedName: String { group.isEmpty ? name : "\(name).\(group)" }
    /// `Job.batch` for Invalid messages; core kinds have no suffix.
    var qualifiedKind: String { group.isEmpty ? kind : "\(kind).\(group)" }
    var listKind: String { kind + "List" }

    static let secrets = ResourceType(
        index: 0, name: "secrets", singular: "secret", kind: "Secret", group: "", version: "v1", shortNames: [],
        returnsDeletedObject: false, hasStatus: false)
    static let persistentVolumeClaims = ResourceType(
        index: 1, name: "persistentvolumeclaims", singular: "persistentvolumeclaim", kind: "PersistentVolumeClaim",
        group: "", version: "v1", shortNames: ["pvc"], returnsDeletedObject: true, hasStatus: true)
    static let pods = ResourceType(
        index: 2, name: "pods", singular: "pod", kind: "Pod", group: "", version: "v1", shortNames: ["po"],
        returnsDeletedObject: true, hasStatus: true)
    static let jobs = ResourceType(
        index: 3, name: "jobs", singular: "job", kind: "Job", group: "batch", version: "v1", shortNames: [],
        returnsDeletedObject: true, hasStatus: true)
    static let networkPolicies = ResourceType(
        index: 4, name: "networkpolicies", singular: "networkpolicy", kind: "NetworkPolicy",
        group: "networking.k8s.io", version: "v1", shortNames: ["netpol"], returnsDeletedObject: false,
        hasStatus: false)

    static let all: [ResourceType] = [secrets, persistentVolumeClaims, pods, jobs, networkPolicies]

    static func find(group: String, version: String, name: String) -> ResourceType? {
        all.first { $0.group == group && $0.version == version && $0.name == name }
    }
}

/// Discovery documents, so kubectl can map `get jobs` to a path.
enum Discovery {
    static let verbs: JSON = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    static func version() -> JSON {
        [
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-c2d-emulator",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
            "platform": "linux/amd64",
        ]
    }

    static func coreVersions() -> JSON {
        [
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"]],
        ]
    }

    static let groups: [(name: String, version: String)] = [("batch", "v1"), ("networking.k8s.io", "v1")]

    static func groupList() -> JSON {
        let entries: [JSON] = groups.map { group in
            let version: JSON = [
                "groupVersion": .string("\(group.name)/\(group.version)"), "version": .string(group.version),
            ]
            return ["name": .string(group.name), "versions": [version], "preferredVersion": version]
        }
        return ["kind": "APIGroupList", "apiVersion": "v1", "groups": .array(entries)]
    }

    static func group(_ name: String) -> JSON? {
        guard let group = groups.first(where: { $0.name == name }) else { return nil }
        let version: JSON = [
            "groupVersion": .string("\(group.name)/\(group.version)"), "version": .string(group.version),
        ]
        return [
            "kind": "APIGroup", "apiVersion": "v1", "name": .string(name), "versions": [version],
            "preferredVersion": version,
        ]
    }

    static func resourceList(group: String, version: String) -> JSON? {
        let types = ResourceType.all.filter { $0.group == group && $0.version == version }
        guard !types.isEmpty else { return nil }
        var entries: [JSON] = []
        for type in types {
            var entry: JSON = [
                "name": .string(type.name), "singularName": .string(type.singular), "namespaced": true,
                "kind": .string(type.kind), "verbs": verbs,
            ]
            if !type.shortNames.isEmpty { entry["shortNames"] = .array(type.shortNames.map { .string($0) }) }
            if type == .pods || type == .jobs { entry["categories"] = ["all"] }
            entries.append(entry)
            if type.hasStatus {
                entries.append([
                    "name": .string("\(type.name)/status"), "singularName": "", "namespaced": true,
                    "kind": .string(type.kind), "verbs": ["get", "patch", "update"],
                ])
            }
            if type == .pods {
                entries.append([
                    "name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"],
                ])
            }
        }
        return [
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": .string(group.isEmpty ? version : "\(group)/\(version)"), "resources": .array(entries),
        ]
    }

    static let openAPIGroupVersions = ["api/v1", "apis/batch/v1", "apis/networking.k8s.io/v1"]

    /// The OpenAPI v3 index. kubectl create/apply only look for the `fieldValidation` parameter on PATCH, so a
    /// document with those operations lets them validate server-side instead of needing full schemas.
    static func openAPIIndex() -> JSON {
        var paths: JSON = [:]
        for groupVersion in openAPIGroupVersions {
            paths[groupVersion] = ["serverRelativeURL": .string("/openapi/v3/\(groupVersion)?hash=c2d")]
        }
        return ["paths": paths]
    }

    static func openAPIDocument(_ groupVersion: String) -> JSON? {
        guard openAPIGroupVersions.contains(groupVersion) else { return nil }
        var paths: JSON = [:]
        for type in ResourceType.all
        where (type.group.isEmpty ? "api/\(type.version)" : "apis/\(type.apiVersion)") == groupVersion {
            let operation: JSON = [
                "x-kubernetes-group-version-kind": [
                    "group": .string(type.group), "version": .string(type.version), "kind": .string(type.kind),
                ],
                "parameters": [
                    ["name": "fieldValidation", "in": "query", "schema": ["type": "string", "uniqueItems": true]]
                ],
                "responses": [:],
            ]
            paths["/\(groupVersion)/namespaces/{namespace}/\(type.name)/{name}"] = ["patch": operation]
        }
        return [
            "openapi": "3.0.0", "info": ["title": "Kubernetes", "version": "v1.32.0"], "paths": paths,
            "components": ["schemas": [:]],
        ]
    }
}
