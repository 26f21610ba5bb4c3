import Foundation
import OTPStore
import OTPTestSupport
import Testing

@testable import OTPCore

/// The step-up rules around the table: the enrolment grace, what a first factor voids, the
/// order of checks in SetPhone, the SMS pools, and uniform failures.
@Suite struct StepUpTests {
    @Test func theEnrolmentGraceIsOnlyForAnAccountWithoutAnyFactor() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        // First factor: a grace proof.
        let first = try await f.enrollPhone("a")
        #expect(first.proofToken != nil)
        // SMS on, adding the authenticator with a proof: no second grace proof.
        let enrollment = try await f.service.beginTOTPEnrollment(
            accountID: "a", label: nil, proof: .token(try #require(first.proofToken)))
        let totp = try TOTP(secret: try Base32.decode(enrollment.secretBase32))
        let confirmed = try await f.service.confirmTOTPEnrollment(
            accountID: "a", code: try #require(totp.code(at: f.clock.now())).text)
        #expect(confirmed.success)
        #expect(confirmed.proofToken == nil)

        // Authenticator first, then a phone with an authenticator code: no grace on verify.
        let secret = try await f.enrollTOTP("b")
        f.clock.advance(30)
        _ = try await f.service.setPhone(
            accountID: "b", number: "+15557654321", proof: .totpCode(try #require(secret.code(at: f.clock.now())).text))
        let ticket = try await f.service.startChallenge(accountID: "b", purpose: .verifyPhone)
        let verified = try await f.service.verify(
            accountID: "b", purpose: .verifyPhone, code: f.sender.lastCode, challengeID: ticket.challengeID)
        #expect(verified.success)
        #expect(verified.proofToken == nil)
    }

    /// What was started without a proof while the account had no factor dies with the first
    /// factor: codes from before the rule, a pending authenticator, an unverified number.
    @Test func theFirstFactorVoidsWhatWasStartedWithoutAProof() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        let store = f.store
        // Backup codes written by an older otpd before any factor existed.
        let planted = BackupCode.generateSet(count: 10, using: SeededRandom(seed: 7))
        try await store.transaction { tx in
            try tx.saveAccount(AccountRecord(id: "a", now: f.clock.now()))
            try tx.replaceBackupCodes(
                accountID: "a", hashes: planted.map { f.keys.hashing.hash($0, accountID: "a") }, at: f.clock.now())
        }
        // They are the account's only factor: saving a number takes one of them as the proof.
        _ = try await f.service.setPhone(
            accountID: "a", number: "+15551234567", proof: .backupCode(planted[0].formatted))
        let ticket = try await f.service.startChallenge(accountID: "a", purpose: .verifyPhone)
        let verified = try await f.service.verify(
            accountID: "a", purpose: .verifyPhone, code: f.sender.lastCode, challengeID: ticket.challengeID)
        #expect(verified.success)
        #expect(verified.summary.backupCodesRemaining == 0)
        #expect(!(try await f.service.redeemBackupCode(accountID: "a", code: planted[1].formatted).success))

        // A pending authenticator from before the phone: void once the phone is verified.
        _ = try await f.service.beginTOTPEnrollment(accountID: "b", label: nil, proof: nil)
        try await f.enrollPhone("b", "+15551112222")
        await #expect {
            _ = try await f.service.confirmTOTPEnrollment(accountID: "b", code: "123456")
        } throws: { ($0 as? TwoFactorError)?.kind == .failedPrecondition }

        // An unverified number from before the authenticator: void once it is confirmed.
        _ = try await f.service.setPhone(accountID: "c", number: "+15553334444", proof: nil)
        let codeSent = try await f.service.startChallenge(accountID: "c", purpose: .verifyPhone)
        let code = f.sender.lastCode
        _ = try await f.enrollTOTP("c")
        #expect(try await f.service.status(accountID: "c").phoneMasked.isEmpty)
        let late = try await f.service.verify(
            accountID: "c", purpose: .verifyPhone, code: code, challengeID: codeSent.challengeID)
        #expect(!late.success)
        #expect(!(try await f.service.status(accountID: "c").smsEnabled))
    }

    @Test func turningOffTheLastPrimaryFactorVoidsTheBackupCodes() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        let grace = try #require(try await f.enrollPhone("a").proofToken)
        let codes = try await f.service.generateBackupCodes(accountID: "a", proof: .token(grace)).codes
        let summary = try await f.service.disableFactor(accountID: "a", factor: .sms, proof: .backupCode(codes[0]))
        #expect(!summary.smsEnabled)
        #expect(summary.backupCodesRemaining == 0)
        #expect(summary.setupRequired)
        #expect(!(try await f.service.redeemBackupCode(accountID: "a", code: codes[1]).success))
    }

    /// Without a proof, SetPhone answers the same whether the guessed number is the saved one
    /// or not, and never says "already verified".
    @Test func setPhoneChecksTheProofBeforeComparingNumbers() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        try await f.enrollPhone("a", "+15551234567")
        var answers: [String] = []
        for guess in ["+15551234567", "+15559999999"] {
            do {
                _ = try await f.service.setPhone(accountID: "a", number: guess, proof: nil)
                answers.append("accepted")
            } catch {
                answers.append("\(error.kind) \(error.message)")
            }
        }
        #expect(answers[0] == answers[1])
        #expect(answers[0].hasPrefix("permissionDenied"))
    }

    /// Account A saving B's number and asking for verification texts until the number's pool
    /// is empty leaves B's login texts working.
    @Test func verificationTextsCannotDrainAnotherAccountsLoginTexts() async throws {
        let f = try await Fixture { policy in
            policy.resendCooldown = 0
            policy.smsPerAccountPerHour = 1000
            policy.smsPerPhonePerDay = 10
            policy.smsVerificationsPerPhonePerDay = 5
        }
        defer { f.tearDown() }
        let victimNumber = "+15551234567"
        try await f.enrollPhone("victim", victimNumber)
        _ = try await f.service.setPhone(accountID: "attacker", number: victimNumber, proof: nil)
        var refused: TwoFactorError?
        for _ in 0..<20 {
            do {
                _ = try await f.service.startChallenge(accountID: "attacker", purpose: .verifyPhone)
            } catch {
                refused = error
                break
            }
        }
        #expect(refused?.kind == .resourceExhausted)
        // The victim's login texts come from the other pool.
        for _ in 0..<5 {
            let ticket = try await f.service.startChallenge(accountID: "victim", purpose: .login)
            #expect(!ticket.challengeID.isEmpty)
        }
        // ... which has its own bound.
        await #expect {
            for _ in 0..<10 { _ = try await f.service.startChallenge(accountID: "victim", purpose: .login) }
        } throws: { ($0 as? TwoFactorError)?.kind == .resourceExhausted }
    }

    @Test func testTextsArePaidFromTheBudgetsAndRecorded() async throws {
        let f = try await Fixture { policy in
            policy.smsVerificationsPerPhonePerDay = 2
        }
        defer { f.tearDown() }
        _ = try await f.service.sendTestSMS(number: "+15551234567", actor: "uid 0")
        _ = try await f.service.sendTestSMS(number: "+15551234567", actor: "uid 0")
        await #expect {
            _ = try await f.service.sendTestSMS(number: "+15551234567", actor: "uid 0")
        } throws: { ($0 as? TwoFactorError)?.kind == .resourceExhausted }
        #expect(f.sender.messages.count == 2)
        let events = try await f.service.listEvents(accountID: nil, pageSize: 50, beforeID: nil).events
        #expect(events.filter { $0.kind == .testSMSSent }.count == 2)
        #expect(events.contains { $0.kind == .codeRefused && $0.detail.contains("test text by uid 0") })
        #expect(events.allSatisfy { !$0.destinationMasked.contains("1234567") })
        let deliveries = try await f.service.listDeliveries(accountID: nil, pageSize: 50, beforeID: nil).deliveries
        #expect(deliveries.filter { $0.purpose == "test" }.count == 2)
    }

    /// A failed verification tells nothing about the account: the answer for a known account
    /// with a number, failures and codes equals the answer for an account that does not exist.
    @Test func aFailedVerificationLooksTheSameForKnownAndUnknownAccounts() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        let grace = try #require(try await f.enrollPhone("known").proofToken)
        _ = try await f.service.generateBackupCodes(accountID: "known", proof: .token(grace))
        _ = try await f.service.verify(accountID: "known", purpose: .login, code: "000000", challengeID: nil)
        let known = try await f.service.verify(accountID: "known", purpose: .login, code: "000000", challengeID: nil)
        let unknown = try await f.service.verify(
            accountID: "unknown", purpose: .login, code: "000000", challengeID: nil)
        #expect(known.success == unknown.success)
        #expect(known.attemptsLeft == unknown.attemptsLeft)
        #expect(known.lockedUntil == unknown.lockedUntil)
        #expect(known.summary == AccountSummary(accountID: "known"))
        #expect(unknown.summary == AccountSummary(accountID: "unknown"))

        let knownRedeem = try await f.service.redeemBackupCode(accountID: "known", code: "2222-2222-2222-2222")
        let unknownRedeem = try await f.service.redeemBackupCode(accountID: "unknown", code: "2222-2222-2222-2222")
        #expect(knownRedeem == unknownRedeem)
    }
}
