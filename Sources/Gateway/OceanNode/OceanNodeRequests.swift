import Domain
import Foundation
import NIOCore
import NIOFoundationCompat

/// The parameters of one ocean-node call: the JSON body's members (POST) or the query string's (GET, PUT), read as
/// ocean-node reads them — a falsy value (`""`, `0`, `null`, `false`) counts as absent (`req.body.x || null`).
/// Numbers keep their literal text, so a nonce is signed and checked digit for digit.
struct OceanNodeInput: Sendable {
    var members: [String: OceanValue]

    init(members: [String: OceanValue]) {
        self.members = members
    }

    /// A body that is not a JSON object has no parameters.
    init(body: ByteBuffer) {
        var parser = OceanJSONParser(Array(buffer: body))
        if case .object(let members)? = try? parser.parseDocument() {
            self.members = members
        } else {
            members = [:]
        }
    }

    /// The query string's parameters; a JSON body fills in what the query lacks (ocean-node's PUT reads the query
    /// only, some clients send a body).
    init(query: String?, body: ByteBuffer) {
        var members = OceanNodeInput(body: body).members
        for (key, value) in OceanParameters.formDecode(query ?? "") where !value.isEmpty {
            members[key] = .string(value)
        }
        self.members = members
    }

    subscript(_ key: String) -> OceanValue? {
        guard let value = members[key], !Self.isFalsyInJavaScript(value) else { return nil }
        return value
    }

    /// JavaScript's falsy values; unlike Python's, an empty array or object is truthy (`datasets: []` is given).
    static func isFalsyInJavaScript(_ value: OceanValue) -> Bool {
        switch value {
        case .array, .object: false
        default: value.isFalsy
        }
    }

    func text(_ key: String) -> String? { self[key]?.text }

    /// The first of `required` that is absent, as ocean-node's `validateCommandParameters` reports it.
    func checkRequired(_ required: [String], command: String) throws {
        if let missing = required.first(where: { self[$0] == nil }) {
            throw OceanNodeError.missingField(missing, command: command, required: required)
        }
    }

    /// A member decoded as `T`; a wrong shape is a 400 naming the field.
    func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T? {
        guard let value = self[key] else { return nil }
        do {
            return try JSONDecoder().decode(T.self, from: value.json)
        } catch {
            throw OceanNodeError(
                code: "invalid_field", message: "Invalid \(key): \(OceanRoutes.describe(error).prefix(300))")
        }
    }

    /// A whole number of seconds (`maxJobDuration`, `queueMaxWaitTime`), as `parseInt` reads it.
    func integer(_ key: String) -> Int? {
        guard let text = text(key) else { return nil }
        if let value = Int(text) { return value }
        return Double(text).flatMap { $0.isFinite ? Int(exactly: $0.rounded(.towardZero)) : nil }
    }
}

/// ocean-node's `ComputeAlgorithm`.
struct ComputeAlgorithmInput: Decodable, Sendable {
    var documentId: String?
    var serviceId: String?
    var transferTxId: String?
    var fileObject: FileObject?
    var meta: Meta?
    var algocustomdata: JSONValue?
    var userdata: JSONValue?

    struct Meta: Decodable, Sendable {
        var rawcode: String?
        var container: Container?
    }

    struct Container: Decodable, Sendable {
        var entrypoint: String?
        var image: String?
        var tag: String?
        var checksum: String?
        var dockerfile: String?
    }
}

/// ocean-node's `ComputeAsset`.
struct ComputeAssetInput: Decodable, Sendable {
    var documentId: String?
    var serviceId: String?
    var transferTxId: String?
    var fileObject: FileObject?
    var userdata: JSONValue?
}

/// A storage object; c2d fetches `url` objects (http or https).
struct FileObject: Decodable, Sendable {
    var type: String?
    var url: String?
}

/// `resources` entries and `payment`.
struct ResourceRequestInput: Decodable, Sendable {
    var id: String
    var amount: Double
}

struct PaymentInput: Decodable, Sendable {
    var chainId: Int?
    var token: String?
    var resources: [ResourceRequestInput]?
}

/// Turns ocean-node's algorithm and datasets into c2d's one-stage workflow. Published assets (by `documentId`) need
/// their DDO, which only an indexer has: c2d has none, so they are refused with ocean-node's "not found" text unless a
/// chain verifier is configured; `fileObject` URLs and raw code work without one.
enum OceanNodeWorkflow {
    static func make(
        algorithm: ComputeAlgorithmInput, datasets: [ComputeAssetInput], resources: [Workflow.ResourceRequest],
        maxJobDuration: Int, environment: ComputeEnvironment, free: Bool, resolvesDocuments: Bool
    ) throws -> Workflow {
        for documentID in ([algorithm.documentId] + datasets.map(\.documentId)).compactMap({ $0 })
        where !resolvesDocuments {
            throw OceanNodeError(
                code: "asset_lookup_unavailable", message: "DDO \(documentID.prefix(120)) not found")
        }
        if algorithm.meta?.container?.dockerfile != nil {
            throw OceanNodeError(
                code: "image_build_not_allowed",
                message: free ? "Building image is not allowed for free jobs" : "Building image is not supported")
        }
        let container = algorithm.meta?.container
        let algorithmURL = try url(of: algorithm.fileObject, name: "algorithm")
        let workflowAlgorithm = Workflow.Algorithm(
            id: algorithm.documentId, url: algorithmURL, rawcode: algorithm.meta?.rawcode,
            container: Workflow.Container(
                entrypoint: container?.entrypoint ?? "", image: container?.image, tag: container?.tag,
                checksum: container?.checksum),
            algocustomdata: algorithm.algocustomdata,
            remote: algorithm.documentId.map {
                remote(
                    documentID: $0, serviceID: algorithm.serviceId, txID: algorithm.transferTxId,
                    userdata: algorithm.userdata)
            })
        var inputs: [Workflow.Input] = []
        for (position, dataset) in datasets.enumerated() {
            if let datasetURL = try url(of: dataset.fileObject, name: "dataset \(position)") {
                inputs.append(Workflow.Input(index: position, id: dataset.documentId ?? "", url: [datasetURL]))
            } else if let documentID = dataset.documentId {
                inputs.append(
                    Workflow.Input(
                        index: position, id: documentID,
                        remote: remote(
                            documentID: documentID, serviceID: dataset.serviceId, txID: dataset.transferTxId,
                            userdata: dataset.userdata)))
            } else {
                throw OceanNodeError(
                    code: "missing_input_source", message: "dataset \(position) needs a fileObject or a documentId")
            }
        }
        let positive = resources.filter { $0.amount > 0 }
        return Workflow(stages: [
            Workflow.Stage(
                index: 0, input: inputs, algorithm: workflowAlgorithm,
                compute: Workflow.Compute(
                    maxtime: maxJobDuration, allowNetwork: environment.allowNetwork ? true : nil,
                    resources: positive.isEmpty ? nil : positive))
        ])
    }

    private static func url(of object: FileObject?, name: String) throws -> String? {
        guard let object else { return nil }
        guard object.type == nil || object.type == "url", let url = object.url else {
            throw OceanNodeError(
                code: "unsupported_file_object",
                message: "\(name): only fileObject of type \"url\" is supported, not \(object.type ?? "none")")
        }
        return url
    }

    private static func remote(documentID: String, serviceID: String?, txID: String?, userdata: JSONValue?)
        -> JSONValue
    {
        var fields: [String: JSONValue] = [
            "documentId": .string(documentID), "serviceId": .string(serviceID ?? ""), "txId": .string(txID ?? ""),
        ]
        if let userdata { fields["userdata"] = userdata }
        return .object(fields)
    }
}
