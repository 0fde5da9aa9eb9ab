import Foundation
import Storage
import Testing

/// SigV4 against the examples AWS publishes for S3 ("Signature Calculations for the Authorization Header" and
/// "Authenticating Requests: Using Query Parameters"), so a signing mistake shows here, not as a 403 in production.
@Suite("SigV4")
struct SigV4Tests {
    static let signer = SigV4Signer(
        credentials: S3Credentials(
            accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1")
    /// 2013-05-24T00:00:00Z, the examples' time.
    static let date = Date(timeIntervalSince1970: 1_369_353_600)

    @Test("GET Object with a Range header")
    func getObject() {
        let headers = Self.signer.sign(
            method: "GET", canonicalURI: "/test.txt", query: [],
            headers: ["host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9"],
            payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date)
        #expect(
            headers["authorization"]
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(headers["x-amz-date"] == "20130524T000000Z")
    }

    @Test("PUT Object with a payload and extra x-amz headers")
    func putObject() {
        let payload = Array("Welcome to Amazon S3.".utf8)
        let hash = SigV4Signer.sha256Hex(payload)
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let headers = Self.signer.sign(
            method: "PUT", canonicalURI: "/test%24file.text", query: [],
            headers: [
                "host": "examplebucket.s3.amazonaws.com", "date": "Fri, 24 May 2013 00:00:00 GMT",
                "x-amz-storage-class": "REDUCED_REDUNDANCY",
            ], payloadHash: hash, date: Self.date)
        #expect(
            headers["authorization"]?.hasSuffix(
                "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd") == true,
            "\(headers)")
    }

    @Test("GET Bucket lifecycle and list objects: query strings")
    func queries() {
        let lifecycle = Self.signer.sign(
            method: "GET", canonicalURI: "/", query: [("lifecycle", "")],
            headers: ["host": "examplebucket.s3.amazonaws.com"], payloadHash: SigV4Signer.emptyPayloadHash,
            date: Self.date)
        #expect(
            lifecycle["authorization"]?.hasSuffix(
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543") == true)
        let list = Self.signer.sign(
            method: "GET", canonicalURI: "/", query: [("max-keys", "2"), ("prefix", "J")],
            headers: ["host": "examplebucket.s3.amazonaws.com"], payloadHash: SigV4Signer.emptyPayloadHash,
            date: Self.date)
        #expect(
            list["authorization"]?.hasSuffix(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true)
    }

    @Test("a presigned GET URL")
    func presigned() {
        let query = Self.signer.presignedQuery(
            method: "GET", canonicalURI: "/test.txt", host: "examplebucket.s3.amazonaws.com", query: [],
            expires: 86_400, date: Self.date)
        #expect(query.hasSuffix("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"))
        #expect(query.contains("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"))
    }

    @Test("keys are percent-encoded byte by byte, slashes kept in paths")
    func encoding() {
        #expect(SigV4Signer.uriEncode("a b/ü~.-_", encodeSlash: false) == "a%20b/%C3%BC~.-_")
        #expect(SigV4Signer.uriEncode("a/b", encodeSlash: true) == "a%2Fb")
        #expect(SigV4Signer.canonicalQuery([("b", "2"), ("a", "x y"), ("a", "1")]) == "a=1&a=x%20y&b=2")
    }
}
