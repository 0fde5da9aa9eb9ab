/// A failure to parse, verify, recover or produce a signature: a stable machine-readable `code` and a
/// human `message`. Messages never contain private keys (nor any input that might be one).
package struct SignatureError: Error, CustomStringConvertible, Sendable, Hashable {
    /// What went wrong, as a stable value to branch on.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case malformedHex = "malformed_hex"
            case wrongLength = "wrong_length"
            case invalidRecoveryID = "invalid_recovery_id"
            case highS = "high_s"
            case invalidSignature = "invalid_signature"
            case recoveryFailed = "recovery_failed"
            case invalidPrivateKey = "invalid_private_key"
            case invalidChecksum = "invalid_checksum"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Text that is not hexadecimal (odd length or a non-hex character).
        package static let malformedHex = Code(.malformedHex)
        /// A signature, hash, key or address of the wrong number of bytes.
        package static let wrongLength = Code(.wrongLength)
        /// The signature's last byte `v` is not 0, 1, 27 or 28.
        package static let invalidRecoveryID = Code(.invalidRecoveryID)
        /// `s` is in the upper half of the curve order: a malleated signature (EIP-2).
        package static let highS = Code(.highS)
        /// `r` or `s` is zero or not below the curve order.
        package static let invalidSignature = Code(.invalidSignature)
        /// No public key can be recovered from this signature and hash.
        package static let recoveryFailed = Code(.recoveryFailed)
        /// A private key that is not 32 bytes, is zero, or is not below the curve order.
        package static let invalidPrivateKey = Code(.invalidPrivateKey)
        /// A mixed-case address whose letter cases do not match its EIP-55 checksum (a likely typo).
        package static let invalidChecksum = Code(.invalidChecksum)

        package var description: String { base.rawValue }
    }

    package var code: Code
    package var message: String

    package init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { "\(code): \(message)" }
}
