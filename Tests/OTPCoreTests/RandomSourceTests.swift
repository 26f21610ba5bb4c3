import OTPCore
import OTPTestSupport
import Testing

@Suite("RandomSource")
struct RandomSourceTests {
    @Test(
        "uniform(n) stays below n",
        arguments: [1, 2, 3, 7, 10, 30, 1000, 1 << 32, 1 << 63, (1 << 63) + 1, 3 << 62, UInt64.max]
            as [UInt64])
    func uniformInRange(bound: UInt64) {
        let sources: [any RandomSource] = [SystemRandom(), SeededRandom(seed: bound)]
        for source in sources {
            for _ in 0..<2_000 {
                let value = source.uniform(bound)
                #expect(value < bound)
            }
        }
    }

    @Test("uniform(1) is always 0")
    func uniformOne() {
        for _ in 0..<100 { #expect(SystemRandom().uniform(1) == 0) }
    }

    @Test("uniform rejects the biased low range and redraws")
    func uniformRejectsBiasedDraws() {
        // n = 3·2^62: 2^64 mod n = 2^62, so draws below 2^62 must be rejected.
        let bound: UInt64 = 3 << 62
        let scripted = ScriptedRandom([5, (1 << 62) + 7])
        #expect(scripted.uniform(bound) == (1 << 62) + 7)
        #expect(scripted.consumed == 2)

        let firstAccepted = ScriptedRandom([1 << 62])
        #expect(firstAccepted.uniform(bound) == 1 << 62)
        #expect(firstAccepted.consumed == 1)

        // n = 10: 2^64 mod 10 = 6, so 0...5 are rejected, 6 is the first accepted value.
        let ten = ScriptedRandom([0, 5, 6])
        #expect(ten.uniform(10) == 6)
        #expect(ten.consumed == 3)
        let top = ScriptedRandom([UInt64.max])
        #expect(top.uniform(10) == UInt64.max % 10)
        #expect(top.consumed == 1)
    }

    @Test("uniform over a huge bound shows no modulo bias")
    func noModuloBiasLargeBound() {
        // With plain `x % (3·2^62)`, values below 2^62 would come up half the time, not a third.
        let bound: UInt64 = 3 << 62
        let draws = 20_000
        var low = 0
        for _ in 0..<draws where SystemRandom().uniform(bound) < (1 << 62) { low += 1 }
        // Expected 6667, standard deviation about 67; the biased version gives about 10000.
        #expect((6_067...7_267).contains(low), "low third drawn \(low) times of \(draws)")
    }

    @Test("uniform(6) is statistically plausible")
    func uniformDistribution() {
        var counts = [Int](repeating: 0, count: 6)
        for _ in 0..<60_000 { counts[Int(SystemRandom().uniform(6))] += 1 }
        // chi-squared, 5 degrees of freedom: 40.9 is exceeded with probability 1e-7.
        #expect(chiSquared(counts) < 40.9, "counts \(counts)")
    }

    @Test("bytes(n) returns n bytes and fills the tail of odd-sized buffers")
    func bytesAndTail() {
        #expect(SystemRandom().bytes(0).isEmpty)
        #expect(SystemRandom().bytes(13).count == 13)
        #expect(SystemRandom().bytes(32) != SystemRandom().bytes(32))
        // Every position, including the last partial word, gets written: after 64 fills of a
        // 13-byte buffer primed with 0xAA, each position has held some other value at least once.
        var changed = [Bool](repeating: false, count: 13)
        for _ in 0..<64 {
            var buffer = [UInt8](repeating: 0xAA, count: 13)
            buffer.withUnsafeMutableBytes { SystemRandom().fill($0) }
            for index in buffer.indices where buffer[index] != 0xAA { changed[index] = true }
        }
        #expect(changed.allSatisfy { $0 }, "positions never written: \(changed)")
    }
}
