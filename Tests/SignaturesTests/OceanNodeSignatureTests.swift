import Signatures
import Testing

/// ocean-node's consumer signature, checked against vectors made by an independent library (PyPI eth-account 0.14:
/// `Account.sign_message(encode_defunct(primitive=keccak(text=message)))` for the raw-bytes form and
/// `encode_defunct(text="0x" + hash.hex())` for the hex-text form), never by c2d's own signing code.
@Suite("ocean-node consumer signature")
struct OceanNodeSignatureTests {
    static let consumer = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    static let nonce = "1700000000001"
    static let overBytes =
        "0x3aa304441514db582bca0d918f42bcd7c71ff0630ecc6216865bd2b52f38414558dc1096b4380469428b40882777472df75c10c777f70ec45e10f97015c791761b"
    static let overHexText =
        "0x65c07c3e91e1fee07a8adc72b1eb397b724dc337ab44d20511327308f3517547719693fc40703b0ad6a67e62f555de00f4c0306b72953f5bdf9440af17a8a3431c"

    @Test("the message hash is keccak256(consumerAddress + nonce + command)")
    func messageHash() {
        let hash = OceanNodeSignature.messageHash(
            consumer: Self.consumer, nonce: Self.nonce, command: .freeStartCompute)
        #expect(Hex.encode(hash) == "6cc75889a2a7a783f27da3c864be047571059ef11750a510d6c80491b6533879")
    }

    @Test("both forms ocean-node accepts verify, for the consumer however the address is cased")
    func bothForms() throws {
        for signature in [Self.overBytes, Self.overHexText] {
            #expect(
                try OceanNodeSignature.isSigned(
                    by: Self.consumer, nonce: Self.nonce, command: .freeStartCompute, signatureHex: signature))
        }
    }

    @Test("another command, nonce or consumer does not verify")
    func mismatches() throws {
        #expect(
            try !OceanNodeSignature.isSigned(
                by: Self.consumer, nonce: Self.nonce, command: .startCompute, signatureHex: Self.overBytes))
        #expect(
            try !OceanNodeSignature.isSigned(
                by: Self.consumer, nonce: "1700000000002", command: .freeStartCompute, signatureHex: Self.overBytes))
        #expect(
            try !OceanNodeSignature.isSigned(
                by: "0x6E1d1B6A3E2F7A8C5e9D4B2A1c0f9e8D7C6B5A43", nonce: Self.nonce, command: .freeStartCompute,
                signatureHex: Self.overBytes))
    }

    @Test("c2d's own signing matches the independent library byte for byte")
    func signMatches() throws {
        let key = try Hex.decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
        #expect(
            try OceanNodeSignature.sign(
                consumer: Self.consumer, nonce: Self.nonce, command: .freeStartCompute, privateKey: key)
                == Self.overBytes)
    }

    @Test("a malformed signature or address throws")
    func malformed() {
        #expect(throws: SignatureError.self) {
            try OceanNodeSignature.isSigned(
                by: Self.consumer, nonce: Self.nonce, command: .freeStartCompute, signatureHex: "0x1234")
        }
        #expect(throws: SignatureError.self) {
            try OceanNodeSignature.isSigned(
                by: "0x1234", nonce: Self.nonce, command: .freeStartCompute, signatureHex: Self.overBytes)
        }
    }
}
