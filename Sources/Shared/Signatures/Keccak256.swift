/// Keccak-256 as Ethereum uses it: Keccak[c = 512] with the original multi-rate padding (`0x01 … 0x80`),
/// not FIPS 202 SHA3-256 (`0x06 … 0x80`). The two differ only in that padding byte, so SHA3-256 from a
/// crypto library gives different digests and cannot be used here.
package struct Keccak256: Sendable {
    /// Bytes absorbed per permutation: (1600 − 2 × 256) / 8.
    package static let rate = 136
    package static let digestLength = 32

    /// The 5×5 state of 64-bit lanes, lane (x, y) at index x + 5y; bytes enter little-endian.
    private var lanes = [UInt64](repeating: 0, count: 25)
    /// Bytes of the current block already absorbed.
    private var position = 0

    package init() {}

    /// The digest of `bytes`, 32 bytes.
    package static func hash(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var hasher = Keccak256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    package mutating func update(_ bytes: some Sequence<UInt8>) {
        var position = self.position
        lanes.withUnsafeMutableBufferPointer { state in
            for byte in bytes {
                state[position >> 3] ^= UInt64(byte) << (UInt64(position & 7) << 3)
                position += 1
                if position == Self.rate {
                    Self.permute(state)
                    position = 0
                }
            }
        }
        self.position = position
    }

    /// Pads, permutes and squeezes the 32-byte digest. The hasher is used up.
    package consuming func finalize() -> [UInt8] {
        let position = self.position
        return lanes.withUnsafeMutableBufferPointer { state in
            state[position >> 3] ^= 0x01 << (UInt64(position & 7) << 3)
            state[(Self.rate - 1) >> 3] ^= 0x80 << 56
            Self.permute(state)
            var digest = [UInt8]()
            digest.reserveCapacity(Self.digestLength)
            for index in 0..<Self.digestLength {
                digest.append(UInt8(truncatingIfNeeded: state[index >> 3] >> (UInt64(index & 7) << 3)))
            }
            return digest
        }
    }

    private static let roundConstants: [UInt64] = [
        0x0000_0000_0000_0001, 0x0000_0000_0000_8082, 0x8000_0000_0000_808A, 0x8000_0000_8000_8000,
        0x0000_0000_0000_808B, 0x0000_0000_8000_0001, 0x8000_0000_8000_8081, 0x8000_0000_0000_8009,
        0x0000_0000_0000_008A, 0x0000_0000_0000_0088, 0x0000_0000_8000_8009, 0x0000_0000_8000_000A,
        0x0000_0000_8000_808B, 0x8000_0000_0000_008B, 0x8000_0000_0000_8089, 0x8000_0000_0000_8003,
        0x8000_0000_0000_8002, 0x8000_0000_0000_0080, 0x0000_0000_0000_800A, 0x8000_0000_8000_000A,
        0x8000_0000_8000_8081, 0x8000_0000_0000_8080, 0x0000_0000_8000_0001, 0x8000_0000_8000_8008,
    ]
    /// ρ rotation offsets, in the order the π step visits the lanes.
    private static let rotations: [UInt64] = [
        1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
    ]
    /// π: the lane each step of the walk moves to, starting from lane 1.
    private static let piLanes: [Int] = [
        10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
    ]

    /// Keccak-f[1600]: 24 rounds of θ, ρ+π, χ, ι.
    private static func permute(_ state: UnsafeMutableBufferPointer<UInt64>) {
        for round in 0..<24 {
            // θ: mix each column's parity into its neighbours.
            let c0 = state[0] ^ state[5] ^ state[10] ^ state[15] ^ state[20]
            let c1 = state[1] ^ state[6] ^ state[11] ^ state[16] ^ state[21]
            let c2 = state[2] ^ state[7] ^ state[12] ^ state[17] ^ state[22]
            let c3 = state[3] ^ state[8] ^ state[13] ^ state[18] ^ state[23]
            let c4 = state[4] ^ state[9] ^ state[14] ^ state[19] ^ state[24]
            let d0 = c4 ^ rotateLeft(c1, 1)
            let d1 = c0 ^ rotateLeft(c2, 1)
            let d2 = c1 ^ rotateLeft(c3, 1)
            let d3 = c2 ^ rotateLeft(c4, 1)
            let d4 = c3 ^ rotateLeft(c0, 1)
            for row in stride(from: 0, to: 25, by: 5) {
                state[row] ^= d0
                state[row + 1] ^= d1
                state[row + 2] ^= d2
                state[row + 3] ^= d3
                state[row + 4] ^= d4
            }
            // ρ and π: rotate each lane and move it to its new place.
            var carried = state[1]
            for step in 0..<24 {
                let target = piLanes[step]
                let displaced = state[target]
                state[target] = rotateLeft(carried, rotations[step])
                carried = displaced
            }
            // χ: the only non-linear step, row by row.
            for row in stride(from: 0, to: 25, by: 5) {
                let a0 = state[row]
                let a1 = state[row + 1]
                let a2 = state[row + 2]
                let a3 = state[row + 3]
                let a4 = state[row + 4]
                state[row] = a0 ^ (~a1 & a2)
                state[row + 1] = a1 ^ (~a2 & a3)
                state[row + 2] = a2 ^ (~a3 & a4)
                state[row + 3] = a3 ^ (~a4 & a0)
                state[row + 4] = a4 ^ (~a0 & a1)
            }
            // ι: break the symmetry between rounds.
            state[0] ^= roundConstants[round]
        }
    }

    @inline(__always)
    private static func rotateLeft(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }
}
