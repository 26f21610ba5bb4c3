import Foundation
import OTPCore
import Synchronization
import Testing

/// A RandomSource that hands out a fixed script of 64-bit words (as `nextUInt64` reads them)
/// and counts how many were consumed; running past the end fails the test.
final class ScriptedRandom: RandomSource {
    private let state: Mutex<(words: [UInt64], used: Int)>

    init(_ words: [UInt64]) {
        state = Mutex((words, 0))
    }

    var consumed: Int { state.withLock { $0.used } }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count == 8, "ScriptedRandom serves whole 64-bit words only")
        let word: UInt64 = state.withLock { state in
            guard state.used < state.words.count else {
                Issue.record("ScriptedRandom ran out of words")
                return 0
            }
            defer { state.used += 1 }
            return state.words[state.used]
        }
        withUnsafeBytes(of: word) { buffer.copyMemory(from: $0) }
    }
}

enum Vectors {
    /// `Tests/OTPCoreTests/Vectors/<name>`: the RFCs' published vectors, kept in the
    /// repository beside this file, found from this file's path.
    static func url(_ name: String, filePath: String = #filePath) -> URL {
        URL(fileURLWithPath: filePath)
            .deletingLastPathComponent()  // OTPCoreTests
            .appendingPathComponent("Vectors/\(name)")
            .standardizedFileURL
    }

    /// The data rows of a tab-separated vector file (comments and blank lines skipped).
    static func rows(_ name: String) throws -> [[String]] {
        let url = url(name)
        try #require(
            FileManager.default.fileExists(atPath: url.path),
            "test vector file missing: \(url.path)")
        let text = try String(contentsOf: url, encoding: .utf8)
        let rows =
            text.split(whereSeparator: \.isNewline)
            .filter { !$0.hasPrefix("#") && !$0.allSatisfy(\.isWhitespace) }
            .map { $0.split(separator: "\t").map(String.init) }
        try #require(!rows.isEmpty, "test vector file \(url.path) has no rows")
        return rows
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

func unhex(_ text: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        out.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return out
}

/// Pearson's chi-squared statistic of observed counts against a uniform expectation.
func chiSquared(_ counts: [Int]) -> Double {
    let total = Double(counts.reduce(0, +))
    let expected = total / Double(counts.count)
    return counts.reduce(0.0) { sum, count in
        let d = Double(count) - expected
        return sum + d * d / expected
    }
}
