/// EIP-191 version 0x45 ("personal_sign", `eth_sign`): the prefix keeps a signed message from ever being
/// a valid transaction.
package enum EIP191 {
    /// keccak-256("\u{19}Ethereum Signed Message:\n" ‖ decimal byte length of `message` ‖ `message`).
    package static func personalMessageHash(_ message: [UInt8]) -> [UInt8] {
        var hasher = Keccak256()
        hasher.update("\u{19}Ethereum Signed Message:\n\(message.count)".utf8)
        hasher.update(message)
        return hasher.finalize()
    }
}
