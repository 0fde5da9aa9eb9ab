import Domain
import Foundation

/// Conversions between Swift values and Postgres's text formats. Connections are set to `TimeZone = UTC`,
/// `DateStyle = ISO` and `bytea_output = hex`, which is what the parsers here expect (they also accept any
/// numeric UTC offset).
enum PostgresText {
    // MARK: Numbers

    static func encode(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        return "\(value)"  // shortest representation that round-trips
    }

    static func decodeDouble(_ text: String) -> Double? {
        switch text {
        case "NaN": .nan
        case "Infinity": .infinity
        case "-Infinity": -.infinity
        default: Double(text)
        }
    }

    // MARK: bytea

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func encodeHex(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(2 + bytes.count * 2)
        out += [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes bytea's hex output format (`\x0a0b…`).
    static func decodeHex(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0
        else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(utf8.count / 2 - 1)
        var index = 2
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    // MARK: timestamptz

    /// `YYYY-MM-DD HH:MM:SS.ffffff+00`, rounded to the microsecond (Postgres's precision).
    static func encode(_ date: Date) -> String {
        if date == .distantFuture { return "infinity" }
        if date == .distantPast { return "-infinity" }
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let (days, microsOfDay) = floorDivide(micros, 86_400_000_000)
        let (year, month, day) = CivilDate.civil(fromDays: days)
        let seconds = microsOfDay / 1_000_000
        let fraction = microsOfDay % 1_000_000
        func pad(_ value: Int64, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2)) "
            + "\(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):\(pad(seconds % 60, 2)).\(pad(fraction, 6))+00"
    }

    /// Parses timestamptz/timestamp/date output in the ISO style: `2024-05-01 12:00:00.123456+00`, with an
    /// optional fraction, an optional `±HH[:MM[:SS]]` offset (none means UTC), and `infinity`/`-infinity`
    /// (mapped to `Date.distantFuture`/`.distantPast`). BC dates are rejected.
    static func decodeDate(_ text: String) -> Date? {
        if text == "infinity" { return .distantFuture }
        if text == "-infinity" { return .distantPast }
        var scanner = ByteScanner(Array(text.utf8))
        guard let year = scanner.number(minDigits: 4), scanner.skip("-"),
            let month = scanner.number(minDigits: 2, maxDigits: 2), scanner.skip("-"),
            let day = scanner.number(minDigits: 2, maxDigits: 2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var micros: Int64 = 0
        var offsetSeconds: Int64 = 0
        if scanner.skip(" ") || scanner.skip("T") {
            guard let hour = scanner.number(minDigits: 2, maxDigits: 2), scanner.skip(":"),
                let minute = scanner.number(minDigits: 2, maxDigits: 2), scanner.skip(":"),
                let second = scanner.number(minDigits: 2, maxDigits: 2),
                hour <= 24, minute < 60, second < 61
            else { return nil }
            micros = ((hour * 60 + minute) * 60 + second) * 1_000_000
            if scanner.skip(".") {
                var scale: Int64 = 100_000
                var digits = 0
                while let digit = scanner.digit() {
                    micros += digit * scale
                    scale /= 10
                    digits += 1
                }
                guard digits > 0 else { return nil }
            }
            if let sign = scanner.peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                scanner.advance()
                guard let hours = scanner.number(minDigits: 2, maxDigits: 2) else { return nil }
                var offset = hours * 3600
                if scanner.skip(":") {
                    guard let minutes = scanner.number(minDigits: 2, maxDigits: 2) else { return nil }
                    offset += minutes * 60
                    if scanner.skip(":") {
                        guard let seconds = scanner.number(minDigits: 2, maxDigits: 2) else { return nil }
                        offset += seconds
                    }
                }
                offsetSeconds = sign == UInt8(ascii: "-") ? -offset : offset
            }
        }
        guard scanner.atEnd else { return nil }  // e.g. " BC"
        let days = CivilDate.days(fromCivil: year, month, day)
        let total = (days * 86_400 - offsetSeconds) * 1_000_000 + micros
        let seconds = Double(floorDivide(total, 1_000_000).0)
        let fraction = Double(floorDivide(total, 1_000_000).1) / 1_000_000
        return Date(timeIntervalSince1970: seconds + fraction)
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let quotient = a >= 0 ? a / b : -((-a + b - 1) / b)
        return (quotient, a - quotient * b)
    }

    // MARK: Arrays

    /// `{"a","b \"c\"",NULL}`: every element quoted, so no element needs case analysis.
    static func encodeArray(_ elements: [String?]) -> String {
        var out = "{"
        for (index, element) in elements.enumerated() {
            if index > 0 { out += "," }
            guard let element else {
                out += "NULL"
                continue
            }
            out += "\""
            for character in element.unicodeScalars {
                if character == "\"" || character == "\\" { out += "\\" }
                out.unicodeScalars.append(character)
            }
            out += "\""
        }
        return out + "}"
    }

    /// Parses a one-dimensional array literal as Postgres prints it: elements are bare or double-quoted,
    /// backslash escapes inside quotes, an unquoted `NULL` is SQL NULL, and an optional `[lo:hi]=` dimension
    /// prefix is skipped. Nested (multi-dimensional) arrays are rejected.
    static func decodeArray(_ text: String) -> [String?]? {
        var bytes = Substring(text).utf8[...]
        if bytes.first == UInt8(ascii: "[") {
            guard let equals = bytes.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            bytes = bytes[bytes.index(after: equals)...]
        }
        guard bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else { return nil }
        let body = Array(bytes.dropFirst().dropLast())
        if body.isEmpty { return [] }
        var elements: [String?] = []
        var index = 0
        while true {
            var element: [UInt8] = []
            var quoted = false
            if index < body.count, body[index] == UInt8(ascii: "\"") {
                quoted = true
                index += 1
                while true {
                    guard index < body.count else { return nil }
                    let byte = body[index]
                    if byte == UInt8(ascii: "\"") {
                        index += 1
                        break
                    }
                    if byte == UInt8(ascii: "\\") {
                        index += 1
                        guard index < body.count else { return nil }
                    }
                    element.append(body[index])
                    index += 1
                }
            } else {
                while index < body.count, body[index] != UInt8(ascii: ",") {
                    let byte = body[index]
                    if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "\"") { return nil }
                    if byte == UInt8(ascii: "\\") {
                        index += 1
                        guard index < body.count else { return nil }
                    }
                    element.append(body[index])
                    index += 1
                }
            }
            let string = String(decoding: element, as: UTF8.self)
            if !quoted, string.uppercased() == "NULL" {
                elements.append(nil)
            } else {
                elements.append(string)
            }
            if index == body.count { return elements }
            guard body[index] == UInt8(ascii: ",") else { return nil }
            index += 1
        }
    }
}

/// A cursor over ASCII bytes for the small parsers above.
private struct ByteScanner {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { index == bytes.count }

    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func advance() { index += 1 }

    mutating func skip(_ character: Unicode.Scalar) -> Bool {
        guard peek() == UInt8(ascii: character) else { return false }
        index += 1
        return true
    }

    mutating func digit() -> Int64? {
        guard let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
        index += 1
        return Int64(byte - UInt8(ascii: "0"))
    }

    mutating func number(minDigits: Int, maxDigits: Int = 9) -> Int64? {
        var value: Int64 = 0
        var count = 0
        while count < maxDigits, let digit = digit() {
            value = value * 10 + digit
            count += 1
        }
        return count >= minDigits ? value : nil
    }
}
