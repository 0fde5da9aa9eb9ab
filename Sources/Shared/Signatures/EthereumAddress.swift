/// A 20-byte Ethereum account address: the last 20 bytes of keccak-256 of the uncompressed public key.
///
/// Parsing accepts 40 hex digits with or without `0x`. All-lowercase and all-uppercase text carries no
/// checksum and is accepted as is; mixed-case text must match its EIP-55 checksum, because a wrong case
/// there means a mistyped address. `description` is the EIP-55 form; compare addresses as values, never
/// as strings.
package struct EthereumAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    package static let byteCount = 20

    /// The 20 address bytes.
    package let bytes: [UInt8]

    package init(bytes: [UInt8]) throws(SignatureError) {
        guard bytes.count == Self.byteCount else {
            throw SignatureError(
                code: .wrongLength, message: "an address has 20 bytes, not \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// The address of an uncompressed public key's 64 coordinate bytes (X ‖ Y, without the 0x04 tag).
    init(publicKeyCoordinates: some Sequence<UInt8>) {
        self.bytes = Array(Keccak256.hash(publicKeyCoordinates).suffix(Self.byteCount))
    }

    package init(_ text: some StringProtocol) throws(SignatureError) {
        var digits = Substring(text)
        if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
            digits = digits.dropFirst(2)
        }
        guard digits.utf8.count == 2 * Self.byteCount else {
            throw SignatureError(
                code: .wrongLength, message: "an address has 40 hex digits, not \(digits.utf8.count)")
        }
        try self.init(bytes: Hex.decode(digits))
        let hasLower = digits.utf8.contains { (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        let hasUpper = digits.utf8.contains { (UInt8(ascii: "A")...UInt8(ascii: "F")).contains($0) }
        if hasLower && hasUpper && digits != checksummedDigits {
            throw SignatureError(
                code: .invalidChecksum,
                message: "address \(text) does not match its EIP-55 checksum; expected \(description)")
        }
    }

    /// EIP-55 mixed-case form with `0x`.
    package var description: String { "0x" + checksummedDigits }

    /// `0x` and 40 lowercase digits: a stable key for storage (nonces per signer) and for logs.
    package var lowercased: String { "0x" + Hex.encode(bytes) }

    /// EIP-55: a letter digit is uppercase when the matching nibble of keccak-256(lowercase hex) is ≥ 8.
    private var checksummedDigits: String {
        let lower = Array(Hex.encode(bytes).utf8)
        let hash = Keccak256.hash(lower)
        var digits = lower
        for index in digits.indices where digits[index] >= UInt8(ascii: "a") {
            let nibble = index.isMultiple(of: 2) ? hash[index / 2] >> 4 : hash[index / 2] & 0x0f
            if nibble >= 8 {
                digits[index] -= UInt8(ascii: "a") - UInt8(ascii: "A")
            }
        }
        return String(decoding: digits, as: UTF8.self)
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            try self.init(text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.message)
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
