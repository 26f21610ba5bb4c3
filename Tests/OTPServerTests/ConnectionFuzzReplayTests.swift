import ConnectionFuzzHarness
import Foundation
import Testing

/// Runs the connection fuzz harness without libFuzzer on every test run: the committed seeds
/// (`Fuzz/connection-seeds/`, with the inputs fuzzing has turned up since) and deterministic
/// mutations of them. The long fuzzing runs are `scripts/fuzz.sh`.
@Suite("connection fuzz harness")
struct ConnectionFuzzReplayTests {
    static let seedDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/connection-seeds")

    static func committedSeeds() throws -> [(name: String, bytes: [UInt8])] {
        try FileManager.default.contentsOfDirectory(atPath: seedDirectory.path).sorted().map { name in
            (name, [UInt8](try Data(contentsOf: seedDirectory.appendingPathComponent(name))))
        }
    }

    @Test func committedSeedsIncludeTheHarnessSeeds() throws {
        let committed = Dictionary(uniqueKeysWithValues: try Self.committedSeeds().map { ($0.name, $0.bytes) })
        for seed in ConnectionHarness.seeds() {
            #expect(
                committed[seed.name] == seed.bytes,
                "Fuzz/connection-seeds/\(seed.name) is stale: otpfuzz-connection --write-seeds Fuzz/connection-seeds")
        }
    }

    @Test func everySeedKeepsEveryInvariant() throws {
        for seed in try Self.committedSeeds() {
            #expect(throws: Never.self, "\(seed.name)") { try ConnectionHarness.check(seed.bytes) }
        }
    }

    /// 500 mutations (of the header, which changes how the stream is cut and what follows it,
    /// and of the stream: bit flips, edge values, insertions, deletions, truncations, splices
    /// of two seeds) from a fixed seed, so a failure reproduces.
    @Test func mutationsOfTheSeedsKeepEveryInvariant() throws {
        let seeds = try Self.committedSeeds().map(\.bytes)
        var random = ReplayRandom(seed: 0x1515_2026)
        var failures: [String] = []
        for round in 0..<500 {
            var bytes = seeds[Int(random.next() % UInt64(seeds.count))]
            for _ in 0...(random.next() % 4) {
                mutate(&bytes, with: &random, splicing: seeds)
            }
            do {
                try ConnectionHarness.check(bytes)
            } catch {
                failures.append("round \(round), bytes \(bytes): \(error)")
                if failures.count == 5 { break }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    private func mutate(_ bytes: inout [UInt8], with random: inout ReplayRandom, splicing seeds: [[UInt8]]) {
        let edge: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 0xC0, 0xED, 0x0A, 0x12, 0x1A, 0x22]
        let position = bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count))
        switch random.next() % 7 {
        case 0 where bytes.count >= 2: bytes[Int(random.next() % 2)] = UInt8(truncatingIfNeeded: random.next())
        case 1 where !bytes.isEmpty: bytes[position] ^= 1 << UInt8(random.next() % 8)
        case 2 where !bytes.isEmpty: bytes[position] = edge[Int(random.next() % UInt64(edge.count))]
        case 3: bytes.insert(edge[Int(random.next() % UInt64(edge.count))], at: position)
        case 4 where !bytes.isEmpty: bytes.remove(at: position)
        case 5: bytes.removeLast(min(bytes.count, Int(random.next() % 8)))
        default:
            let other = seeds[Int(random.next() % UInt64(seeds.count))]
            bytes = Array(bytes.prefix(position)) + other.suffix(Int(random.next() % UInt64(other.count + 1)))
        }
    }
}

/// A small deterministic generator (SplitMix64), so the mutations are the same on every run.
private struct ReplayRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
