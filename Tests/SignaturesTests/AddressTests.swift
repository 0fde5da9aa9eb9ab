import Foundation
import Signatures
import Testing

@Suite("Ethereum addresses and EIP-191")
struct AddressTests {
    /// The test addresses in the EIP-55 text.
    static let eip55Examples = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ]

    @Test(arguments: eip55Examples)
    func checksumOutput(example: String) throws {
        let fromLower = try EthereumAddress(example.lowercased())
        #expect(fromLower.description == example)
        let fromUpper = try EthereumAddress("0x" + example.dropFirst(2).uppercased())
        #expect(fromUpper == fromLower)
        #expect(try EthereumAddress(example) == fromLower)
        #expect(try EthereumAddress(example.dropFirst(2)) == fromLower)
        #expect(fromLower.lowercased == example.lowercased())
    }

    @Test(arguments: eip55Examples)
    func mixedCaseWithBadChecksumIsRejected(example: String) throws {
        // Flip the case of the first letter digit: still mixed case, no longer the checksum.
        var characters = Array(example)
        let index = try #require(characters.indices.dropFirst(2).first { characters[$0].isLetter })
        characters[index] = Character(
            characters[index].isUppercase ? characters[index].lowercased() : characters[index].uppercased())
        let error = try #require(throws: SignatureError.self) { try EthereumAddress(String(characters)) }
        #expect(error.code == .invalidChecksum)
    }

    @Test func malformedAddresses() {
        #expect(throws: SignatureError.self) { try EthereumAddress("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe") }
        #expect(throws: SignatureError.self) { try EthereumAddress("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd") }
        #expect(throws: SignatureError.self) { try EthereumAddress("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg") }
        #expect(throws: SignatureError.self) { try EthereumAddress("") }
        #expect(throws: SignatureError.self) { try EthereumAddress(bytes: [UInt8](repeating: 0, count: 19)) }
    }

    @Test func codableUsesChecksumForm() throws {
        let address = try EthereumAddress(Self.eip55Examples[0].lowercased())
        let json = try JSONEncoder().encode([address])
        #expect(String(decoding: json, as: UTF8.self) == "[\"\(Self.eip55Examples[0])\"]")
        #expect(try JSONDecoder().decode([EthereumAddress].self, from: json) == [address])
        let badChecksum = Data("[\"0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"]".utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([EthereumAddress].self, from: badChecksum) }
    }

    @Test func personalMessageHashOfWeb3Example() {
        // web3.js docs, web3.eth.accounts.sign('Some data', …).messageHash.
        #expect(
            Hex.encode(EIP191.personalMessageHash(Array("Some data".utf8)))
                == "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655")
        // web3.js docs (signing guide), account.sign('hello world').messageHash.
        #expect(
            Hex.encode(EIP191.personalMessageHash(Array("hello world".utf8)))
                == "d9eba16ed0ecae432b71fe008c98cc872bb4cc214d3220a36f365326cf807d68")
    }

    @Test func hexDecoding() throws {
        #expect(try Hex.decode("0x") == [])
        #expect(try Hex.decode("0X0aFf") == [0x0a, 0xff])
        #expect(try Hex.decode("00ff") == [0x00, 0xff])
        #expect(throws: SignatureError.self) { try Hex.decode("0x0") }
        #expect(throws: SignatureError.self) { try Hex.decode("0xzz") }
        #expect(throws: SignatureError.self) { try Hex.decode("0x 0") }
        #expect(throws: SignatureError.self) { try Hex.decode("0x0é") }
    }
}
