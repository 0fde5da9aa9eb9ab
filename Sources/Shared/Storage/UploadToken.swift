import Crypto
import Foundation

/// Random bearer secrets of the form `<prefix>` + 43 characters of base64url (32 random bytes). Only their sha-256
/// is ever stored, so a database leak does not leak a usable secret, and lookups go by hash.
package struct SecretTokenFormat: Sendable {
    package let prefix: String

    package init(prefix: String) {
        self.prefix = prefix
    }

    package func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return prefix
            + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    package func hash(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(token.utf8)))
    }

    /// A token `generate()` could have made; anything else is refused before a database lookup.
    package func isWellFormed(_ token: String) -> Bool {
        token.hasPrefix(prefix) && token.utf8.count == prefix.utf8.count + 43
            && token.utf8.dropFirst(prefix.utf8.count).allSatisfy {
                ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D
                    || $0 == 0x5F
            }
    }
}

/// The secret that lets one attempt's publish pod upload that attempt's results to the gateway
/// (`PUT /internal/v1/jobs/{id}/attempts/{attempt}/results/...`). The executor generates it, puts it in the job's
/// Secret and registers only its hash (`PostgresJobStore.registerUploadToken`).
package enum UploadToken {
    package static let format = SecretTokenFormat(prefix: "c2dup_")
    package static var prefix: String { format.prefix }
    package static func generate() -> String { format.generate() }
    package static func hash(_ token: String) -> [UInt8] { format.hash(token) }
    package static func isWellFormed(_ token: String) -> Bool { format.isWellFormed(token) }
}
