/// Hexadecimal text as Ethereum tools write it: an optional `0x`/`0X` prefix, digits of either case.
package enum Hex {
    /// Decodes `text`; an empty string (or a bare `0x`) is zero bytes.
    ///
    /// Error messages give the position of the first bad character, never the text itself: the text
    /// may be a private key.
    package static func decode(_ text: some StringProtocol) throws(SignatureError) -> [UInt8] {
        var digits = Substring(text).utf8[...]
        if digits.starts(with: "0x".utf8) || digits.starts(with: "0X".utf8) {
            digits = digits.dropFirst(2)
        }
        guard digits.count.isMultiple(of: 2) else {
            throw SignatureError(code: .malformedHex, message: "hex text has an odd number of digits")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var high: UInt8?
        for (offset, character) in digits.enumerated() {
            guard let nibble = nibble(character) else {
                throw SignatureError(
                    code: .malformedHex, message: "hex text has a non-hex character at digit \(offset + 1)")
            }
            if let value = high {
                bytes.append(value << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return bytes
    }

    /// Lowercase digits, no prefix.
    package static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let alphabet = Array("0123456789abcdef".utf8)
        var digits: [UInt8] = []
        digits.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            digits.append(alphabet[Int(byte >> 4)])
            digits.append(alphabet[Int(byte & 0x0f)])
        }
        return String(decoding: digits, as: UTF8.self)
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
