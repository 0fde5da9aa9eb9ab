/// The consumer signature of ocean-node's compute API (docs/ocean-node.md, "Authentication"). Unlike the Provider's
/// scheme (``OceanSignature``), the message names the command, so a signature for one call cannot stand in for
/// another, and the signer must be the consumer the request names:
///
///     message     = consumerAddress ‖ nonce ‖ command      (UTF-8, no separators; e.g. "0xAb…12" "1700000000000"
///                                                           "freeStartCompute")
///     messageHash = keccak256(message)                      (32 bytes)
///     signed      = EIP-191 personal_sign over messageHash, either over its 32 raw bytes (what ethers'
///                   `signMessage(getBytes(hash))` does) or over its 66-character hex text "0x…" (what
///                   `signMessage(hash)` does with the string); ocean-node accepts both, and so does c2d.
///
/// The consumer address is compared without regard to case. Deciding whether the nonce is fresh is the caller's job.
package enum OceanNodeSignature {
    /// The commands ocean-node signs, by its protocol names.
    package enum Command: String, Sendable, CaseIterable {
        case startCompute
        case freeStartCompute
        case stopCompute
        case getComputeStatus
        case getComputeResult
        case getComputeStreamableLogs
        case initializeCompute
    }

    package static func message(consumer: String, nonce: String, command: Command) -> String {
        consumer + nonce + command.rawValue
    }

    /// keccak256 of the message.
    package static func messageHash(consumer: String, nonce: String, command: Command) -> [UInt8] {
        var hasher = Keccak256()
        hasher.update(message(consumer: consumer, nonce: nonce, command: command).utf8)
        return hasher.finalize()
    }

    /// Whether `signatureHex` is the consumer's signature of the message, in either of the two accepted forms.
    /// `consumer` is the address exactly as the request spells it (its text is part of the message). Throws for an
    /// address or signature that is not one at all (wrong length, not hex, bad checksum, malleable).
    package static func isSigned(
        by consumer: String, nonce: String, command: Command, signatureHex: String, using curve: Secp256k1 = .shared
    ) throws(SignatureError) -> Bool {
        let address = try EthereumAddress(consumer)
        let signature = try Hex.decode(signatureHex)
        let hash = messageHash(consumer: consumer, nonce: nonce, command: command)
        let overBytes = try curve.recover(hash: EIP191.personalMessageHash(hash), signature: signature)
        if overBytes == address { return true }
        let hexText = Array(("0x" + Hex.encode(hash)).utf8)
        let overText = try curve.recover(hash: EIP191.personalMessageHash(hexText), signature: signature)
        return overText == address
    }

    /// Signs as a wallet does (over the 32 raw bytes, v = 27/28): for c2d's own tools and tests of the verifier.
    package static func sign(
        consumer: String, nonce: String, command: Command, privateKey: [UInt8], using curve: Secp256k1 = .shared
    ) throws(SignatureError) -> String {
        let hash = messageHash(consumer: consumer, nonce: nonce, command: command)
        return "0x" + Hex.encode(try curve.sign(hash: EIP191.personalMessageHash(hash), privateKey: privateKey))
    }
}
