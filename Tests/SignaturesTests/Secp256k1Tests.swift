import Signatures
import Testing

@Suite("secp256k1 sign and recover")
struct Secp256k1Tests {
    let curve = Secp256k1.shared

    // web3.js docs: web3.eth.accounts.sign('Some data', '0x4c08…2318') and privateKeyToAccount of that key.
    static let web3Key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    static let web3Address = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    static let web3Hash = "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
    static let web3Signature =
        "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
        + "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"

    @Test func addressOfWellKnownKey() throws {
        let address = try curve.address(privateKey: Hex.decode(Self.web3Key))
        #expect(address.description == Self.web3Address)
    }

    @Test func signReproducesWeb3Example() throws {
        // RFC 6979 makes the signature a function of key and hash, so it must match byte for byte.
        let signature = try curve.sign(hash: Hex.decode(Self.web3Hash), privateKey: Hex.decode(Self.web3Key))
        #expect("0x" + Hex.encode(signature) == Self.web3Signature)
    }

    @Test func recoverWeb3Example() throws {
        let address = try curve.recover(hash: Hex.decode(Self.web3Hash), signature: Hex.decode(Self.web3Signature))
        #expect(address.description == Self.web3Address)
        // The same signature with v as 0/1 instead of 27/28.
        var zeroBased = try Hex.decode(Self.web3Signature)
        zeroBased[64] -= 27
        #expect(try curve.recover(hash: Hex.decode(Self.web3Hash), signature: zeroBased) == address)
    }

    @Test func addressOfWeb3CreateExample() throws {
        // web3.js docs: accounts.create() → address 0xbD50…38bB, private key 0x964c…3ec5.
        let key = try Hex.decode("964ced1c69ad27a311c432fdc0d8211e987595f7eb34ab405a5f16bdc9563ec5")
        #expect(try curve.address(privateKey: key).description == "0xbD504f977021b5E5DdccD8741A368b147B3B38bB")
    }

    // OpenZeppelin's ECDSA tests: raw ecrecover over keccak256("OpenZeppelin"), signatures made outside
    // ganache, one with each recovery id.
    @Test(arguments: [
        (
            "5d99b6f7f6d1f73d1a26497f2b1c89b24c0993913f86e9a2d02cd69887d9c94f"
                + "3c880358579d811b21dd1b7fd9bb01c1d81d10e69f0384e675c32b39643be8921b",
            "0x2cc1166f6212628A0deEf2B33BEFB2187D35b86c"
        ),
        (
            "331fe75a821c982f9127538858900d87d3ec1f9f737338ad67cad133fa48feff"
                + "48e6fa0c18abc62e42820f05943e47af3e9fbe306ce74d64094bdf1691ee53e01c",
            "0x1E318623aB09Fe6de3C9b8672098464Aeda9100E"
        ),
    ])
    func openZeppelinVectors(signature: String, signer: String) throws {
        let hash = Keccak256.hash("OpenZeppelin".utf8)
        #expect(Hex.encode(hash) == "7dbaf558b0a1a5dc7a67202117ab143c1d8605a983e4a743bc06fcc03162dc0d")
        #expect(try curve.recover(hash: hash, signature: Hex.decode(signature)) == EthereumAddress(signer))
    }

    @Test func randomKeysRoundTrip() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let key = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let hash = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let address = try curve.address(privateKey: key)
            let signature = try curve.sign(hash: hash, privateKey: key)
            #expect(signature.count == 65)
            #expect(signature[64] == 27 || signature[64] == 28)
            #expect(try curve.recover(hash: hash, signature: signature) == address)
            // Any other hash recovers some other key.
            var otherHash = hash
            otherHash[0] ^= 1
            #expect(try curve.recover(hash: otherHash, signature: signature) != address)
        }
    }

    @Test func highSIsRejected() throws {
        // Replace s by n − s and flip v: the same (r, s) point family, valid ECDSA, but malleated (EIP-2).
        let signature = try Hex.decode(Self.web3Signature)
        let malleated =
            Array(signature[0..<32]) + subtract(Self.order, Array(signature[32..<64]))
            + [signature[64] == 27 ? 28 : 27]
        let error = try #require(throws: SignatureError.self) {
            try curve.recover(hash: Hex.decode(Self.web3Hash), signature: malleated)
        }
        #expect(error.code == .highS)
    }

    @Test(arguments: [UInt8(2), 3, 26, 29, 35, 36, 37, 255])
    func recoveryIDOutOfRange(v: UInt8) throws {
        var signature = try Hex.decode(Self.web3Signature)
        signature[64] = v
        let error = try #require(throws: SignatureError.self) {
            try curve.recover(hash: Hex.decode(Self.web3Hash), signature: signature)
        }
        #expect(error.code == .invalidRecoveryID)
    }

    @Test func wrongLengths() throws {
        let signature = try Hex.decode(Self.web3Signature)
        let hash = try Hex.decode(Self.web3Hash)
        for bad in [Array(signature.dropLast()), signature + [0], [], Array(signature[0..<64])] {
            let error = try #require(throws: SignatureError.self) { try curve.recover(hash: hash, signature: bad) }
            #expect(error.code == .wrongLength)
        }
        let error = try #require(throws: SignatureError.self) {
            try curve.recover(hash: Array(hash.dropLast()), signature: signature)
        }
        #expect(error.code == .wrongLength)
    }

    @Test func zeroOrOverflowingScalars() throws {
        let signature = try Hex.decode(Self.web3Signature)
        let hash = try Hex.decode(Self.web3Hash)
        let zero = [UInt8](repeating: 0, count: 32)
        let cases: [[UInt8]] = [
            zero + signature[32..<65],  // r = 0
            signature[0..<32] + zero + [signature[64]],  // s = 0
            Self.order + signature[32..<65],  // r = n
            [UInt8](repeating: 0xff, count: 32) + signature[32..<65],  // r > n
        ]
        for bad in cases {
            let error = try #require(throws: SignatureError.self) { try curve.recover(hash: hash, signature: bad) }
            #expect(error.code == .invalidSignature)
        }
    }

    @Test func invalidPrivateKeys() throws {
        let hash = try Hex.decode(Self.web3Hash)
        let keys: [[UInt8]] = [
            [UInt8](repeating: 0, count: 32), Self.order, [UInt8](repeating: 0xff, count: 32),
            [UInt8](repeating: 1, count: 31), [UInt8](repeating: 1, count: 33),
        ]
        for key in keys {
            let signError = try #require(throws: SignatureError.self) { try curve.sign(hash: hash, privateKey: key) }
            #expect(signError.code == .invalidPrivateKey)
            let addressError = try #require(throws: SignatureError.self) { try curve.address(privateKey: key) }
            #expect(addressError.code == .invalidPrivateKey)
        }
    }

    @Test func concurrentUseOfOneContext() async throws {
        let key = try Hex.decode(Self.web3Key)
        let expected = try EthereumAddress(Self.web3Address)
        let curve = self.curve
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<16 {
                group.addTask {
                    for round in 0..<25 {
                        let hash = Keccak256.hash("\(index)-\(round)".utf8)
                        let signature = try curve.sign(hash: hash, privateKey: key)
                        #expect(try curve.recover(hash: hash, signature: signature) == expected)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    static let order = try! Hex.decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")

    /// Big-endian 256-bit a − b, for a ≥ b.
    private func subtract(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for index in stride(from: 31, through: 0, by: -1) {
            var difference = Int(a[index]) - Int(b[index]) - borrow
            borrow = difference < 0 ? 1 : 0
            if difference < 0 { difference += 256 }
            result[index] = UInt8(difference)
        }
        return result
    }
}
