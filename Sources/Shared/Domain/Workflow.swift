/// A compute request in Ocean's workflow shape: `{"stages": [{input, algorithm, compute, output}]}`.
/// c2d runs one stage, as Ocean does ("Multiple stages are not supported yet").
package struct Workflow: Sendable, Hashable, Codable {
    package var stages: [Stage]

    package init(stages: [Stage]) {
        self.stages = stages
    }

    package struct Stage: Sendable, Hashable, Codable {
        package var index: Int?
        package var input: [Input]
        package var algorithm: Algorithm
        package var compute: Compute?
        package var output: JSONValue?

        package init(
            index: Int? = 0, input: [Input], algorithm: Algorithm, compute: Compute? = nil, output: JSONValue? = nil
        ) {
            self.index = index
            self.input = input
            self.algorithm = algorithm
            self.compute = compute
            self.output = output
        }
    }

    /// One dataset. Its files come from `url` (one URL or a list), from `path` (a file under the operator's data
    /// directory, c2d's addition for data that lives next to c2d), or from `remote` (the Provider's download
    /// endpoint; not yet supported by the local executor).
    package struct Input: Sendable, Hashable, Codable {
        package var index: Int?
        package var id: String
        package var url: [String]
        package var path: [String]
        /// Expected sha-256 of the file(s) ("sha256:<hex>" or bare hex); one per file, or one for a single file.
        package var checksum: [String]
        package var remote: JSONValue?

        package init(
            index: Int? = nil, id: String, url: [String] = [], path: [String] = [], checksum: [String] = [],
            remote: JSONValue? = nil
        ) {
            self.index = index
            self.id = id
            self.url = url
            self.path = path
            self.checksum = checksum
            self.remote = remote
        }

        enum CodingKeys: String, CodingKey {
            case index, id, url, path, checksum, remote
        }

        package init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            index = try c.decodeIfPresent(Int.self, forKey: .index)
            id = try c.decodeIfPresent(String.self, forKey: .id) ?? ""
            url = try c.decodeOneOrMany(forKey: .url)
            path = try c.decodeOneOrMany(forKey: .path)
            checksum = try c.decodeOneOrMany(forKey: .checksum)
            remote = try c.decodeIfPresent(JSONValue.self, forKey: .remote)
        }

        package func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(index, forKey: .index)
            try c.encode(id, forKey: .id)
            if !url.isEmpty { try c.encode(url, forKey: .url) }
            if !path.isEmpty { try c.encode(path, forKey: .path) }
            if !checksum.isEmpty { try c.encode(checksum, forKey: .checksum) }
            try c.encodeIfPresent(remote, forKey: .remote)
        }
    }

    package struct Algorithm: Sendable, Hashable, Codable {
        /// The algorithm's DID; empty or absent for raw code.
        package var id: String?
        package var url: String?
        package var rawcode: String?
        package var checksum: String?
        package var container: Container?
        package var algocustomdata: JSONValue?
        package var remote: JSONValue?

        package init(
            id: String? = nil, url: String? = nil, rawcode: String? = nil, checksum: String? = nil,
            container: Container? = nil, algocustomdata: JSONValue? = nil, remote: JSONValue? = nil
        ) {
            self.id = id
            self.url = url
            self.rawcode = rawcode
            self.checksum = checksum
            self.container = container
            self.algocustomdata = algocustomdata
            self.remote = remote
        }

        /// What Ocean reports as `algoDID`: the DID, or "raw" for raw code.
        package var didOrRaw: String {
            if let id, !id.isEmpty { return id }
            return "raw"
        }
    }

    /// Container-like description of how to start the algorithm. `entrypoint` is a command line in which
    /// `$ALGO` stands for the algorithm file, e.g. `python3 $ALGO`.
    package struct Container: Sendable, Hashable, Codable {
        package var entrypoint: String
        package var image: String?
        package var tag: String?
        package var checksum: String?

        package init(entrypoint: String, image: String? = nil, tag: String? = nil, checksum: String? = nil) {
            self.entrypoint = entrypoint
            self.image = image
            self.tag = tag
            self.checksum = checksum
        }
    }

    package struct Compute: Sendable, Hashable, Codable {
        /// Requested maximum run time in seconds, capped by the environment's `maxJobDuration`.
        package var maxtime: Int?
        package var namespace: String?
        /// Whether the algorithm asks to reach the network; granted only where the environment allows it, refused
        /// at submit where it does not. Absent or false: no network.
        package var allowNetwork: Bool?
        /// Requested resources in ocean-node's shape, `[{"id": "cpu"|"ram"|"disk", "amount": n}]` (ram and disk in
        /// GiB); each must fit the environment's limits.
        package var resources: [ResourceRequest]?

        package init(
            maxtime: Int? = nil, namespace: String? = nil, allowNetwork: Bool? = nil,
            resources: [ResourceRequest]? = nil
        ) {
            self.maxtime = maxtime
            self.namespace = namespace
            self.allowNetwork = allowNetwork
            self.resources = resources
        }
    }

    package struct ResourceRequest: Sendable, Hashable, Codable {
        package var id: String
        package var amount: Double

        package init(id: String, amount: Double) {
            self.id = id
            self.amount = amount
        }
    }

    /// The stage c2d runs.
    package var stage: Stage? { stages.first }

    /// Input DIDs in order, as Ocean's `inputDID`.
    package var inputDIDs: [String] { stage?.input.map(\.id) ?? [] }
}

extension KeyedDecodingContainer {
    /// Ocean writes `url` as either one string or a list of strings.
    fileprivate func decodeOneOrMany(forKey key: Key) throws -> [String] {
        if let one = try? decodeIfPresent(String.self, forKey: key) { return [one] }
        return try decodeIfPresent([String].self, forKey: key) ?? []
    }
}
