import Foundation

/// A job's identity: a random UUID, written as 32 lowercase hex digits like Ocean's `jobId` (UUID4 hex).
public struct JobID: Hashable, Sendable, CustomStringConvertible, Codable {
    public let uuid: UUID

    public init(uuid: UUID = UUID()) {
        self.uuid = uuid
    }

    /// Accepts the 32-digit hex form and the dashed UUID form; anything else is not a job id.
    public init?(_ string: String) {
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

    public var description: String {
        // Written digit by digit: Foundation's uppercase dashed form, lowercased and stripped, cost microseconds, and
        // ids are formatted per job in labels, logs and sorts.
        withUnsafeBytes(of: uuid.uuid) { bytes in
            String(unsafeUninitializedCapacity: 32) { out in
                for (offset, byte) in bytes.enumerated() {
                    out[offset * 2] = Self.hexDigit(byte >> 4)
                    out[offset * 2 + 1] = Self.hexDigit(byte & 0x0F)
                }
                return 32
            }
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }

    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        guard let id = JobID(string) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a job id"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x61...0x66).contains(self) || (0x41...0x46).contains(self)
    }
}
