import Foundation
import OTPCore
import OTPStore
import OTPTestSupport
import Testing

@Suite("unknown accounts")
struct UnknownAccountTests {
    /// An unknown account gets the plain failure, no row is made for it, and the daemon-wide
    /// counter (the write that keeps its commit as large as a wrong code's) counts it.
    @Test func aVerificationForAnUnknownAccountFailsPlainlyAndIsCounted() async throws {
        let fixture = try await Fixture(on: .sqlite)
        defer { fixture.tearDown() }
        for _ in 0..<3 {
            let outcome = try await fixture.service.verify(
                accountID: "nobody", purpose: .login, code: "123456", challengeID: "ch_x")
            #expect(!outcome.success && outcome.attemptsLeft == 0 && outcome.lockedUntil == nil)
        }
        let (counter, accounts) = try await fixture.database.write { db in
            (
                try db.query("SELECT value FROM daemon_meta WHERE key = 'unknown_account_attempts'").first?.first?.text,
                try db.scalar("SELECT count(*) FROM accounts")
            )
        }
        #expect(counter == "3")
        #expect(accounts == 0)
    }
}
