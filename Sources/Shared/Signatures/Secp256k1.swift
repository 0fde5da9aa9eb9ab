import CSecp256k1

/// ECDSA over secp256k1 through libsecp256k1, in Ethereum's conventions: 65-byte signatures r ‖ s ‖ v,
/// public keys identified by their `EthereumAddress`.
///
/// Create one instance and share it (`Secp256k1.shared`): creating and randomizing a context costs far
/// more than a verification.
package final class Secp256k1: Sendable {
    package static let shared = Secp256k1()

    package static let signatureLength = 65
    package static let hashLength = 32
    package static let privateKeyLength = 32

    /// The curve order n, big-endian.
    static let order: [UInt8] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
        0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
    ]
    /// ⌊n / 2⌋, big-endian: the largest `s` EIP-2 allows.
    static let halfOrder: [UInt8] = [
        0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0x5D, 0x57, 0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
    ]

    /// Owns the one libsecp256k1 context.
    ///
    /// `@unchecked Sendable` because libsecp256k1 documents that a context is safe to use from many
    /// threads at once as long as nothing mutates it; the only mutating calls (`context_randomize`,
    /// `context_set_*_callback`, `context_destroy`) happen in `init` and `deinit`, where this box is
    /// not shared. Every other call takes the context as `const`.
    private final class Context: @unchecked Sendable {
        let pointer: OpaquePointer

        init() {
            // CONTEXT_NONE is the only non-deprecated flag since 0.2: it enables signing and verifying.
            guard let pointer = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_NONE)) else {
                fatalError("secp256k1_context_create failed: out of memory")
            }
            // Randomizing blinds the signing and key-generation computations against side channels.
            var seed = [UInt8](repeating: 0, count: 32)
            var generator = SystemRandomNumberGenerator()
            for index in seed.indices {
                seed[index] = generator.next()
            }
            guard secp256k1_context_randomize(pointer, seed) == 1 else {
                fatalError("secp256k1_context_randomize failed")
            }
            self.pointer = pointer
        }

        deinit {
            secp256k1_context_destroy(pointer)
        }
    }

    private let context = Context()

    package init() {}

    /// The address whose key made `signature` over the 32-byte `hash`.
    ///
    /// `signature` is r ‖ s ‖ v with v ∈ {0, 1, 27, 28}; a high `s` (EIP-2 malleability), a zero or
    /// out-of-range `r` or `s`, and any other `v` are rejected before recovery.
    package func recover(hash: [UInt8], signature: [UInt8]) throws(SignatureError) -> EthereumAddress {
        guard hash.count == Self.hashLength else {
            throw SignatureError(code: .wrongLength, message: "a message hash has 32 bytes, not \(hash.count)")
        }
        let (compact, recoveryID) = try Self.validate(signature)
        var parsed = secp256k1_ecdsa_recoverable_signature()
        guard secp256k1_ecdsa_recoverable_signature_parse_compact(context.pointer, &parsed, compact, recoveryID) == 1
        else {
            throw SignatureError(code: .invalidSignature, message: "r or s is not a valid scalar")
        }
        var publicKey = secp256k1_pubkey()
        guard secp256k1_ecdsa_recover(context.pointer, &publicKey, &parsed, hash) == 1 else {
            throw SignatureError(code: .recoveryFailed, message: "no public key recovers from this signature")
        }
        return address(of: publicKey)
    }

    /// A deterministic (RFC 6979) signature r ‖ s ‖ v over the 32-byte `hash`, with low `s` and v ∈ {27, 28}.
    package func sign(hash: [UInt8], privateKey: [UInt8]) throws(SignatureError) -> [UInt8] {
        guard hash.count == Self.hashLength else {
            throw SignatureError(code: .wrongLength, message: "a message hash has 32 bytes, not \(hash.count)")
        }
        try validate(privateKey: privateKey)
        var signature = secp256k1_ecdsa_recoverable_signature()
        // A nil nonce function selects libsecp256k1's default, RFC 6979 with HMAC-SHA256.
        guard secp256k1_ecdsa_sign_recoverable(context.pointer, &signature, hash, privateKey, nil, nil) == 1 else {
            throw SignatureError(code: .invalidPrivateKey, message: "signing failed")
        }
        var output = [UInt8](repeating: 0, count: Self.signatureLength)
        var recoveryID: Int32 = 0
        _ = secp256k1_ecdsa_recoverable_signature_serialize_compact(
            context.pointer, &output, &recoveryID, &signature)
        output[64] = 27 + UInt8(recoveryID)
        return output
    }

    /// The address of the key pair whose private half is `privateKey`.
    package func address(privateKey: [UInt8]) throws(SignatureError) -> EthereumAddress {
        try validate(privateKey: privateKey)
        var publicKey = secp256k1_pubkey()
        guard secp256k1_ec_pubkey_create(context.pointer, &publicKey, privateKey) == 1 else {
            throw SignatureError(code: .invalidPrivateKey, message: "no public key for this private key")
        }
        return address(of: publicKey)
    }

    private func validate(privateKey: [UInt8]) throws(SignatureError) {
        // The messages say nothing about the key beyond its length.
        guard privateKey.count == Self.privateKeyLength else {
            throw SignatureError(
                code: .invalidPrivateKey, message: "a private key has 32 bytes, not \(privateKey.count)")
        }
        guard secp256k1_ec_seckey_verify(context.pointer, privateKey) == 1 else {
            throw SignatureError(
                code: .invalidPrivateKey, message: "the private key is zero or not below the curve order")
        }
    }

    private func address(of publicKey: secp256k1_pubkey) -> EthereumAddress {
        var publicKey = publicKey
        var serialized = [UInt8](repeating: 0, count: 65)
        var length = serialized.count
        _ = secp256k1_ec_pubkey_serialize(
            context.pointer, &serialized, &length, &publicKey, UInt32(SECP256K1_EC_UNCOMPRESSED))
        // Drop the 0x04 tag: the address hashes the 64 coordinate bytes only.
        return EthereumAddress(publicKeyCoordinates: serialized[1...])
    }

    /// Checks a 65-byte r ‖ s ‖ v signature and returns r ‖ s with the recovery id (0 or 1).
    static func validate(_ signature: [UInt8]) throws(SignatureError) -> (compact: [UInt8], recoveryID: Int32) {
        guard signature.count == signatureLength else {
            throw SignatureError(
                code: .wrongLength, message: "a signature has 65 bytes (r, s, v), not \(signature.count)")
        }
        let recoveryID: Int32
        switch signature[64] {
        case 0, 1: recoveryID = Int32(signature[64])
        case 27, 28: recoveryID = Int32(signature[64]) - 27
        case let v:
            // Ids 2 and 3 (r ≥ n − p) and EIP-155 chain-encoded values never occur in message signatures.
            throw SignatureError(code: .invalidRecoveryID, message: "v is \(v); expected 0, 1, 27 or 28")
        }
        let r = signature[0..<32]
        let s = signature[32..<64]
        guard !isZero(r), !isZero(s), isLess(r, than: order), isLess(s, than: order) else {
            throw SignatureError(code: .invalidSignature, message: "r and s must be in 1 ..< n")
        }
        guard !isLess(halfOrder[...], than: s) else {
            throw SignatureError(code: .highS, message: "s is above n/2: a malleable signature (EIP-2)")
        }
        return (Array(signature[0..<64]), recoveryID)
    }

    private static func isZero(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.allSatisfy { $0 == 0 }
    }

    /// Big-endian comparison of two 32-byte numbers.
    private static func isLess(_ lhs: ArraySlice<UInt8>, than rhs: some Collection<UInt8>) -> Bool {
        for (left, right) in zip(lhs, rhs) where left != right {
            return left < right
        }
        return false
    }
}
