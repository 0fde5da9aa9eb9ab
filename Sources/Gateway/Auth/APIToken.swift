import Foundation
import Storage

/// What an API token allows (docs/architecture.md, "Authorization and policy"). Scopes do not imply each other; a token lists each one it needs.
package enum APIScope: String, Sendable, Hashable, CaseIterable, Codable {
    /// Create jobs and batches owned by the token's owner, and stop them.
    case submit
    /// Read the owner's jobs (and jobs listing the owner as a viewer): status, events, logs, results.
    case read
    /// Operators: see and stop every job, follow the global event stream. Result contents stay private.
    case operate
    /// Everything on every job, results included.
    case admin

    /// Parses a comma-separated list such as `submit,read`; nil names the first unknown scope.
    package static func parseList(_ text: String) -> Result<Set<APIScope>, ParseError> {
        var scopes = Set<APIScope>()
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            guard let scope = APIScope(rawValue: part) else { return .failure(ParseError(unknown: part)) }
            scopes.insert(scope)
        }
        return .success(scopes)
    }

    package struct ParseError: Error, CustomStringConvertible {
        package var unknown: String
        package var description: String {
            "unknown scope '\(unknown)'; scopes are " + APIScope.allCases.map(\.rawValue).joined(separator: ", ")
        }
    }
}

/// Who is calling the native API, as established by the bearer token (or by `C2D_API_AUTH=none`).
package struct Principal: Sendable, Hashable {
    /// The jobs this caller owns carry this owner.
    package var owner: String
    package var scopes: Set<APIScope>
    /// The token used, for logs; nil when authentication is off.
    package var tokenID: UUID?

    package init(owner: String, scopes: Set<APIScope>, tokenID: UUID?) {
        self.owner = owner
        self.scopes = scopes
        self.tokenID = tokenID
    }

    /// With authentication off every caller may do everything, and names the owner in its requests.
    package static let unrestricted = Principal(owner: "anonymous", scopes: Set(APIScope.allCases), tokenID: nil)

    package var isUnrestricted: Bool { tokenID == nil && scopes.contains(.admin) }
    package func has(_ scope: APIScope) -> Bool { scopes.contains(scope) || scopes.contains(.admin) }

    /// Whether the caller may see a job at all (its status, events and logs list).
    package func canSee(owner jobOwner: String, viewers: [String]) -> Bool {
        if scopes.contains(.admin) || scopes.contains(.operate) { return true }
        return scopes.contains(.read) && isOwnerOrViewer(owner: jobOwner, viewers: viewers)
    }

    /// Whether the caller may download the job's results and log contents: owner, viewer or admin only.
    package func canReadResults(owner jobOwner: String, viewers: [String]) -> Bool {
        if scopes.contains(.admin) { return true }
        return scopes.contains(.read) && isOwnerOrViewer(owner: jobOwner, viewers: viewers)
    }

    /// Whether the caller may stop the job: its owner with `submit`, or an operator.
    package func canStop(owner jobOwner: String) -> Bool {
        if scopes.contains(.admin) || scopes.contains(.operate) { return true }
        return scopes.contains(.submit) && Self.sameOwner(jobOwner, owner)
    }

    private func isOwnerOrViewer(owner jobOwner: String, viewers: [String]) -> Bool {
        Self.sameOwner(jobOwner, owner) || viewers.contains { Self.sameOwner($0, owner) }
    }

    /// Ethereum addresses are compared without regard to case (checksummed or not); other owners exactly.
    static func sameOwner(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        return a.hasPrefix("0x") && b.hasPrefix("0x") && a.utf8.count == 42 && a.lowercased() == b.lowercased()
    }
}

/// Bearer tokens for the native API: `c2d_` + 43 characters of base64url (32 random bytes); only their hash is
/// stored.
package enum APIToken {
    package static let format = SecretTokenFormat(prefix: "c2d_")
    package static var prefix: String { format.prefix }
    package static func generate() -> String { format.generate() }
    package static func hash(_ token: String) -> [UInt8] { format.hash(token) }
    package static func isWellFormed(_ token: String) -> Bool { format.isWellFormed(token) }
}
