import OTPCore
import Testing

@Suite("BackupCode")
struct BackupCodeTests {
    static let alphabet = Set(BackupCode.alphabet)

    @Test("alphabet has no look-alikes, is lower case, and gives at least 64 bits")
    func alphabetAndEntropy() {
        #expect(BackupCode.alphabet.count == 30)
        #expect(Self.alphabet.count == 30)
        for lookAlike in "01oilu" { #expect(!Self.alphabet.contains(lookAlike)) }
        #expect(BackupCode.alphabet == BackupCode.alphabet.lowercased())
        #expect(BackupCode.alphabet.allSatisfy { $0.isASCII })
        #expect(BackupCode.entropyBits >= 64)
        #expect(abs(BackupCode.entropyBits - 78.51) < 0.01)
    }

    @Test("format: 4 groups of 4 alphabet characters joined by dashes")
    func format() {
        for _ in 0..<200 {
            let code = BackupCode.generate(using: SystemRandom())
            let shown = Array(code.formatted)
            #expect(shown.count == 19)
            for (index, character) in shown.enumerated() {
                if [4, 9, 14].contains(index) {
                    #expect(character == "-")
                } else {
                    #expect(Self.alphabet.contains(character), "\(character)")
                }
            }
            #expect(code.normalized == String(shown.filter { $0 != "-" }))
            #expect(BackupCode(parsing: code.formatted)?.normalized == code.normalized)
        }
    }

    @Test("10,000 generated codes: no duplicates, every character seen, uniform")
    func bulk() {
        let codes = BackupCode.generateSet(count: 10_000, using: SystemRandom())
        #expect(codes.count == 10_000)
        #expect(Set(codes.map(\.normalized)).count == 10_000)
        var counts: [Character: Int] = [:]
        for code in codes { for character in code.normalized { counts[character, default: 0] += 1 } }
        #expect(Set(counts.keys) == Self.alphabet)
        // chi-squared, 29 degrees of freedom: 87.1 is exceeded with probability 1e-7.
        let ordered = BackupCode.alphabet.map { counts[$0, default: 0] }
        #expect(chiSquared(ordered) < 87.1, "\(ordered)")
    }

    @Test("the default set has 10 distinct codes")
    func defaultSet() {
        let set = BackupCode.generateSet(using: SystemRandom())
        #expect(set.count == 10)
        #expect(Set(set.map(\.normalized)).count == 10)
    }

    @Test(
        "input is normalised: case, dashes and spaces",
        arguments: [
            "k7mq-2xtp-9fhw-c3rd", "K7MQ-2XTP-9FHW-C3RD", "k7mq2xtp9fhwc3rd", "k7mq 2xtp 9fhw c3rd",
            " k7mq - 2xtp - 9fhw - c3rd ", "K7mQ2xTp-9FhWc3Rd", "k-7-m-q-2-x-t-p-9-f-h-w-c-3-r-d",
        ])
    func accepted(input: String) throws {
        let code = try #require(BackupCode(parsing: input))
        #expect(code.normalized == "k7mq2xtp9fhwc3rd")
        #expect(code.formatted == "k7mq-2xtp-9fhw-c3rd")
    }

    @Test(
        "bad input is refused",
        arguments: [
            "", "k7mq-2xtp-9fhw-c3r",  // 15
            "k7mq-2xtp-9fhw-c3rdd",  // 17
            "k7mq-2xtp-9fhw-c3r0", "k7mq-2xtp-9fhw-c3r1", "k7mq-2xtp-9fhw-c3ro", "k7mq-2xtp-9fhw-c3ri",
            "k7mq-2xtp-9fhw-c3rl", "k7mq-2xtp-9fhw-c3ru", "k7mq_2xtp_9fhw_c3rd", "k7mq.2xtp.9fhw.c3rd",
            "k7mq-2xtp-9fhw-c3rd\0", "\0k7mq-2xtp-9fhw-c3rd", "k7mq-2xtp-9fhw-c3r\u{0}d",
            "ｋ7mq-2xtp-9fhw-c3rd",  // full-width k
            "k7mq-2xtp-9fhw-c3rð", "k7mq-2xtp-9fhw-c3r😀", "k7mq\t2xtp9fhwc3rd", "k7mq\n2xtp9fhwc3rd",
            "k7mq\u{00A0}2xtp9fhwc3rd",  // no-break space
            "K7MQ-2XTP-9FHW-C3RD-K7MQ", String(repeating: "-", count: 60) + "k7mq2xtp9fhwc3rd",
            String(repeating: "k", count: 6_000),
        ])
    func refused(input: String) {
        #expect(BackupCode(parsing: input) == nil)
    }

    @Test("invalid UTF-8 bytes are refused")
    func invalidUTF8() {
        let good = Array("k7mq2xtp9fhwc3rd".utf8)
        #expect(BackupCode(utf8: good) != nil)
        #expect(BackupCode(utf8: good.dropLast() + [0xFF]) == nil)
        #expect(BackupCode(utf8: good.dropLast() + [0xC0, 0xE4]) == nil)  // overlong 'd'
        #expect(BackupCode(utf8: [0xE4] + good.dropFirst()) == nil)
    }

    @Test("description never shows the code")
    func redaction() throws {
        let code = try #require(BackupCode(parsing: "k7mq-2xtp-9fhw-c3rd"))
        #expect(!"\(code)".contains("k7mq"))
        #expect(!String(reflecting: code).contains("k7mq"))
    }
}
