import Signatures
import Testing

@Suite("Keccak-256")
struct KeccakTests {
    // Published Keccak-256 (original padding) vectors: "" and "abc" as Ethereum tools give them; the
    // 448-bit, 896-bit and one-million-"a" messages are the classic set that noble-hashes, CryptoSwift and
    // others check Keccak-256 against.
    @Test(arguments: [
        ("", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        ("abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "45d3b367a6904e6e8d502ee04999a7c27647f91fa845d456525fd352ae3d7371"
        ),
        (
            "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrs"
                + "tnopqrstu",
            "f519747ed599024f3882238e5ab43960132572b7345fbeb9a90769dafd21ad67"
        ),
    ])
    func publishedVectors(input: String, digest: String) {
        #expect(Hex.encode(Keccak256.hash(input.utf8)) == digest)
    }

    @Test func oneMillionA() {
        // 7,353 blocks of 136 bytes: exercises absorbing across many permutations.
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(
            Hex.encode(Keccak256.hash(input)) == "fadae6b49f129bbb812be8407b7b2894f34aecf6dbd1f9b0f0c7e9853098fc96")
    }

    @Test func keccakKnownAnswerMultiBlock() throws {
        // A 241-byte message from the Keccak team's ShortMsgKAT_256 (Len = 1928), as the sha3 Ruby gem's
        // tests carry it: one full block, then the padding in the second.
        let message = try Hex.decode(
            "6172f1971a6e1e4e6170afbad95d5fec99bf69b24b674bc17dd78011615e502de6f56b86b1a71d3f4348087218ac7b7d"
                + "09302993be272e4a591968aef18a1262d665610d1070ee91cc8da36e1f841a69a7a682c580e836941d21d909a3af"
                + "c1f0b963e1ca5ab193e124a1a53df1c587470e5881fb54dae1b0d840f0c8f9d1b04c645ba1041c7d8dbf22030a62"
                + "3aa15638b3d99a2c400ff76f3252079af88d2b37f35ee66c1ad7801a28d3d388ac450b97d5f0f79e4541755356b3"
                + "b1a5696b023f39ab7ab5f28df4202936bc97393b93bc915cb159ea1bd7a0a414cb4b7a1ac3af68f50d79f0c9c731"
                + "4e750f7d02faa58bfa")
        #expect(message.count == 241)
        #expect(
            Hex.encode(Keccak256.hash(message)) == "4ea524e705020284b18284e34683725590e1ee565a6ff598ed4d42b1c987471e")
    }

    @Test func singleByteCC() throws {
        // ShortMsgKAT_256, Len = 8.
        #expect(
            Hex.encode(Keccak256.hash([0xcc])) == "eead6dbfc7340a56caedc044696a168870549a6a7f6f56961e84a54bd9970b8a")
    }

    @Test func incrementalEqualsOneShot() {
        // Split points around the 136-byte rate, where the padding byte and 0x80 share or straddle blocks.
        let message = (0..<600).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for length in [0, 1, 134, 135, 136, 137, 271, 272, 273, 600] {
            let whole = Keccak256.hash(message[..<length])
            for split in [0, 1, 67, 135, 136, length] where split <= length {
                var hasher = Keccak256()
                hasher.update(message[..<split])
                hasher.update(message[split..<length])
                #expect(hasher.finalize() == whole, "length \(length), split \(split)")
            }
        }
    }

    @Test func notSHA3() {
        // SHA3-256("") differs only by the padding byte; make sure we are not computing it.
        #expect(
            Hex.encode(Keccak256.hash([UInt8]())) != "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a")
    }
}
