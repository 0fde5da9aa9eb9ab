import Domain
import Foundation
import Persistence
import Signatures

/// Who may use Ocean's operator-service API. It trusts the Provider that signs a call to speak for the consumer
/// it names (`owner`), so only known Providers may sign: the API is off unless they are configured.
package enum OceanAccess: Sendable, Hashable {
    /// The default: every Ocean route answers 404 `ocean_api_disabled`.
    case disabled
    /// Signatures of these Provider addresses (lowercase `0x…`) are accepted; they see every Ocean job.
    /// `C2D_ALLOWED_PROVIDERS`.
    case providers(Set<String>)
    /// Development only: any key's signature is accepted, and a signer sees only the Ocean jobs it started
    /// itself. Logged as a warning at start. `C2D_OCEAN_OPEN_DEVELOPMENT=1`.
    case openDevelopment

    package var isEnabled: Bool { self != .disabled }
}

/// An authenticated Ocean API call: who signed it, and which jobs it may therefore see.
struct OceanCaller: Sendable {
    /// The recovered signer (lowercase `0x…`).
    var signer: String
    var scope: PostgresJobStore.OceanScope
}

/// Checks the Provider's `providerSignature` the way Ocean means it and its operator-service does not
/// (docs/operations.md, "Ocean API threat model"): the signature is over `message + nonce`, the signer must be an
/// allowed Provider, and each signer's nonces must strictly increase (kept in Postgres, so a replay fails on every
/// gateway replica).
struct OceanAuthenticator: Sendable {
    let access: OceanAccess
    let store: PostgresJobStore

    /// Returns the caller. Order of refusals: missing signature (400), unrecoverable signature (400 `Failed to
    /// recover address`), signer not allowed (401), malformed nonce (400), nonce not greater than the signer's last
    /// (400). The nonce is checked only for an allowed signer, so strangers cannot fill the nonce table.
    func authenticate(signature: OceanValue?, message: String, nonce: OceanValue?) async throws -> OceanCaller {
        guard let signature, !signature.isFalsy else { throw OceanError.signatureRequired }
        let signatureText = signature.text
        let nonceText = nonce?.text ?? "None"
        let signer: String
        do {
            signer = try OceanSignature.verify(message: message, nonce: nonceText, signatureHex: signatureText)
                .lowercased
        } catch {
            throw OceanError.recoveryFailed
        }
        let scope: PostgresJobStore.OceanScope
        switch access {
        case .disabled:
            throw OceanError.disabled
        case .providers(let allowed):
            guard allowed.contains(signer) else {
                throw OceanError.notAuthorized(signature: signatureText, message: message + nonceText, signer: signer)
            }
            scope = .init(signer: nil)
        case .openDevelopment:
            scope = .init(signer: signer)
        }
        guard Self.isDecimal(nonceText) else { throw OceanError.invalidNonce(nonceText) }
        let fresh: Bool
        do {
            fresh = try await store.acceptNonce(signer: signer, nonce: nonceText)
        } catch is PostgresError {
            throw OceanError.unavailable
        }
        guard fresh else { throw OceanError.staleNonce(nonceText, signer: signer) }
        return OceanCaller(signer: signer, scope: scope)
    }

    /// Digits with an optional fraction, as the Provider writes nonces (`time.time_ns()`, or a millisecond
    /// timestamp float); bounded so it always fits Postgres's numeric.
    static func isDecimal(_ text: String) -> Bool {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        func digits(_ part: Substring) -> Bool {
            part.isASCIIDigits && part.utf8.count <= 64
        }
        return digits(parts[0]) && (parts.count == 1 || digits(parts[1]))
    }
}
