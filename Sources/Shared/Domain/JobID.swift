import Foundation

/// A job's identity: a UUID, written as 32 lowercase hex digits like Ocean's `jobId` (UUID hex).
///
/// New ids are time-ordered (UUID version 7, RFC 9562: 48 bits of Unix milliseconds, then 74 random bits), so the
/// jobs' primary key and the indexes that lead with the job id grow at their right edge instead of touching a random
/// page of the whole history on every insert. Readers accept any UUID: ids of jobs made before (version 4) stay valid.
package struct JobID: Hashable, Sendable, CustomStringConvertible, Codable {
    package let uuid: UUID

    package init(uuid: UUID = JobID.timeOrderedUUID()) {
        self.uuid = uuid
    }

    /// A UUID version 7 for `now`: the timestamp in its first 48 bits, the version and variant bits, random bits in
    /// the rest.
    package static func timeOrderedUUID(now: Date = Date()) -> UUID {
        var generator = SystemRandomNumberGenerator()
        let milliseconds = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        let high = (milliseconds << 16) | 0x7000 | (generator.next() & 0x0fff)
        let low = (generator.next() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000
        let h = withUnsafeBytes(of: high.bigEndian) { Array($0) }
        let l = withUnsafeBytes(of: low.bigEndian) { Array($0) }
        return UUID(
            uuid: (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]))
    }

    /// Accepts the 32-digit hex form and the dashed UUID form; anything else is not a job id.
    package init?(_ string: String) {
        if let uuid = UUID(uuidString: string) {
            self.uuid = uuid
            return
        }
        guard string.utf8.count == 32, string.utf8.allSatisfy({ $0.isHexDigit }) else { return nil }
        let s = Array(string)
        let dashed =
            String(s[0..<8]) + "-" + String(s[8..<12]) + "-" + String(s[12..<16]) + "-"
            + String(s[16..<20]) + "-" + String(s[20..<32])
        guard let uuid = UUID(uuidString: dashed) else { return nil }
        self.uuid = uuid
    }

    /// 32 lowercase hex digits, written from the bytes (Foundation's string search was a visible cost per submit).
    package var description: String {
        withUnsafeBytes(of: uuid.uuid) { bytes in
            String(unsafeUninitializedCapacity: 32) { buffer in
                let digits: StaticString = "0123456789abcdef"
                for (index, byte) in bytes.enumerated() {
                    buffer[2 * index] = digits.utf8Start[Int(byte >> 4)]
                    buffer[2 * index + 1] = digits.utf8Start[Int(byte & 0x0f)]
                }
                return 32
            }
        }
    }

    /// Whether this id sorts before `other` as their texts do: the bytes compared in order, without writing either.
    package func precedes(_ other: JobID) -> Bool {
        withUnsafeBytes(of: uuid.uuid) { a in
            withUnsafeBytes(of: other.uuid.uuid) { b in a.lexicographicallyPrecedes(b) }
        }
    }

    package init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        guard let id = JobID(string) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a job id"))
        }
        self = id
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x61...0x66).contains(self) || (0x41...0x46).contains(self)
    }
}
