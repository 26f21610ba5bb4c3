import OTPCore
import OTPTestSupport
import Testing

@Suite("OneTimeCode")
struct OneTimeCodeTests {
    /// Every kind of bad input docs/SECURITY.md §9 names, and a few more; all must be refused.
    static let badInputs: [String] = [
        "+123456", "-123456", " 123456", "123456 ", "12 3456", "123 456", "\t123456", "123456\n",
        "１２３４５６",  // full-width digits
        "١٢٣٤٥٦",  // Arabic-Indic digits
        "۱۲۳۴۵۶",  // extended Arabic-Indic digits
        "१२३४५६",  // Devanagari digits
        "12345６",  // one full-width digit
        "\0", "123456\0", "\0123456", "12\u{0}456",
        String(repeating: "1", count: 6_000),
        String(repeating: "1", count: 6_000) + "x",
        "", "12345", "1234567", "12345a", "a12345", "0x1234", "1e5678", "12.345", "12,345",
        "123-456", "+12345", "①②③④⑤⑥", "123456\u{200B}", "\u{FEFF}123456", "12345\u{0661}",
    ]

    @Test("docs/SECURITY.md §9 bad inputs are all refused", arguments: badInputs)
    func refused(input: String) {
        #expect(OneTimeCode(parsing: input, length: .six) == nil)
    }

    @Test(
        "exactly n ASCII digits are accepted",
        arguments: [
            ("000000", 6), ("123456", 6), ("999999", 6), ("0123456", 7), ("12345678", 8),
            ("000000000", 9), ("9876543210", 10),
        ])
    func accepted(input: String, count: Int) throws {
        let length = try #require(CodeDigits(count))
        let code = try #require(OneTimeCode(parsing: input, length: length))
        #expect(code.text == input)
        #expect(code.utf8 == Array(input.utf8))
        #expect(code.length == length)
    }

    @Test("a code of one length is refused at another")
    func lengthMustMatch() throws {
        #expect(OneTimeCode(parsing: "1234567", length: .six) == nil)
        #expect(OneTimeCode(parsing: "123456", length: try #require(CodeDigits(7))) == nil)
    }

    @Test("byte input: invalid UTF-8, overlong and stray bytes are refused")
    func bytes() {
        let bad: [[UInt8]] = [
            [0x31, 0x32, 0x33, 0x34, 0x35, 0xFF],
            [0x31, 0x32, 0x33, 0x34, 0x35, 0xC0, 0xB1],  // overlong '1'
            [0xC0, 0xB1, 0x31, 0x32, 0x33, 0x34, 0x35],
            [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x80],
            [0x31, 0x32, 0x33, 0x34, 0x35, 0x00],
            [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x00],
            [0xEF, 0xBC, 0x91, 0x32, 0x33, 0x34, 0x35, 0x36],  // full-width 1
            [0x2F, 0x32, 0x33, 0x34, 0x35, 0x36],  // '/' just below '0'
            [0x3A, 0x32, 0x33, 0x34, 0x35, 0x36],  // ':' just above '9'
            [],
        ]
        for input in bad {
            #expect(OneTimeCode(utf8: input, length: .six) == nil, "\(input)")
        }
        #expect(OneTimeCode(utf8: Array("042517".utf8), length: .six)?.text == "042517")
    }

    @Test("CodeDigits accepts 6 through 10 only")
    func digitRange() {
        for count in [-1, 0, 1, 5, 11, 20, Int.max] { #expect(CodeDigits(count) == nil) }
        for count in 6...10 { #expect(CodeDigits(count)?.count == count) }
        #expect(CodeDigits.six.count == 6)
        #expect(CodeDigits.eight.count == 8)
    }

    @Test("generated codes parse, have the asked length, and are uniform per position")
    func generation() throws {
        for count in 6...10 {
            let length = try #require(CodeDigits(count))
            let code = OneTimeCode.generate(length: length, using: SystemRandom())
            #expect(code.length == length)
            #expect(OneTimeCode(parsing: code.text, length: length) != nil)
        }
        var counts = [[Int]](repeating: [Int](repeating: 0, count: 10), count: 6)
        for _ in 0..<10_000 {
            let code = OneTimeCode.generate(using: SystemRandom())
            for (position, byte) in code.utf8.enumerated() { counts[position][Int(byte - 0x30)] += 1 }
        }
        for (position, digitCounts) in counts.enumerated() {
            // Catches e.g. "100000 + uniform(900000)", which never starts with 0.
            #expect(digitCounts.allSatisfy { $0 > 0 }, "position \(position): \(digitCounts)")
            // chi-squared, 9 degrees of freedom: 50.2 is exceeded with probability 1e-7.
            #expect(chiSquared(digitCounts) < 50.2, "position \(position): \(digitCounts)")
        }
    }

    @Test("generation is driven by the injected RandomSource")
    func injectedRandomness() {
        let a = OneTimeCode.generate(using: SeededRandom(seed: 42)).text
        let b = OneTimeCode.generate(using: SeededRandom(seed: 42)).text
        let c = OneTimeCode.generate(using: SeededRandom(seed: 43)).text
        #expect(a == b)
        #expect(a != c)
    }

    @Test("description and debugDescription never show the digits")
    func redaction() throws {
        let code = try #require(OneTimeCode(parsing: "428913", length: .six))
        #expect(!"\(code)".contains("428913"))
        #expect(!String(reflecting: code).contains("428913"))
        #expect("\(code)" == "<6-digit code>")
    }
}
