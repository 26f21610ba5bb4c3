import OTPCore
import Testing

@Suite("ConstantTime")
struct ConstantTimeTests {
    @Test("equals is true exactly for identical bytes")
    func equalsTable() {
        #expect(ConstantTime.equals([], []))
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [0, 2, 3]))  // first byte
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))  // last byte
        #expect(!ConstantTime.equals([0x80], [0x00]))  // high bit only
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))  // length
        #expect(!ConstantTime.equals([], [0]))
        let long = [UInt8](repeating: 0x5A, count: 4096)
        var other = long
        other[4095] ^= 1
        #expect(ConstantTime.equals(long, long))
        #expect(!ConstantTime.equals(long, other))
    }
}
