import Foundation
import OTPCore
import OTPTestSupport
import Testing

@Suite("lockout, SMS budgets, authenticator, phone change, backup codes")
struct LimitsAndFactorsTests {
    private func fail(_ f: Fixture, _ account: String, times: Int) async throws {
        for _ in 0..<times {
            _ = try await f.service.verify(accountID: account, purpose: .login, code: "000000", challengeID: nil)
        }
    }

    @Test func lockoutGrowsAndHoldsEvenForTheRightCode() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        let totp = try await f.enrollTOTP("a", proof: .token(try #require(try await f.issueManageProof("a"))))
        try await fail(f, "a", times: 9)
        #expect(try await f.service.status(accountID: "a").locked == false)
        try await fail(f, "a", times: 1)
        var status = try await f.service.status(accountID: "a")
        #expect(status.locked)
        #expect(status.lockedUntil == f.clock.now().addingTimeInterval(60))

        // The right code while locked: refused, and counted.
        f.clock.advance(30)
        let whileLocked = try await f.service.verify(
            accountID: "a", purpose: .login, code: totp.code(at: f.clock.now())!.text, challengeID: nil)
        #expect(!whileLocked.success)
        #expect(whileLocked.lockedUntil != nil)
        #expect(try await f.service.status(accountID: "a").consecutiveFailures == 11)

        // After the lock, 9 more failures lock again, for longer.
        f.clock.advance(31)
        try await fail(f, "a", times: 9)
        status = try await f.service.status(accountID: "a")
        #expect(status.locked)
        #expect(status.lockedUntil == f.clock.now().addingTimeInterval(300))
        let kinds = try await f.service.listEvents(accountID: "a", pageSize: 100, beforeID: nil).events.map(\.kind)
        #expect(kinds.filter { $0 == .accountLocked }.count == 2)

        // A success ends the streak.
        f.clock.advance(301)
        let ok = try await f.service.verify(
            accountID: "a", purpose: .login, code: totp.code(at: f.clock.now())!.text, challengeID: nil)
        #expect(ok.success)
        #expect(try await f.service.status(accountID: "a").consecutiveFailures == 0)
    }

    @Test func aHundredConsecutiveFailuresLockUntilAnAdministratorUnlocks() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        for _ in 0..<100 {
            _ = try await f.service.verify(accountID: "a", purpose: .login, code: "000000", challengeID: nil)
            f.clock.advance(3601)  // outlast every timed lock
        }
        let status = try await f.service.status(accountID: "a")
        #expect(status.locked)
        #expect(status.lockedUntil == .distantFuture)
        f.clock.advance(86_400 * 30)
        #expect(try await f.service.status(accountID: "a").locked)
        let unlocked = try await f.service.unlock(accountID: "a", actor: "support", reason: "verified by phone call")
        #expect(!unlocked.locked)
        #expect(unlocked.consecutiveFailures == 0)
        let event = try await f.service.listEvents(accountID: "a", pageSize: 1, beforeID: nil).events.first
        #expect(event?.kind == .accountUnlocked)
        #expect(event?.detail.contains("by support: verified by phone call") == true)
    }

    /// Guesses at a locked account all count, but the audit trail keeps the first refused guess
    /// of each lock and those at powers of two (docs/SECURITY.md §11), and an account locked
    /// for good is locked (and notified) once: before, each guess at it wrote two events, so a
    /// bot could grow the database without bound.
    @Test func guessesAtALockedAccountCountButTheirEventsStayFew() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        func events() async throws -> [EventRecord] { try await allEvents(f, "a") }
        try await fail(f, "a", times: 10)  // locked for 60 s at 10
        let atFirstLock = try await events().count

        // 25 guesses inside the locks: counts 11...35, locked again at 20 and 30. Own events
        // for 11, 21 and 31 (the first of each lock) and 16 and 32 (powers of two); 2 locks.
        try await fail(f, "a", times: 25)
        var status = try await f.service.status(accountID: "a")
        #expect(status.consecutiveFailures == 35)
        #expect(status.lockedUntil == f.clock.now().addingTimeInterval(900))
        var added = Array(try await events().dropLast(atFirstLock))
        #expect(added.filter { $0.kind == .accountLocked }.count == 2)
        #expect(
            added.filter { $0.kind == .verify }.map(\.detail).sorted()
                == [11, 16, 21, 31, 32].map { "login: account locked; \($0) consecutive failures" }.sorted())

        // On to the lock that only an administrator ends (100), outlasting every timed lock.
        while try await f.service.status(accountID: "a").consecutiveFailures < 100 {
            f.clock.advance(3601)
            try await fail(f, "a", times: 1)
        }
        status = try await f.service.status(accountID: "a")
        #expect(status.lockedUntil == .distantFuture)
        let atPermanentLock = try await events()
        #expect(atPermanentLock.prefix(2).map(\.kind).contains(.accountLocked))

        // 1,000 guesses more, the 1024th a backup code: all counted, 5 events (101, 128, 256,
        // 512, 1024), and no new lock.
        try await fail(f, "a", times: 923)
        let redemption = try await f.service.redeemBackupCode(accountID: "a", code: "0000-0000")
        #expect(!redemption.success)
        #expect(redemption.lockedUntil == .distantFuture)
        try await fail(f, "a", times: 76)
        status = try await f.service.status(accountID: "a")
        #expect(status.consecutiveFailures == 1100)
        added = Array(try await events().dropLast(atPermanentLock.count))
        #expect(
            added.map(\.detail).sorted()
                == ([101, 128, 256, 512].map { "login: account locked; \($0) consecutive failures" }
                + ["account locked; 1024 consecutive failures"]).sorted())
        #expect(added.filter { $0.kind == .backupCodeRedeemed }.count == 1)
        #expect(added.allSatisfy { $0.kind != .accountLocked })
    }

    /// Every event of `account`, newest first.
    private func allEvents(_ f: Fixture, _ account: String) async throws -> [EventRecord] {
        var all: [EventRecord] = []
        var before: Int64?
        repeat {
            let page = try await f.service.listEvents(accountID: account, pageSize: 500, beforeID: before)
            all += page.events
            before = page.nextBeforeID
        } while before != nil
        return all
    }

    /// Refusals that count nowhere else (a step-up without its proof, a text refused by a
    /// budget) are each answered, but an account's audit trail keeps 10 of a kind an hour
    /// (docs/SECURITY.md §11): before, a stolen session could add an event with every request,
    /// for as long as it kept sending.
    @Test func refusalsAddAtMostTenEventsOfAKindPerAccountAndHour() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        let before = try await allEvents(f, "a").count
        for _ in 0..<30 {
            await #expect(throws: TwoFactorError.self) {
                _ = try await f.service.setPhone(accountID: "a", number: "+14155550199", proof: nil)
            }
        }
        _ = try await f.challenge("a", .login)
        for _ in 0..<30 { await expectExhausted(f, "a", .login, retryAfter: 30) }
        var added = Array(try await allEvents(f, "a").dropLast(before))
        #expect(added.filter { $0.kind == .proof && $0.outcome == .refused }.count == 10)
        #expect(added.filter { $0.kind == .codeRefused }.count == 10)
        #expect(added.filter { $0.kind == .codeSent }.count == 1)
        let capped = added.filter { $0.detail.hasSuffix("; further ones within the hour are not recorded") }
        #expect(capped.map(\.kind).sorted { $0.rawValue < $1.rawValue } == [.codeRefused, .proof])

        // An hour on, refusals are recorded again.
        f.clock.advance(3601)
        await #expect(throws: TwoFactorError.self) {
            _ = try await f.service.setPhone(accountID: "a", number: "+14155550199", proof: nil)
        }
        added = Array(try await allEvents(f, "a").dropLast(before))
        #expect(added.filter { $0.kind == .proof && $0.outcome == .refused }.count == 11)
        #expect(added.first?.detail.contains("no proof offered") == true)
    }

    @Test func resendCooldownGrowsAndBudgetsHold() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")  // 1 verify_phone send
        f.clock.advance(3601)
        _ = try await f.challenge("a", .login)
        await expectExhausted(f, "a", .login, retryAfter: 30)
        f.clock.advance(30)
        _ = try await f.challenge("a", .login)
        await expectExhausted(f, "a", .login, retryAfter: 60)
        f.clock.advance(60)
        _ = try await f.challenge("a", .login)
        f.clock.advance(120)
        _ = try await f.challenge("a", .login)
        f.clock.advance(240)
        _ = try await f.challenge("a", .login)  // 5 in the hour
        f.clock.advance(480)
        await #expect {
            _ = try await f.service.startChallenge(accountID: "a", purpose: .login)
        } throws: { error in
            let error = error as? TwoFactorError
            return error?.kind == .resourceExhausted && error?.message.contains("Too many codes") == true
        }
        let sends = f.sender.messages.count
        #expect(sends == 6)
    }

    private func expectExhausted(_ f: Fixture, _ account: String, _ purpose: CodePurpose, retryAfter: Int) async {
        await #expect {
            _ = try await f.service.startChallenge(accountID: account, purpose: purpose)
        } throws: { error in
            let error = error as? TwoFactorError
            return error?.kind == .resourceExhausted && error?.retryAfter == retryAfter
        }
    }

    @Test func perPhoneGlobalAndCountryLimits() async throws {
        let f = try await Fixture {
            $0.smsPerAccountPerHour = 1000
            $0.resendCooldown = 0
            $0.smsPerPhonePerDay = 3
            $0.smsGlobalPerMinute = 5
            $0.allowedCountryCodes = ["1", "44"]
        }
        defer { f.tearDown() }
        await #expect {
            _ = try await f.service.setPhone(accountID: "x", number: "+33612345678", proof: nil)
        } throws: { ($0 as? TwoFactorError)?.kind == .failedPrecondition }

        try await f.enrollPhone("a")
        // The verification text came from the number's other pool: three login texts fit.
        _ = try await f.challenge("a", .login)
        _ = try await f.challenge("a", .login)
        _ = try await f.challenge("a", .login)
        await #expect {
            _ = try await f.service.startChallenge(accountID: "a", purpose: .login)
        } throws: { ($0 as? TwoFactorError)?.message.contains("this phone number today") == true }

        f.clock.advance(61)
        for i in 0..<5 {
            _ = try await f.service.setPhone(accountID: "g\(i)", number: "+4477009001\(10 + i)", proof: nil)
            _ = try await f.challenge("g\(i)", .verifyPhone)
        }
        _ = try await f.service.setPhone(accountID: "g9", number: "+447700900199", proof: nil)
        await #expect {
            _ = try await f.service.startChallenge(accountID: "g9", purpose: .verifyPhone)
        } throws: { ($0 as? TwoFactorError)?.kind == .resourceExhausted }
    }

    @Test func authenticatorCodesAreInterchangeableAndNeverReplayed() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        let proof = try #require(try await f.issueManageProof("a"))
        let enrollment = try await f.service.beginTOTPEnrollment(
            accountID: "a", label: "alice@shop.example", proof: .token(proof))
        #expect(enrollment.otpauthURI.hasPrefix("otpauth://totp/otpd:alice@shop.example?secret="))
        #expect(try Base32.decode(enrollment.secretBase32).count == 20)
        let totp = try TOTP(secret: try Base32.decode(enrollment.secretBase32))
        // Not on before confirmation.
        #expect(!(try await f.service.status(accountID: "a").totpEnabled))
        let wrong = try await f.service.confirmTOTPEnrollment(accountID: "a", code: "000000")
        #expect(!wrong.success || totp.code(at: f.clock.now())!.text == "000000")
        let confirmed = try await f.service.confirmTOTPEnrollment(
            accountID: "a", code: totp.code(at: f.clock.now())!.text)
        #expect(confirmed.success)
        #expect(confirmed.summary.totpEnabled)

        // Same step again (the confirmation used it): refused.
        f.clock.advance(1)
        let replay = try await f.service.verify(
            accountID: "a", purpose: .login, code: totp.code(at: f.clock.now())!.text, challengeID: nil)
        #expect(!replay.success)
        let replayEvent = try await f.service.listEvents(accountID: "a", pageSize: 3, beforeID: nil).events.map(\.kind)
        #expect(replayEvent.contains(.totpReplayRefused))
        let replayDetails = try await f.service.listEvents(accountID: "a", pageSize: 3, beforeID: nil).events
            .map(\.detail)
        #expect(replayDetails.contains("login: authenticator code replayed"), "\(replayDetails)")

        // Next step: accepted for login and as proof for a phone change; two steps ahead: refused.
        f.clock.advance(30)
        let login = try await f.service.verify(
            accountID: "a", purpose: .login, code: totp.code(at: f.clock.now())!.text, challengeID: nil)
        #expect(login.success)
        #expect(login.factor == .totp)
        let ahead = totp.code(at: f.clock.now().addingTimeInterval(60))!.text
        #expect(!(try await f.service.verify(accountID: "a", purpose: .login, code: ahead, challengeID: nil).success))
        // An earlier step after a later one: refused.
        f.clock.advance(30)
        let earlier = totp.code(at: f.clock.now().addingTimeInterval(-30))!.text
        #expect(!(try await f.service.verify(accountID: "a", purpose: .login, code: earlier, challengeID: nil).success))

        f.clock.advance(30)
        let change = try await f.service.setPhone(
            accountID: "a", number: "+447700900123", proof: .totpCode(totp.code(at: f.clock.now())!.text))
        #expect(change.pending)
        // The authenticator does not prove a new number.
        f.clock.advance(30)
        #expect(
            !(try await f.service.verify(
                accountID: "a", purpose: .verifyPhone, code: totp.code(at: f.clock.now())!.text, challengeID: nil
            )
            .success))
    }

    @Test func changingTheNumberNeedsAProofAndTheNewNumberVerified() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a", "+15551234567")
        await #expect {
            _ = try await f.service.setPhone(accountID: "a", number: "+447700900123", proof: nil)
        } throws: { ($0 as? TwoFactorError)?.kind == .permissionDenied }
        // A login code is not a change_phone proof.
        f.clock.advance(31)
        let login = try await f.challenge("a", .login)
        let loginOutcome = try await f.service.verify(
            accountID: "a", purpose: .login, code: login.code, challengeID: login.id)
        #expect(loginOutcome.proofToken == nil)

        let change = try await f.challenge("a", .changePhone)
        #expect(f.sender.messages.last?.to.e164 == "+15551234567", "the change code goes to the current number")
        #expect(f.sender.messages.last?.body.contains("to change your phone number") == true)
        let proven = try await f.service.verify(
            accountID: "a", purpose: .changePhone, code: change.code, challengeID: change.id)
        let token = try #require(proven.proofToken)
        let pending = try await f.service.setPhone(accountID: "a", number: "+447700900123", proof: .token(token))
        #expect(pending.pending)
        #expect(pending.summary.phoneMasked == "+1******4567")
        #expect(pending.summary.pendingPhoneMasked == "+44******0123")
        // The proof was single use.
        await #expect {
            _ = try await f.service.setPhone(accountID: "a", number: "+447700900999", proof: .token(token))
        } throws: { ($0 as? TwoFactorError)?.kind == .permissionDenied }

        // The old number still gets login codes until the new one is verified.
        f.clock.advance(61)
        _ = try await f.challenge("a", .login)
        #expect(f.sender.messages.last?.to.e164 == "+15551234567")
        let verify = try await f.challenge("a", .verifyPhone)
        #expect(f.sender.messages.last?.to.e164 == "+447700900123")
        let replaced = try await f.service.verify(
            accountID: "a", purpose: .verifyPhone, code: verify.code, challengeID: verify.id)
        #expect(replaced.success)
        #expect(replaced.summary.phoneMasked == "+44******0123")
        #expect(replaced.summary.pendingPhoneMasked.isEmpty)
        f.clock.advance(3601)
        _ = try await f.challenge("a", .login)
        #expect(f.sender.messages.last?.to.e164 == "+447700900123", "the old number no longer receives codes")
    }

    @Test func disablingSMSNeedsAProofAndLeavesNothingHalfConfigured() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        await #expect {
            _ = try await f.service.disableFactor(accountID: "a", factor: .sms, proof: nil)
        } throws: { ($0 as? TwoFactorError)?.kind == .permissionDenied }
        f.clock.advance(31)
        let code = try await f.challenge("a", .disableFactor)
        let proof = try await f.service.verify(
            accountID: "a", purpose: .disableFactor, code: code.code, challengeID: code.id)
        let summary = try await f.service.disableFactor(
            accountID: "a", factor: .sms, proof: .token(try #require(proof.proofToken)))
        #expect(!summary.smsEnabled)
        #expect(summary.phoneMasked.isEmpty)
        #expect(summary.pendingPhoneMasked.isEmpty)
        #expect(summary.preferred == nil)
        #expect(summary.setupRequired)
    }

    @Test func preferredMethodOnlyAmongFactorsThatAreOn() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        await #expect {
            _ = try await f.service.setPreferredMethod(accountID: "a", method: .totp, proof: nil)
        } throws: { ($0 as? TwoFactorError)?.kind == .failedPrecondition }
        let totp = try await f.enrollTOTP("a", proof: .token(try #require(try await f.issueManageProof("a"))))
        f.clock.advance(30)
        // Changing it needs a proof like any other factor change (the step-up table).
        await #expect {
            _ = try await f.service.setPreferredMethod(accountID: "a", method: .totp, proof: nil)
        } throws: { ($0 as? TwoFactorError)?.kind == .permissionDenied }
        let code = try #require(totp.code(at: f.clock.now())).text
        #expect(
            try await f.service.setPreferredMethod(accountID: "a", method: .totp, proof: .totpCode(code)).preferred
                == .totp)
    }

    @Test func backupCodesWorkOnceAndRegenerationVoidsTheOldSet() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        let grace = try #require(try await f.enrollPhone("a").proofToken)
        let set = try await f.service.generateBackupCodes(accountID: "a", proof: .token(grace))
        #expect(set.codes.count == 10)
        #expect(try await f.service.status(accountID: "a").backupCodesRemaining == 10)
        // Regenerating needs a proof now.
        await #expect {
            _ = try await f.service.generateBackupCodes(accountID: "a", proof: nil)
        } throws: { ($0 as? TwoFactorError)?.kind == .permissionDenied }

        let first = try await f.service.redeemBackupCode(accountID: "a", code: set.codes[0].uppercased())
        #expect(first.success)
        #expect(first.remaining == 9)
        #expect(!(try await f.service.redeemBackupCode(accountID: "a", code: set.codes[0]).success))
        for code in set.codes[1...6] {
            #expect(
                try await f.service.redeemBackupCode(accountID: "a", code: code.replacingOccurrences(of: "-", with: ""))
                    .success)
        }
        let low = try await f.service.redeemBackupCode(accountID: "a", code: "  \(set.codes[7])  ")
        #expect(low.remaining == 2)
        #expect(low.low)
        let kinds = try await f.service.listEvents(accountID: "a", pageSize: 5, beforeID: nil).events.map(\.kind)
        #expect(kinds.contains(.backupCodesLow))

        // A backup code proves a lost phone's change; then regenerate voids the rest.
        let pending = try await f.service.setPhone(
            accountID: "a", number: "+447700900123", proof: .backupCode(set.codes[8]))
        #expect(pending.pending)
        f.clock.advance(31)
        let manage = try await f.challenge("a", .manageFactors)
        let proof = try await f.service.verify(
            accountID: "a", purpose: .manageFactors, code: manage.code, challengeID: manage.id)
        let fresh = try await f.service.generateBackupCodes(
            accountID: "a", proof: .token(try #require(proof.proofToken)))
        #expect(!(try await f.service.redeemBackupCode(accountID: "a", code: set.codes[9]).success), "old set void")
        #expect(Set(fresh.codes).isDisjoint(with: set.codes))
        #expect(try await f.service.status(accountID: "a").backupCodesRemaining == 10)
    }

    @Test func resetRemovesEveryFactorButKeepsTheAuditTrail() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        let reset = try await f.service.reset(accountID: "a", actor: "admin", reason: "left the company")
        #expect(reset.setupRequired)
        #expect(try await f.service.status(accountID: "a") == AccountSummary(accountID: "a"))
        let kinds = try await f.service.listEvents(accountID: "a", pageSize: 100, beforeID: nil).events.map(\.kind)
        #expect(kinds.first == .accountReset)
        #expect(kinds.contains(.phoneVerified))
    }

    @Test func eventsArePagedNewestFirst() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await fail(f, "nobody", times: 7)
        let first = try await f.service.listEvents(accountID: "nobody", pageSize: 3, beforeID: nil)
        #expect(first.events.count == 3)
        let second = try await f.service.listEvents(accountID: "nobody", pageSize: 3, beforeID: first.nextBeforeID)
        let third = try await f.service.listEvents(accountID: "nobody", pageSize: 3, beforeID: second.nextBeforeID)
        #expect(third.events.count == 1)
        #expect(third.nextBeforeID == nil)
        let ids = (first.events + second.events + third.events).map(\.id)
        #expect(ids == ids.sorted(by: >))
    }

    @Test func accountIDsAreBounded() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        for bad in ["", String(repeating: "a", count: 129), "a\nb", "a\u{0}b"] {
            await #expect(throws: TwoFactorError.self) { _ = try await f.service.status(accountID: bad) }
        }
        #expect(try await f.service.status(accountID: "ünïcödé-ok").accountID == "ünïcödé-ok")
    }
}

extension Fixture {
    /// A manage_factors proof from an SMS code (SMS must be on).
    func issueManageProof(_ account: String) async throws -> String? {
        clock.advance(31)
        let code = try await challenge(account, .manageFactors)
        return try await service.verify(
            accountID: account, purpose: .manageFactors, code: code.code, challengeID: code.id
        ).proofToken
    }
}

@Suite("country budget")
struct CountryBudgetTests {
    @Test func aCountryCallingCodeHasItsOwnHourlyBudget() async throws {
        let f = try await Fixture {
            $0.smsPerCountryPerHour = 3
            $0.smsGlobalPerMinute = 1000
        }
        defer { f.tearDown() }
        for i in 0..<3 {
            _ = try await f.service.setPhone(accountID: "uk\(i)", number: "+4477009001\(10 + i)", proof: nil)
            _ = try await f.challenge("uk\(i)", .verifyPhone)
        }
        _ = try await f.service.setPhone(accountID: "uk9", number: "+447700900199", proof: nil)
        await #expect {
            _ = try await f.service.startChallenge(accountID: "uk9", purpose: .verifyPhone)
        } throws: { error in
            let error = error as? TwoFactorError
            return error?.kind == .resourceExhausted && error?.logDetail?.contains("country +44") == true
        }
        // Another country is unaffected; an hour later +44 works again.
        _ = try await f.service.setPhone(accountID: "us", number: "+15551234567", proof: nil)
        _ = try await f.challenge("us", .verifyPhone)
        f.clock.advance(3601)
        _ = try await f.challenge("uk9", .verifyPhone)
    }
}
