import Signatures
import Testing

@Suite("Ocean request signatures")
struct OceanSignatureTests {
    static let key = try! Hex.decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    static let signer = try! EthereumAddress("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")
    static let owner = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    static let nonce = "1700000000123456789"

    @Test func exactBytesOfTheScheme() throws {
        // keccak256(UTF-8(message + nonce)), then EIP-191 over the 32 raw bytes ("…Message:\n32").
        let payloadHash = Keccak256.hash(Array((Self.owner + Self.nonce).utf8))
        #expect(OceanSignature.payloadHash(message: Self.owner, nonce: Self.nonce) == payloadHash)
        let prefixed = Array("\u{19}Ethereum Signed Message:\n32".utf8) + payloadHash
        #expect(OceanSignature.signedHash(message: Self.owner, nonce: Self.nonce) == Keccak256.hash(prefixed))
        // Not the hex-text form (prefix "\n66" over "0x…"), and not personal-sign of the text itself.
        let hexForm = EIP191.personalMessageHash(Array(("0x" + Hex.encode(payloadHash)).utf8))
        #expect(OceanSignature.signedHash(message: Self.owner, nonce: Self.nonce) != hexForm)
        let textForm = EIP191.personalMessageHash(Array((Self.owner + Self.nonce).utf8))
        #expect(OceanSignature.signedHash(message: Self.owner, nonce: Self.nonce) != textForm)
    }

    @Test func signAndVerifyAsTheProviderDoes() throws {
        let signature = try OceanSignature.sign(message: Self.owner, nonce: Self.nonce, privateKey: Self.key)
        // The Provider's own sign_message format: 0x, lowercase, v = 00 or 01.
        #expect(signature.hasPrefix("0x") && signature.count == 132 && signature == signature.lowercased())
        #expect(signature.hasSuffix("00") || signature.hasSuffix("01"))
        #expect(
            try OceanSignature.verify(message: Self.owner, nonce: Self.nonce, signatureHex: signature) == Self.signer)
        // A wallet's v = 27/28 and missing 0x are accepted too.
        var bytes = try Hex.decode(signature)
        bytes[64] += 27
        #expect(
            try OceanSignature.verify(message: Self.owner, nonce: Self.nonce, signatureHex: Hex.encode(bytes))
                == Self.signer)
    }

    @Test func jobScopedMessage() throws {
        // Provider → operator-service for an existing job signs owner + jobId + nonce.
        let message = Self.owner + "8f2b6f0c3b3a4e0e9d1c2b3a4e5f6a7b"
        let signature = try OceanSignature.sign(message: message, nonce: Self.nonce, privateKey: Self.key)
        #expect(try OceanSignature.verify(message: message, nonce: Self.nonce, signatureHex: signature) == Self.signer)
    }

    @Test func verifyingWithoutTheNonceYieldsAnotherAddress() throws {
        // What Ocean's operator-service does: recover from `owner` alone. The result is not the signer.
        let signature = try OceanSignature.sign(message: Self.owner, nonce: Self.nonce, privateKey: Self.key)
        #expect(try OceanSignature.verify(message: Self.owner, nonce: "", signatureHex: signature) != Self.signer)
    }

    @Test func wrongSignerOrAlteredFields() throws {
        let otherKey = [UInt8](repeating: 7, count: 32)
        let forged = try OceanSignature.sign(message: Self.owner, nonce: Self.nonce, privateKey: otherKey)
        #expect(try OceanSignature.verify(message: Self.owner, nonce: Self.nonce, signatureHex: forged) != Self.signer)

        let signature = try OceanSignature.sign(message: Self.owner, nonce: Self.nonce, privateKey: Self.key)
        #expect(
            try OceanSignature.verify(message: Self.owner, nonce: "1700000000123456790", signatureHex: signature)
                != Self.signer)
        #expect(
            try OceanSignature.verify(message: Self.owner.lowercased(), nonce: Self.nonce, signatureHex: signature)
                != Self.signer)
    }

    @Test(arguments: [
        ("0x1234", SignatureError.Code.wrongLength),
        ("", .wrongLength),
        ("0xzz", .malformedHex),
        ("0x123", .malformedHex),
        (String(repeating: "g", count: 130), .malformedHex),
    ])
    func malformedSignatures(signatureHex: String, code: SignatureError.Code) {
        let error = #expect(throws: SignatureError.self) {
            try OceanSignature.verify(message: Self.owner, nonce: Self.nonce, signatureHex: signatureHex)
        }
        #expect(error?.code == code)
    }

    /// Every single-field corruption of a valid signature is refused, or recovers some other address: none
    /// yields the signer, and none crashes.
    @Test func corruptedSignaturesNeverRecoverTheSigner() throws {
        let valid = try Hex.decode(
            try OceanSignature.sign(message: Self.owner, nonce: Self.nonce, privateKey: Self.key))
        let order = try Hex.decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        var cases: [(String, [UInt8], SignatureError.Code?)] = []
        for v: UInt8 in [2, 3, 26, 29, 37, 38, 255] {
            var bytes = valid
            bytes[64] = v
            cases.append(("v = \(v)", bytes, .invalidRecoveryID))
        }
        for (name, range) in [("r", 0..<32), ("s", 32..<64)] {
            var zero = valid
            zero.replaceSubrange(range, with: [UInt8](repeating: 0, count: 32))
            cases.append(("\(name) = 0", zero, .invalidSignature))
            var atOrder = valid
            atOrder.replaceSubrange(range, with: order)
            cases.append(("\(name) = n", atOrder, .invalidSignature))
            var allOnes = valid
            allOnes.replaceSubrange(range, with: [UInt8](repeating: 0xFF, count: 32))
            cases.append(("\(name) = 2^256 - 1", allOnes, .invalidSignature))
        }
        var highS = valid
        highS.replaceSubrange(32..<64, with: order.dropLast() + [order[31] - 1])
        cases.append(("s above n/2", highS, .highS))
        for index in [0, 31, 32, 63, 64] {
            var flipped = valid
            flipped[index] ^= 0x01
            cases.append(("bit flipped in byte \(index)", flipped, nil))
        }
        for (name, bytes, code) in cases {
            do {
                let signer = try OceanSignature.verify(
                    message: Self.owner, nonce: Self.nonce, signatureHex: Hex.encode(bytes))
                #expect(code == nil && signer != Self.signer, "\(name) recovered \(signer)")
            } catch {
                #expect(code == nil || error.code == code, "\(name): \(error)")
            }
        }
        for text in [" 0x" + Hex.encode(valid), "0x" + Hex.encode(valid) + "\n", "0x0x" + Hex.encode(valid)] {
            #expect(throws: SignatureError.self, "\(text.debugDescription)") {
                try OceanSignature.verify(message: Self.owner, nonce: Self.nonce, signatureHex: text)
            }
        }
    }

    @Test func errorMessagesDoNotEchoInput() throws {
        // A private key pasted in the wrong place must not end up in a log line.
        let secret = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f36231x"
        let error = try #require(throws: SignatureError.self) { try Hex.decode(secret) }
        #expect(!error.description.contains("4c0883a6"))
    }
}
