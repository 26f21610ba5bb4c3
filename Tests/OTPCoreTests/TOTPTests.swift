import Foundation
import OTPCore
import OTPTestSupport
import Testing

@Suite("TOTP (RFC 6238)")
struct TOTPTests {
    /// The RFC 6238 seeds: ASCII "1234567890" repeated to the hash's output length.
    static func seed(_ algorithm: OTPHashAlgorithm) -> [UInt8] {
        let length =
            switch algorithm {
            case .sha1: 20
            case .sha256: 32
            case .sha512: 64
            }
        return Array(String(repeating: "1234567890", count: 7).utf8.prefix(length))
    }

    static let secret = Array("12345678901234567890".utf8)

    @Test("RFC 6238 Appendix B vectors from Tests/OTPCoreTests/Vectors, including t = 20000000000")
    func rfc6238Vectors() throws {
        let rows = try Vectors.rows("rfc6238-totp.tsv")
        #expect(rows.count == 18)
        #expect(rows.contains { $0.first == "20000000000" }, "t = 20000000000 missing")
        for row in rows {
            try #require(row.count == 4, "malformed row \(row)")
            let time = try #require(Double(row[0]))
            let step = try #require(UInt64(row[1], radix: 16))
            let algorithm = try #require(OTPHashAlgorithm(rawValue: row[2]))
            let parameters = try #require(
                TOTPParameters(algorithm: algorithm, digits: .eight, period: 30))
            let totp = try TOTP(secret: Self.seed(algorithm), parameters: parameters)
            let date = Date(timeIntervalSince1970: time)
            #expect(parameters.step(at: date) == step, "step at \(row[0])")
            #expect(totp.code(at: date)?.text == row[3], "\(row[2]) at \(row[0])")
            let candidate = try #require(OneTimeCode(parsing: row[3], length: .eight))
            #expect(totp.verify(candidate, at: date, window: 0) == step)
        }
    }

    @Test("window ±1 accepted and returns the matched step; ±2 refused")
    func window() throws {
        let totp = try TOTP(secret: Self.secret)
        let clock = ManualClock(Date(timeIntervalSince1970: 1_111_111_111))
        let current = try #require(totp.parameters.step(at: clock.now()))
        let codes = (-2...2).map { totp.code(forStep: current &+ UInt64(bitPattern: Int64($0))) }
        // The test needs the five codes to differ, or "refused" would not be meaningful.
        try #require(Set(codes.map(\.text)).count == 5)

        for offset in -1...1 {
            let step = UInt64(Int64(current) + Int64(offset))
            #expect(totp.verify(codes[offset + 2], at: clock.now()) == step, "offset \(offset)")
        }
        #expect(totp.verify(codes[0], at: clock.now()) == nil, "two steps behind")
        #expect(totp.verify(codes[4], at: clock.now()) == nil, "two steps ahead")

        #expect(totp.verify(codes[0], at: clock.now(), window: 2) == current - 2)
        #expect(totp.verify(codes[4], at: clock.now(), window: 2) == current + 2)
        #expect(totp.verify(codes[1], at: clock.now(), window: 0) == nil)
        #expect(totp.verify(codes[2], at: clock.now(), window: 0) == current)

        // Anywhere inside the 30-second step gives the same answer.
        clock.advance(29 - Double(1_111_111_111 % 30))
        #expect(totp.parameters.step(at: clock.now()) == current)
        #expect(totp.verify(codes[3], at: clock.now()) == current + 1)
        clock.advance(1)
        #expect(totp.verify(codes[1], at: clock.now()) == nil, "now two steps behind")
    }

    @Test("a code matching two steps of the window returns the later step")
    func collisionReturnsLatestStep() throws {
        // With the RFC secret, steps 153567 and 153569 share the 6-digit code 468457 (found by
        // an offline search). Checking every step without an early exit, keeping the last
        // match, must return 153569; an early exit or first-match rule would return 153567.
        let totp = try TOTP(secret: Self.secret)
        try #require(totp.code(forStep: 153_567).text == "468457")
        try #require(totp.code(forStep: 153_569).text == "468457")
        try #require(totp.code(forStep: 153_568).text != "468457")
        let candidate = try #require(OneTimeCode(parsing: "468457", length: .six))
        let date = Date(timeIntervalSince1970: 153_568 * 30 + 5)
        #expect(totp.verify(candidate, at: date) == 153_569)
        #expect(totp.verify(candidate, at: date, window: 0) == nil)
    }

    @Test("a wrong code and a code of the wrong length are refused")
    func wrongCodes() throws {
        let totp = try TOTP(secret: Self.secret)
        let date = Date(timeIntervalSince1970: 59)
        let right = try #require(totp.code(at: date))
        #expect(right.text == "287082")  // RFC 4226 counter 1, 6 digits
        let wrongDigit = right.text.last == "0" ? "1" : "0"
        let wrong = try #require(OneTimeCode(parsing: String(right.text.dropLast()) + wrongDigit, length: .six))
        #expect(totp.verify(wrong, at: date) == nil)
        let eight = try #require(OneTimeCode(parsing: "94287082", length: .eight))
        #expect(totp.verify(eight, at: date) == nil)
    }

    @Test("replay: same step, older step and two steps ahead are refused")
    func replay() throws {
        let totp = try TOTP(secret: Self.secret)
        let clock = ManualClock(Date(timeIntervalSince1970: 2_000_000_000))
        var lastAccepted: UInt64? = nil

        func attempt(_ code: OneTimeCode) -> Bool {
            guard let step = totp.verify(code, at: clock.now()),
                TOTP.acceptableStep(matched: step, lastAccepted: lastAccepted)
            else { return false }
            lastAccepted = step
            return true
        }

        let now = try #require(totp.code(at: clock.now()))
        let current = try #require(totp.parameters.step(at: clock.now()))
        #expect(attempt(now))
        #expect(lastAccepted == current)
        #expect(!attempt(now), "reuse within the same step")
        #expect(!attempt(totp.code(forStep: current - 1)), "older step after a newer one")
        #expect(!attempt(totp.code(forStep: current + 2)), "two steps ahead")
        clock.advance(30)
        #expect(attempt(try #require(totp.code(at: clock.now()))), "next step is fine")
        #expect(lastAccepted == current + 1)
    }

    @Test("acceptableStep is strictly greater than the last accepted step")
    func acceptableStep() {
        #expect(TOTP.acceptableStep(matched: 0, lastAccepted: nil))
        #expect(TOTP.acceptableStep(matched: 5, lastAccepted: 4))
        #expect(!TOTP.acceptableStep(matched: 5, lastAccepted: 5))
        #expect(!TOTP.acceptableStep(matched: 4, lastAccepted: 5))
        #expect(!TOTP.acceptableStep(matched: 0, lastAccepted: UInt64.max))
    }

    @Test("times before the epoch have no step and never verify")
    func beforeEpoch() throws {
        let totp = try TOTP(secret: Self.secret)
        let before = Date(timeIntervalSince1970: -1)
        #expect(totp.parameters.step(at: before) == nil)
        #expect(totp.code(at: before) == nil)
        let code = totp.code(forStep: 0)
        #expect(totp.verify(code, at: before) == nil)
        // At t = 0 the window reaches only steps 0 and 1; no underflow.
        #expect(totp.verify(code, at: Date(timeIntervalSince1970: 0)) == 0)
    }

    @Test("secrets shorter than 128 bits, bad periods and digit counts are refused")
    func validation() throws {
        #expect(throws: TOTPError.secretTooShort(byteCount: 15)) {
            try TOTP(secret: [UInt8](repeating: 1, count: 15))
        }
        #expect(throws: TOTPError.secretTooShort(byteCount: 0)) { try TOTP(secret: []) }
        _ = try TOTP(secret: [UInt8](repeating: 1, count: 16))
        #expect(TOTPParameters(algorithm: .sha1, digits: .six, period: 0) == nil)
        #expect(TOTPParameters(algorithm: .sha1, digits: .six, period: 301) == nil)
        #expect(TOTPParameters(algorithm: .sha1, digits: .six, period: 60) != nil)
        #expect(TOTPParameters.standard.algorithm == .sha1)
        #expect(TOTPParameters.standard.digits.count == 6)
        #expect(TOTPParameters.standard.period == 30)
        #expect(TOTP.generateSecret(using: SystemRandom()).count == 20)
        #expect(TOTP.generateSecret(using: SystemRandom()) != TOTP.generateSecret(using: SystemRandom()))
    }

    @Test("description never shows the secret")
    func redaction() throws {
        let totp = try TOTP(secret: Self.secret)
        let text = "\(totp) \(String(reflecting: totp))"
        #expect(!text.contains("1234567890"))
        #expect(!text.contains(Base32.encode(Self.secret)))
        #expect(text.contains("redacted"))
    }
}
