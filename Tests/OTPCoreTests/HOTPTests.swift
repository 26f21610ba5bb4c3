import OTPCore
import Testing

@Suite("HOTP (RFC 4226)")
struct HOTPTests {
    static let secret = Array("12345678901234567890".utf8)

    @Test("RFC 4226 Appendix D vectors from Tests/OTPCoreTests/Vectors")
    func rfc4226Vectors() throws {
        let rows = try Vectors.rows("rfc4226-hotp.tsv")
        #expect(rows.count == 10)
        for row in rows {
            try #require(row.count == 4, "malformed row \(row)")
            let counter = try #require(UInt64(row[0]))
            let truncated = try #require(UInt32(row[2]))
            #expect(HOTP.truncatedValue(secret: Self.secret, counter: counter) == truncated)
            #expect(HOTP.code(secret: Self.secret, counter: counter).text == row[3])
        }
    }

    @Test("longer codes keep leading zeros and are the truncated value mod 10^digits")
    func digitLengths() throws {
        let rows = try Vectors.rows("rfc4226-hotp.tsv")
        for row in rows {
            let counter = try #require(UInt64(row[0]))
            let truncated = try #require(UInt64(row[2]))
            for count in 6...10 {
                let digits = try #require(CodeDigits(count))
                let code = HOTP.code(secret: Self.secret, counter: counter, digits: digits)
                var modulus: UInt64 = 1
                for _ in 0..<count { modulus *= 10 }
                let expected = String(truncated % modulus)
                let padded = String(repeating: "0", count: count - expected.count) + expected
                #expect(code.text == padded)
                #expect(code.length == digits)
            }
        }
        // Counter 2's truncated value 137359152 has 9 digits: 10-digit code starts with 0.
        #expect(HOTP.code(secret: Self.secret, counter: 2, digits: CodeDigits(10)!).text == "0137359152")
    }
}
