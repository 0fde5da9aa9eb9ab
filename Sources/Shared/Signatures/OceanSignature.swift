/// Ocean Protocol's request signature, as Ocean's Provider makes and checks it (docs/ocean-operator-service.md,
/// "Authentication"), with the nonce included — Ocean's operator-service recovers from the message *without* the
/// nonce and so never gets the Provider's address back.
///
/// The exact bytes, for `message` = the endpoint's fields concatenated (for the Provider's calls to the
/// operator-service: `owner`, or `owner + jobId`) and `nonce` = the nonce exactly as sent (Python's
/// `str(nonce)`, usually `time.time_ns()` in decimal):
///
///     payload     = UTF-8(message + nonce)                       (no separator)
///     payloadHash = keccak256(payload)                           (32 bytes)
///     signedHash  = keccak256(0x19 ‖ "Ethereum Signed Message:\n32" ‖ payloadHash)
///                   (EIP-191 personal_sign over the 32 *raw* hash bytes, hence the length "32";
///                   not over the 66-character hex text of the hash)
///     signature   = r (32) ‖ s (32) ‖ v (1), v ∈ {0, 1} as the Provider's `sign_message` writes it,
///                   or {27, 28} as wallets (ethers' signMessage) write it; hex with or without `0x`
///
/// The signer is the address that ecrecover(signedHash, signature) yields. Deciding whether that
/// address may call, and whether the nonce is fresh, is the caller's job.
package enum OceanSignature {
    /// keccak256(UTF-8(message + nonce)): the 32 bytes the signer personal-signs.
    package static func payloadHash(message: String, nonce: String) -> [UInt8] {
        var hasher = Keccak256()
        hasher.update(message.utf8)
        hasher.update(nonce.utf8)
        return hasher.finalize()
    }

    /// The digest the ECDSA signature is over: EIP-191 personal-message hash of `payloadHash`.
    package static func signedHash(message: String, nonce: String) -> [UInt8] {
        EIP191.personalMessageHash(payloadHash(message: message, nonce: nonce))
    }

    /// The address that signed `message + nonce`; throws when the signature is malformed or malleable.
    package static func verify(
        message: String, nonce: String, signatureHex: String, using curve: Secp256k1 = .shared
    ) throws(SignatureError) -> EthereumAddress {
        let signature = try Hex.decode(signatureHex)
        return try curve.recover(hash: signedHash(message: message, nonce: nonce), signature: signature)
    }

    /// `0x` and 130 lowercase hex digits with v = 0 or 1, byte for byte what the Provider's own
    /// `sign_message` writes; for calls c2d makes itself, such as fetching `remote` inputs from a Provider.
    /// Not v = 27/28: as read, the Provider's current `verify_signature` compares the text it receives with
    /// eth_keys' re-encoding (`0x`, lowercase, v = 0/1) and rejects any other spelling.
    package static func sign(
        message: String, nonce: String, privateKey: [UInt8], using curve: Secp256k1 = .shared
    ) throws(SignatureError) -> String {
        var signature = try curve.sign(hash: signedHash(message: message, nonce: nonce), privateKey: privateKey)
        signature[64] -= 27
        return "0x" + Hex.encode(signature)
    }
}
