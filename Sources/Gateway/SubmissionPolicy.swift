import Crypto
import Domain
import Foundation

/// The environment's policy beyond the workflow's shape (docs/architecture.md, "Authorization and policy"): the chains it serves and the published
/// algorithms it trusts. Raw algorithms are governed by `allowRawAlgorithm` alone (checked by the validator).
enum SubmissionPolicy {
    static func check(_ workflow: Workflow, environment: ComputeEnvironment, chainID: Int?) throws(SubmissionError) {
        if !environment.chainIds.isEmpty {
            guard let chainID, environment.chainIds.contains(chainID) else {
                throw SubmissionError(
                    code: "invalid_chain",
                    message: "environment '\(environment.id)' serves chains "
                        + environment.chainIds.map(String.init).joined(separator: ", ")
                        + (chainID.map { ", not \($0)" } ?? "; give chainId"))
            }
        }
        guard let algorithm = workflow.stage?.algorithm, !environment.trustedAlgorithms.isEmpty,
            (algorithm.rawcode ?? "").isEmpty
        else { return }
        let did = algorithm.id ?? ""
        let filesChecksum = algorithm.checksum.flatMap(WorkflowValidator.sha256Hex) ?? ""
        let containerChecksum = containerSectionChecksum(algorithm.container)
        let trusted = environment.trustedAlgorithms.contains {
            glob($0.did, matches: did) && glob($0.filesChecksum.lowercased(), matches: filesChecksum)
                && glob($0.containerSectionChecksum.lowercased(), matches: containerChecksum)
        }
        guard trusted else {
            throw SubmissionError(
                code: "not_trusted_algo",
                message: "algorithm '\(did.isEmpty ? "(no did)" : String(did.prefix(120)))' with these checksums "
                    + "is not trusted by environment '\(environment.id)'")
        }
    }

    /// Ocean's `containerSectionChecksum`: sha-256 hex of the entrypoint followed by the container checksum.
    static func containerSectionChecksum(_ container: Workflow.Container?) -> String {
        let text = (container?.entrypoint ?? "") + (container?.checksum ?? "")
        return SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// `*` matches any run of characters (including none); everything else matches itself.
    static func glob(_ pattern: String, matches text: String) -> Bool {
        let pattern = Array(pattern.utf8)
        let text = Array(text.utf8)
        var p = 0
        var t = 0
        var star: Int?
        var resume = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == UInt8(ascii: "*") {
                star = p
                resume = t
                p += 1
            } else if p < pattern.count, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if let star {
                p = star + 1
                resume += 1
                t = resume
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}
