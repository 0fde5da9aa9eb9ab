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
            !part.isEmpty && part.utf8.count <= 64 && part.utf8.allSatisfy { (0x30...0x39).contains($0) }
        }
        return digits(parts[0]) && (parts.count == 1 || digits(parts[1]))
    }
}

extension GatewayConfiguration {
    /// Parses `C2D_ALLOWED_PROVIDERS`: comma-separated Ethereum addresses (EIP-55 checked when mixed case),
    /// returned lowercase. Throws with a message naming the bad entry.
    package static func parseAllowedProviders(_ text: String?) throws -> Set<String> {
        var addresses: Set<String> = []
        for entry in (text ?? "").split(separator: ",") {
            let trimmed = entry.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { continue }
            do {
                addresses.insert(try EthereumAddress(trimmed).lowercased)
            } catch {
                throw SettingError(description: "C2D_ALLOWED_PROVIDERS: '\(trimmed.prefix(64))' — \(error.message)")
            }
        }
        return addresses
    }

    /// The Ocean API's access from `C2D_ALLOWED_PROVIDERS` and `C2D_OCEAN_OPEN_DEVELOPMENT`: providers when
    /// listed, open when explicitly asked for (and no providers are listed), else disabled.
    package static func parseOceanAccess(allowedProviders: String?, openDevelopment: String?) throws -> OceanAccess {
        let providers = try parseAllowedProviders(allowedProviders)
        let open: Bool
        switch openDevelopment?.trimmingCharacters(in: .whitespaces) ?? "" {
        case "", "0": open = false
        case "1": open = true
        case let other:
            throw SettingError(description: "C2D_OCEAN_OPEN_DEVELOPMENT must be 1 or 0, not '\(other.prefix(32))'")
        }
        switch (providers.isEmpty, open) {
        case (false, true):
            throw SettingError(
                description:
                    "C2D_OCEAN_OPEN_DEVELOPMENT=1 and C2D_ALLOWED_PROVIDERS exclude each other: set one of them")
        case (false, false): return .providers(providers)
        case (true, true): return .openDevelopment
        case (true, false): return .disabled
        }
    }

    /// Parses `C2D_OPERATOR_ADDRESS`; empty means none. Returned in EIP-55 form.
    package static func parseOperatorAddress(_ text: String?) throws -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        do {
            return try EthereumAddress(text).description
        } catch {
            throw SettingError(description: "C2D_OPERATOR_ADDRESS: '\(text.prefix(64))' — \(error.message)")
        }
    }

    /// A setting the gateway cannot use.
    package struct SettingError: Error, CustomStringConvertible, Sendable {
        package var description: String
    }
}
