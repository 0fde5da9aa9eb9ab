import Domain
import Foundation
import Persistence
import Signatures

/// ocean-node's consumer authentication (docs/ocean-node.md, "Authentication"): the consumer signs
/// `consumerAddress + nonce + command`, the signer must be that consumer, and each consumer's nonces must strictly
/// increase (kept in Postgres with the Provider nonces, so a replay fails on every gateway). The signature is checked
/// before the nonce is recorded, so nobody can use up another consumer's nonces.
struct OceanNodeAuthenticator: Sendable {
    let store: PostgresJobStore

    /// Returns the consumer's address as sent. Refusals (401 unless noted): missing signature or nonce, a nonce that
    /// is not a whole number, a signature that is not the consumer's, a nonce not above the consumer's last; an
    /// address that is not one answers 400.
    func authenticate(
        consumer: String?, nonce: String?, signature: String?, command: OceanNodeSignature.Command
    ) async throws -> String {
        guard let consumer, (try? EthereumAddress(consumer)) != nil else { throw OceanNodeError.invalidConsumer }
        guard let signature, !signature.isEmpty, let nonce, !nonce.isEmpty else {
            throw OceanNodeError.unauthorized(
                "Invalid authentication, you need to provide either a signature and a nonce, or a token")
        }
        guard let canonical = Self.canonicalNonce(nonce) else {
            throw OceanNodeError.unauthorized("nonce: \(nonce.prefix(80)) is not a valid nonce")
        }
        let signed: Bool
        do {
            signed = try OceanNodeSignature.isSigned(
                by: consumer, nonce: canonical, command: command, signatureHex: signature)
        } catch {
            signed = false
        }
        guard signed else { throw OceanNodeError.unauthorized("consumer address and nonce signature mismatch") }
        let fresh: Bool
        do {
            fresh = try await store.acceptNonce(signer: consumer.lowercased(), nonce: canonical)
        } catch is PostgresError {
            throw OceanNodeError.unavailable
        }
        guard fresh else { throw OceanNodeError.unauthorized("nonce: \(canonical) is not a valid nonce") }
        return consumer
    }

    /// The nonce as ocean-node reads it (`parseInt`): decimal digits, leading zeros dropped; at most 30 digits so it
    /// always fits the nonce column. Nil when it is not a whole number.
    static func canonicalNonce(_ text: String) -> String? {
        let digits = text.trimmingCharacters(in: .whitespaces)
        guard digits.isASCIIDigits, digits.utf8.count <= 30 else { return nil }
        let trimmed = digits.drop { $0 == "0" }
        return trimmed.isEmpty ? "0" : String(trimmed)
    }
}
