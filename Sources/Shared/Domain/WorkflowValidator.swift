import Foundation

/// Checks a workflow against an environment and the configured limits before anything is written.
/// Pure: the same input always gives the same verdict, and nothing is touched.
package struct WorkflowValidator: Sendable {
    package var limits: SubmissionLimits

    package init(limits: SubmissionLimits = SubmissionLimits()) {
        self.limits = limits
    }

    package func validate(_ workflow: Workflow, environment: ComputeEnvironment) throws(SubmissionError) {
        _ = try validatedJSON(workflow, environment: environment)
    }

    /// Validates like ``validate(_:environment:)`` and returns the workflow as JSON text, the form the job store
    /// writes: the size check needs the encoding anyway, and a submit that passes it on encodes the workflow once.
    /// Nil only if the workflow cannot be encoded (then the store's own encoding reports it).
    package func validatedJSON(_ workflow: Workflow, environment: ComputeEnvironment) throws(SubmissionError) -> String?
    {
        guard let stage = workflow.stages.first else {
            throw SubmissionError(code: "missing_stages", message: "the workflow has no stages")
        }
        guard workflow.stages.count == 1 else {
            throw SubmissionError(code: "multiple_stages", message: "multiple stages are not supported yet")
        }
        try validate(stage.algorithm, environment: environment)
        guard stage.input.count <= limits.maxInputs else {
            throw SubmissionError(
                code: "too_many_inputs",
                message: "the workflow names \(stage.input.count) inputs; the limit is \(limits.maxInputs)")
        }
        var seen = Set<String>()
        for (position, input) in stage.input.enumerated() {
            try validate(input, position: position)
            let directory = Self.inputDirectoryName(input, position: position)
            guard seen.insert(directory).inserted else {
                throw SubmissionError(
                    code: "duplicate_input", message: "input \(position) repeats the dataset id '\(input.id)'")
            }
        }
        let encoded = try? WorkflowJSON(workflow)
        if let encoded {
            guard encoded.bytes.count <= limits.maxWorkflowBytes else {
                throw SubmissionError(
                    code: "workflow_too_large",
                    message:
                        "the workflow is \(encoded.bytes.count) bytes as JSON; the limit is \(limits.maxWorkflowBytes)",
                    httpStatus: 413)
            }
            // Postgres's jsonb cannot hold NUL characters; refuse them here rather than fail at the insert.
            guard !encoded.containsNUL else {
                throw SubmissionError(
                    code: "invalid_character", message: "text in the workflow may not contain NUL (\\u0000) characters")
            }
        }
        if stage.compute?.allowNetwork == true, !environment.allowNetwork {
            throw SubmissionError(
                code: "network_not_allowed",
                message: "environment '\(environment.id)' does not allow algorithms to reach the network")
        }
        try validate(stage.compute?.resources ?? [], environment: environment)
        if let maxtime = stage.compute?.maxtime {
            guard maxtime > 0 else {
                throw SubmissionError(code: "invalid_maxtime", message: "compute.maxtime must be a positive number")
            }
            guard maxtime <= environment.maxJobDuration else {
                throw SubmissionError(
                    code: "duration_exceeds_limit",
                    message: "compute.maxtime \(maxtime) s exceeds environment '\(environment.id)' "
                        + "maxJobDuration \(environment.maxJobDuration) s")
            }
        }
        return encoded?.text
    }

    private func validate(_ algorithm: Workflow.Algorithm, environment: ComputeEnvironment) throws(SubmissionError) {
        let hasRaw = !(algorithm.rawcode ?? "").isEmpty
        let hasURL = !(algorithm.url ?? "").isEmpty
        let hasRemote = algorithm.remote != nil && algorithm.remote != .null
        guard [hasRaw, hasURL, hasRemote].filter({ $0 }).count == 1 else {
            throw SubmissionError(
                code: "meta_oneof_url_rawcode_remote",
                message: "the algorithm needs exactly one of 'rawcode', 'url' or 'remote'")
        }
        if hasRemote { try validateRemote(algorithm.remote, name: "algorithm") }
        if hasRaw {
            guard environment.allowRawAlgorithm else {
                throw SubmissionError(
                    code: "no_raw_algo_allowed",
                    message: "environment '\(environment.id)' does not accept raw algorithms")
            }
            guard (algorithm.rawcode ?? "").utf8.count <= limits.maxRawCodeBytes else {
                throw SubmissionError(
                    code: "rawcode_too_large",
                    message: "the raw algorithm is larger than the limit of \(limits.maxRawCodeBytes) bytes",
                    httpStatus: 413)
            }
        }
        if let url = algorithm.url, hasURL {
            try checkField(url, name: "algorithm.url")
            guard Self.isHTTPURL(url) else {
                throw SubmissionError(code: "invalid_algorithm_url", message: "algorithm.url must be an http(s) URL")
            }
        }
        if let checksum = algorithm.checksum {
            guard Self.sha256Hex(checksum) != nil else {
                throw SubmissionError(
                    code: "invalid_checksum", message: "algorithm.checksum must be a sha-256 digest in hex")
            }
        }
        guard let entrypoint = algorithm.container?.entrypoint, !entrypoint.allSatisfy(\.isWhitespace) else {
            throw SubmissionError(
                code: "missing_entrypoint",
                message: "algorithm.container.entrypoint is required, e.g. \"python3 $ALGO\"")
        }
        try checkField(entrypoint, name: "algorithm.container.entrypoint")
        try checkField(algorithm.id ?? "", name: "algorithm.id")
    }

    /// ocean-node's resource ids: `cpu` in cores, `ram` and `disk` in GiB, and the environment's GPUs in devices.
    private func validate(_ resources: [Workflow.ResourceRequest], environment: ComputeEnvironment)
        throws(SubmissionError)
    {
        for resource in resources {
            let limit: Double
            let unit: String
            switch resource.id {
            case "cpu": (limit, unit) = (environment.cpus, "cores")
            case "ram": (limit, unit) = (Double(environment.memoryMiB) / 1024, "GiB")
            case "disk": (limit, unit) = (Double(environment.diskMiB) / 1024, "GiB")
            default:
                // A GPU the environment lists, by its id (ocean-node's `gpu0`, …).
                guard let gpu = environment.resources.first(where: { $0.id == resource.id && $0.type == .gpu }) else {
                    throw SubmissionError(
                        code: "unknown_resource",
                        message: "resource '\(resource.id.prefix(64))' is not one of cpu, ram, disk"
                            + environment.resources.filter { $0.type == .gpu }.map { ", \($0.id)" }.joined())
                }
                (limit, unit) = (gpu.max, "devices")
            }
            guard resource.amount > 0, resource.amount.isFinite else {
                throw SubmissionError(
                    code: "invalid_resource", message: "resource '\(resource.id)' needs a positive amount")
            }
            guard resource.amount <= limit else {
                throw SubmissionError(
                    code: "resources_exceed_limit",
                    message: "\(resource.id) \(resource.amount) \(unit) exceeds environment '\(environment.id)' "
                        + "limit of \(limit) \(unit)")
            }
        }
    }

    private func validate(_ input: Workflow.Input, position: Int) throws(SubmissionError) {
        let name = "input \(position)"
        try checkField(input.id, name: "\(name) id")
        guard Self.isSafeDirectoryName(Self.inputDirectoryName(input, position: position)) else {
            throw SubmissionError(
                code: "invalid_input_id",
                message: "\(name) id '\(input.id)' may hold only letters, digits, ':', '.', '_' and '-'")
        }
        let files = input.url.count + input.path.count
        if files == 0, input.remote != nil {
            try validateRemote(input.remote, name: name)
            return
        }
        guard files > 0 else {
            throw SubmissionError(code: "missing_input_source", message: "\(name) needs 'url', 'path' or 'remote'")
        }
        guard files <= limits.maxFilesPerInput else {
            throw SubmissionError(
                code: "too_many_files",
                message: "\(name) names \(files) files; the limit is \(limits.maxFilesPerInput)")
        }
        for url in input.url {
            try checkField(url, name: "\(name) url")
            guard Self.isHTTPURL(url) else {
                throw SubmissionError(
                    code: "invalid_input_url",
                    message: "\(name) url '\(url.prefix(200))' is not an http or https URL")
            }
        }
        for path in input.path {
            try checkField(path, name: "\(name) path")
            guard Self.isContainedRelativePath(path) else {
                throw SubmissionError(
                    code: "input_path_outside_data_dir",
                    message: "\(name) path '\(path.prefix(200))' must be a relative path inside the data directory")
            }
        }
        if !input.checksum.isEmpty {
            guard input.checksum.count == files else {
                throw SubmissionError(
                    code: "invalid_checksum",
                    message: "\(name) has \(input.checksum.count) checksums for \(files) files")
            }
            for checksum in input.checksum where Self.sha256Hex(checksum) == nil {
                throw SubmissionError(
                    code: "invalid_checksum", message: "\(name) checksum '\(checksum.prefix(80))' is not sha-256 hex")
            }
        }
    }

    /// Ocean's `remote`: `txId` and `serviceId` (strings) at least; `serviceEndpoint`, if given, http(s).
    private func validateRemote(_ remote: JSONValue?, name: String) throws(SubmissionError) {
        guard case .object(let fields) = remote, let txID = fields["txId"]?.stringValue,
            let serviceID = fields["serviceId"]?.stringValue, !txID.isEmpty, !serviceID.isEmpty
        else {
            throw SubmissionError(
                code: "invalid_remote", message: "\(name) 'remote' needs 'txId' and 'serviceId' strings")
        }
        try checkField(txID, name: "\(name) remote.txId")
        try checkField(serviceID, name: "\(name) remote.serviceId")
        if let endpoint = fields["serviceEndpoint"] {
            guard let text = endpoint.stringValue, Self.isHTTPURL(text) else {
                throw SubmissionError(
                    code: "invalid_remote", message: "\(name) remote.serviceEndpoint must be an http(s) URL")
            }
            try checkField(text, name: "\(name) remote.serviceEndpoint")
        }
    }

    private func checkField(_ value: String, name: String) throws(SubmissionError) {
        guard value.utf8.count <= limits.maxFieldBytes else {
            throw SubmissionError(
                code: "field_too_long", message: "\(name) is longer than the limit of \(limits.maxFieldBytes) bytes")
        }
    }

    // MARK: Rules shared with the runtime

    /// Ocean puts dataset files under `/data/inputs/<did without "did:op:">/<n>`; an input without an id
    /// uses its position.
    package static func inputDirectoryName(_ input: Workflow.Input, position: Int) -> String {
        var id = input.id
        if id.hasPrefix("did:op:") { id.removeFirst("did:op:".count) }
        return id.isEmpty ? String(position) : id
    }

    static func isSafeDirectoryName(_ name: String) -> Bool {
        name != "." && name != ".." && !name.isEmpty
            && name.unicodeScalars.allSatisfy {
                (("a"..."z").contains($0) || ("A"..."Z").contains($0)
                    || ("0"..."9").contains($0) || $0 == ":" || $0 == "." || $0 == "_" || $0 == "-")
            }
    }

    package static func isHTTPURL(_ url: String) -> Bool {
        let lower = url.lowercased()
        return (lower.hasPrefix("http://") || lower.hasPrefix("https://")) && url.count > "https://".count - 1
            && !url.contains(where: \.isWhitespace)
    }

    /// A path that cannot leave the directory it is resolved against (symbolic links are checked again when
    /// the file is opened).
    package static func isContainedRelativePath(_ path: String) -> Bool {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.contains("\0") else { return false }
        return !path.split(separator: "/", omittingEmptySubsequences: true).contains("..")
    }

    /// The 64 hex digits of a sha-256 written as "sha256:<hex>" or bare hex, lowercased; nil if malformed.
    package static func sha256Hex(_ checksum: String) -> String? {
        var hex = checksum.lowercased()
        if hex.hasPrefix("sha256:") { hex.removeFirst("sha256:".count) }
        guard hex.utf8.count == 64, hex.unicodeScalars.allSatisfy(\.properties.isASCIIHexDigit) else { return nil }
        return hex
    }
}
