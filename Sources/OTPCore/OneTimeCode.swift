/// The number of decimal digits in a one-time code: 6 to 10.
///
/// A value of this type is always in `6...10`, so code that holds one never has to check again.
public struct CodeDigits: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The smallest length accepted (RFC 4226 §5.3 asks for at least 6 digits).
    public static let minimum = 6
    /// The largest length accepted.
    public static let maximum = 10
    /// Six digits: the default for SMS codes and TOTP (docs/SECURITY.md §1, §4).
    public static let six = CodeDigits(unchecked: 6)
    /// Eight digits, as in the RFC 6238 test vectors.
    public static let eight = CodeDigits(unchecked: 8)

    /// The number of digits, in `6...10`.
    public let count: Int

    /// Creates a digit count, or returns `nil` if `count` is outside `6...10`.
    public init?(_ count: Int) {
        guard (Self.minimum...Self.maximum).contains(count) else { return nil }
        self.count = count
    }

    private init(unchecked count: Int) {
        self.count = count
    }

    /// 10^count, the number of distinct codes of this length.
    var modulus: UInt64 {
        var result: UInt64 = 1
        for _ in 0..<count { result *= 10 }
        return result
    }

    /// Orders digit counts by their value.
    public static func < (lhs: CodeDigits, rhs: CodeDigits) -> Bool { lhs.count < rhs.count }

    /// The number of digits, e.g. `6`.
    public var description: String { String(count) }
}

/// A one-time code: exactly `length` ASCII digits `0`-`9`, nothing else.
///
/// Values exist only after strict parsing or generation, so holding a `OneTimeCode` means the
/// text is well formed. It is deliberately not `Equatable`: compare codes with
/// ``ConstantTime`` (as ``TOTP`` and ``CodeHasher`` do). Its `description` is redacted, so
/// interpolating a code into a log line does not leak it (docs/SECURITY.md §16); use ``text`` only to
/// put the code into an SMS.
public struct OneTimeCode: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The ASCII digits of the code ('0' is 0x30).
    public let utf8: [UInt8]

    /// How many digits the code has.
    public let length: CodeDigits

    /// Wraps bytes the caller has already proven to be `length.count` ASCII digits.
    init(validatedDigits: [UInt8], length: CodeDigits) {
        self.utf8 = validatedDigits
        self.length = length
    }

    /// Parses user input: accepts exactly `length.count` ASCII digits `0`-`9` and nothing else.
    ///
    /// Refused alike (returns `nil`, with no reason, so all refusals look the same to the
    /// caller and count as one failed attempt): signs (`+123456`), any whitespace anywhere,
    /// separators, digits of other scripts (full-width, Arabic-Indic, ...), NUL and other
    /// control characters, too few or too many digits. At most `length.count + 1` bytes of the
    /// input are examined, so a very long string costs no more than a short one.
    public init?(parsing input: String, length: CodeDigits) {
        self.init(utf8: input.utf8, length: length)
    }

    /// Parses user input given as raw bytes, with the same rules as ``init(parsing:length:)``.
    ///
    /// Every accepted byte is in 0x30...0x39, so invalid UTF-8 is refused too.
    public init?(utf8 input: some Sequence<UInt8>, length: CodeDigits) {
        var digits: [UInt8] = []
        digits.reserveCapacity(length.count)
        for byte in input {
            guard digits.count < length.count, byte >= 0x30, byte <= 0x39 else { return nil }
            digits.append(byte)
        }
        guard digits.count == length.count else { return nil }
        self.init(validatedDigits: digits, length: length)
    }

    /// Draws a code of `length` digits uniformly at random: each of the 10^length codes,
    /// including those with leading zeros, is equally likely (docs/SECURITY.md §1).
    public static func generate(length: CodeDigits = .six, using random: some RandomSource) -> OneTimeCode {
        var digits: [UInt8] = []
        digits.reserveCapacity(length.count)
        for _ in 0..<length.count {
            digits.append(0x30 + UInt8(random.uniform(10)))
        }
        return OneTimeCode(validatedDigits: digits, length: length)
    }

    /// The code as text, e.g. `"042517"`. Use it only to deliver the code; never log it.
    public var text: String { String(decoding: utf8, as: UTF8.self) }

    /// A redacted placeholder such as `<6-digit code>`; never the digits.
    public var description: String { "<\(length.count)-digit code>" }

    /// A redacted placeholder; never the digits.
    public var debugDescription: String { description }
}
