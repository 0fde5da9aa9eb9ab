import Crypto
import Foundation

/// Credentials of an S3-compatible store: the usual `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary
/// credentials, `AWS_SESSION_TOKEN`. Never logged: `description` shows the key id only.
package struct S3Credentials: Sendable, Hashable, CustomStringConvertible {
    package var accessKeyID: String
    package var secretAccessKey: String
    package var sessionToken: String?

    package init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    package var description: String { "S3Credentials(\(accessKeyID), secret redacted)" }
}

/// AWS Signature Version 4 for S3, on swift-crypto (HMAC-SHA256): signed request headers and presigned URLs.
/// Pure: the same request, credentials and time always give the same signature, which is what the tests check
/// against AWS's published examples.
package struct SigV4Signer: Sendable {
    package let credentials: S3Credentials
    package let region: String
    package let service: String

    /// sha-256 of the empty string, the payload hash of bodiless requests.
    package static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// The payload hash of a presigned URL (the body is not known when the URL is made).
    package static let unsignedPayload = "UNSIGNED-PAYLOAD"
    static let algorithm = "AWS4-HMAC-SHA256"

    package init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to add to a request: `authorization`, `x-amz-date`, `x-amz-content-sha256` and, with temporary
    /// credentials, `x-amz-security-token`. `canonicalURI` is the path already percent-encoded (`/bucket/a%20b`);
    /// `query` is raw (encoded here); `headers` are every other header to sign, `host` included.
    package func sign(
        method: String, canonicalURI: String, query: [(String, String)], headers: [String: String],
        payloadHash: String, date: Date
    ) -> [String: String] {
        let stamp = Self.timestamp(date)
        var signed = Dictionary(uniqueKeysWithValues: headers.map { ($0.key.lowercased(), $0.value) })
        signed["x-amz-date"] = stamp.dateTime
        signed["x-amz-content-sha256"] = payloadHash
        if let token = credentials.sessionToken { signed["x-amz-security-token"] = token }
        let names = signed.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(Self.trimmed(signed[$0] ?? ""))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonicalRequest = [
            method, canonicalURI, Self.canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash,
        ].joined(separator: "\n")
        let scope = "\(stamp.date)/\(region)/\(service)/aws4_request"
        let signature = self.signature(canonicalRequest: canonicalRequest, dateTime: stamp.dateTime, scope: scope)
        var added = [
            "authorization":
                "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), "
                + "Signature=\(signature)",
            "x-amz-date": stamp.dateTime,
            "x-amz-content-sha256": payloadHash,
        ]
        if let token = credentials.sessionToken { added["x-amz-security-token"] = token }
        return added
    }

    /// The query of a presigned URL for `method` on `canonicalURI` at `host`, valid for `expires` seconds (1 to
    /// 604,800) from `date`: the given `query` plus the `X-Amz-*` parameters and the signature, encoded and
    /// ready to append after `?`.
    package func presignedQuery(
        method: String, canonicalURI: String, host: String, query: [(String, String)], expires: Int, date: Date
    ) -> String {
        let stamp = Self.timestamp(date)
        let scope = "\(stamp.date)/\(region)/\(service)/aws4_request"
        var parameters = query
        parameters += [
            ("X-Amz-Algorithm", Self.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope)"),
            ("X-Amz-Date", stamp.dateTime),
            ("X-Amz-Expires", String(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if let token = credentials.sessionToken { parameters.append(("X-Amz-Security-Token", token)) }
        let canonicalRequest = [
            method, canonicalURI, Self.canonicalQuery(parameters), "host:\(Self.trimmed(host))\n", "host",
            Self.unsignedPayload,
        ].joined(separator: "\n")
        let signature = self.signature(canonicalRequest: canonicalRequest, dateTime: stamp.dateTime, scope: scope)
        return Self.canonicalQuery(parameters) + "&X-Amz-Signature=\(signature)"
    }

    func signature(canonicalRequest: String, dateTime: String, scope: String) -> String {
        let stringToSign = [Self.algorithm, dateTime, scope, Self.sha256Hex(Data(canonicalRequest.utf8))]
            .joined(separator: "\n")
        let date = String(scope.prefix { $0 != "/" })
        var key = Self.hmac(key: Array("AWS4\(credentials.secretAccessKey)".utf8), date)
        key = Self.hmac(key: key, region)
        key = Self.hmac(key: key, service)
        key = Self.hmac(key: key, "aws4_request")
        return Self.hex(Self.hmac(key: key, stringToSign))
    }

    // MARK: Encoding

    /// `name=value` pairs, each percent-encoded (a `/` too), sorted by name then value, joined with `&`.
    package static func canonicalQuery(_ query: [(String, String)]) -> String {
        let encoded: [(name: String, value: String)] = query.map { pair in
            (uriEncode(pair.0, encodeSlash: true), uriEncode(pair.1, encodeSlash: true))
        }
        let sorted = encoded.sorted { (a: (name: String, value: String), b: (name: String, value: String)) -> Bool in
            a.name == b.name ? a.value < b.value : a.name < b.name
        }
        return sorted.map { pair in pair.name + "=" + pair.value }.joined(separator: "&")
    }

    /// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, every other UTF-8 byte as `%XX`
    /// (uppercase); `/` kept in paths.
    package static func uriEncode(_ text: String, encodeSlash: Bool) -> String {
        var output = ""
        output.reserveCapacity(text.utf8.count)
        let digits = Array("0123456789ABCDEF")
        for byte in text.utf8 {
            if isUnreserved(byte) || (byte == 0x2F && !encodeSlash) {
                output.append(Character(Unicode.Scalar(byte)))
            } else {
                output.append("%")
                output.append(digits[Int(byte >> 4)])
                output.append(digits[Int(byte & 0x0F)])
            }
        }
        return output
    }

    /// `A-Z a-z 0-9 - . _ ~`.
    static func isUnreserved(_ byte: UInt8) -> Bool {
        let letter = (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
        let digit = byte >= 0x30 && byte <= 0x39
        return letter || digit || byte == 0x2D || byte == 0x2E || byte == 0x5F || byte == 0x7E
    }

    /// Header values are signed with surrounding spaces removed and inner runs of spaces collapsed.
    static func trimmed(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }

    /// `yyyyMMdd` and `yyyyMMddTHHmmssZ` in UTC.
    static func timestamp(_ date: Date) -> (date: String, dateTime: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ value: Int?, _ width: Int) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let day = pad(parts.year, 4) + pad(parts.month, 2) + pad(parts.day, 2)
        return (day, day + "T" + pad(parts.hour, 2) + pad(parts.minute, 2) + pad(parts.second, 2) + "Z")
    }

    static func hmac(key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: key)))
    }

    package static func sha256Hex(_ data: some DataProtocol) -> String {
        hex(Array(SHA256.hash(data: data)))
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.hexString
    }
}
