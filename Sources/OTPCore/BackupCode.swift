import Foundation

/// A single-use backup code, e.g. `k7mq-2xtp-9fhw-c3rd` (docs/SECURITY.md §7).
///
/// Format: 16 characters from a 30-character lower-case alphabet, shown in 4 groups of 4
/// separated by dashes. The alphabet, ``alphabet``, is the digits 2-9 and the letters a-z
/// without the look-alikes `0 1 o i l` (confused with one another) and `u` (confused with `v`).
/// Each character is drawn uniformly, so a code carries 16 × log2(30) ≈ 78.5 bits of entropy
/// (``entropyBits``), above the 64 bits NIST SP 800-63B-4 §4.2.1.1 requires.
///
/// Parsing accepts either case and tolerates dashes and spaces anywhere; after removing them,
/// exactly 16 alphabet characters must remain. Not `Equatable` (compare through
/// ``CodeHasher``), and `description` is redacted so a code never reaches a log.
public struct BackupCode: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The characters a code is drawn from, in lower case.
    public static let alphabet = "23456789abcdefghjkmnpqrstvwxyz"
    /// The number of alphabet characters in a code.
    public static let length = 16
    /// The size of each dash-separated group when shown.
    public static let groupSize = 4
    /// The entropy of one code in bits: length × log2(alphabet size) ≈ 78.51.
    public static let entropyBits = Double(length) * log2(Double(alphabet.utf8.count))
    /// The longest input examined, in bytes; longer input is refused unread.
    public static let maximumInputBytes = 64

    private static let alphabetBytes = Array(alphabet.utf8)

    /// The 16 characters without dashes, lower case: the form to hash.
    public let normalized: String

    private init(normalized: String) {
        self.normalized = normalized
    }

    /// Draws a code, each character uniformly from ``alphabet`` (no modulo bias).
    public static func generate(using random: some RandomSource) -> BackupCode {
        var characters: [UInt8] = []
        characters.reserveCapacity(length)
        for _ in 0..<length {
            characters.append(alphabetBytes[Int(random.uniform(UInt64(alphabetBytes.count)))])
        }
        return BackupCode(normalized: String(decoding: characters, as: UTF8.self))
    }

    /// Draws `count` distinct codes (default 10, the minimum docs/SECURITY.md §7 allows).
    public static func generateSet(count: Int = 10, using random: some RandomSource) -> [BackupCode] {
        precondition(count >= 0, "count must not be negative")
        var seen: Set<String> = []
        var codes: [BackupCode] = []
        while codes.count < count {
            let code = generate(using: random)
            if seen.insert(code.normalized).inserted {
                codes.append(code)
            }
        }
        return codes
    }

    /// Parses user input, or returns `nil`.
    ///
    /// Upper-case ASCII letters are lowered and ASCII dashes and spaces dropped; then exactly
    /// 16 characters of ``alphabet`` must remain. Refused alike: input longer than 64 bytes,
    /// any non-ASCII byte, NUL and other control characters, look-alikes outside the alphabet
    /// (`0 1 o i l u`), too few or too many characters.
    public init?(parsing input: String) {
        self.init(utf8: input.utf8)
    }

    /// Parses user input given as raw bytes, with the rules of ``init(parsing:)``; invalid
    /// UTF-8 is refused because every accepted byte is ASCII.
    public init?(utf8 input: some Sequence<UInt8>) {
        var characters: [UInt8] = []
        var examined = 0
        for byte in input {
            examined += 1
            guard examined <= Self.maximumInputBytes else { return nil }
            if byte == UInt8(ascii: "-") || byte == UInt8(ascii: " ") { continue }
            var lowered = byte
            if byte >= UInt8(ascii: "A"), byte <= UInt8(ascii: "Z") { lowered = byte + 0x20 }
            guard Self.alphabetBytes.contains(lowered), characters.count < Self.length else {
                return nil
            }
            characters.append(lowered)
        }
        guard characters.count == Self.length else { return nil }
        self.init(normalized: String(decoding: characters, as: UTF8.self))
    }

    /// The code as shown to the user: lower case, groups of 4 joined by dashes. Show it once,
    /// when the set is created; never log it.
    public var formatted: String {
        var out = ""
        for (index, character) in normalized.enumerated() {
            if index > 0, index % Self.groupSize == 0 { out.append("-") }
            out.append(character)
        }
        return out
    }

    /// A redacted placeholder; never the code.
    public var description: String { "<backup code>" }

    /// A redacted placeholder; never the code.
    public var debugDescription: String { description }
}
