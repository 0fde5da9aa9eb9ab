import Foundation
import Persistence
import Signatures

/// Checks the Provider's `providerSignature` the way Ocean means it and its operator-service does not
/// (ocean-c2d.md §6.2, DESIGN §5): the signature is over `message + nonce`, the signer must be an allowed
/// provider when a list is configured, and each signer's nonces must strictly increase (kept in Postgres, so a
/// replay fails on every gateway replica).
struct OceanAuthenticator: Sendable {
    let allowedProviders: Set<String>
    let store: PostgresJobStore

    /// Returns the signer's address (lowercase). Order of refusals: missing signature (400), unrecoverable
    /// signature (400 `Failed to recover address`), signer not allowed (401), malformed nonce (400), nonce not
    /// greater than the signer's last (400).
    func authenticate(signature: OceanValue?, message: String, nonce: OceanValue?) async throws -> String {
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
        if !allowedProviders.isEmpty && !allowedProviders.contains(signer) {
            throw OceanError.notAuthorized(signature: signatureText, message: message + nonceText, signer: signer)
        }
        guard Self.isDecimal(nonceText) else { throw OceanError.invalidNonce(nonceText) }
        let fresh: Bool
        do {
            fresh = try await store.acceptNonce(signer: signer, nonce: nonceText)
        } catch is PostgresError {
            throw OceanError.unavailable
        }
        guard fresh else { throw OceanError.staleNonce(nonceText, signer: signer) }
        return signer
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
