extension StringProtocol {
    /// Whether the text is one or more of the ASCII digits 0-9 and nothing else: no sign, space or other script's
    /// digits, which `Int(_:)` or `Character.isNumber` would also take.
    package var isASCIIDigits: Bool {
        !isEmpty && utf8.allSatisfy { (0x30...0x39).contains($0) }
    }
}
