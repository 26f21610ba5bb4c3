import Foundation
import OTPCore
import OTPTestSupport
import Testing

@Suite("phone enrolment, codes and verification")
struct PhoneAndCodeTests {
    @Test func theProductFlow() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        let account = "admin-1"
        var status = try await f.service.status(accountID: account)
        #expect(status.setupRequired)
        #expect(status.phoneMasked.isEmpty)

        let saved = try await f.service.setPhone(accountID: account, number: "+1 555-123.4567", proof: nil)
        #expect(saved.summary.phoneMasked == "+1******4567")
        #expect(!saved.summary.phoneVerified)
        #expect(!saved.pending)

        let ticket = try await f.service.startChallenge(accountID: account, purpose: .verifyPhone)
        #expect(ticket.destinationMasked == "+1******4567")
        #expect(ticket.expiresAt == f.clock.now().addingTimeInterval(300))
        #expect(ticket.resendAt == f.clock.now().addingTimeInterval(30))
        #expect(ticket.codeLength == 6)
        let message = try #require(f.sender.messages.last)
        #expect(message.to.e164 == "+15551234567")
        #expect(message.body.contains("to verify this phone number"))
        #expect(f.sender.lastCode.count == 6)

        let verified = try await f.service.verify(
            accountID: account, purpose: .verifyPhone, code: f.sender.lastCode, challengeID: ticket.challengeID)
        #expect(verified.success)
        #expect(verified.factor == .sms)
        #expect(verified.summary.phoneVerified)
        #expect(verified.summary.smsEnabled)
        #expect(verified.summary.preferred == .sms)
        #expect(!verified.summary.setupRequired)
        #expect(verified.proofToken != nil, "the enrolment grants a manage_factors proof for the first backup codes")

        f.clock.advance(31)
        let login = try await f.challenge(account, .login)
        #expect(f.sender.messages.last?.body.contains("to sign in") == true)
        let loggedIn = try await f.service.verify(
            accountID: account, purpose: .login, code: login.code, challengeID: login.id)
        #expect(loggedIn.success)
        #expect(loggedIn.proofToken == nil)
        status = try await f.service.status(accountID: account)
        #expect(status.consecutiveFailures == 0)

        let events = try await f.service.listEvents(accountID: account, pageSize: 50, beforeID: nil).events
        let kinds = events.map(\.kind)
        #expect(kinds.contains(.phoneSaved))
        #expect(kinds.contains(.phoneVerified))
        #expect(kinds.contains(.codeSent))
        for event in events {
            #expect(!event.detail.contains(login.code))
            #expect(!event.detail.contains("5551234567"))
            #expect(!event.destinationMasked.contains("5551234567"))
        }
    }

    @Test(arguments: [
        ("5551234567", "start with +"), ("+1555abc4567", "letters"), ("+1234567", "at least 8"),
        ("+1234567890123456", "at most 15"), ("+0123456789", "0"), ("", "empty"),
    ])
    func phoneNumbersMustBeE164(_ input: String, _ fragment: String) async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        await #expect {
            _ = try await f.service.setPhone(accountID: "a", number: input, proof: nil)
        } throws: { error in
            guard let error = error as? TwoFactorError else { return false }
            return error.kind == .invalidArgument && error.message.lowercased().contains(fragment.lowercased())
        }
    }

    @Test func codesExpire() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        f.clock.advance(60)
        let first = try await f.challenge("a", .login)
        f.clock.advance(299)
        #expect(
            try await f.service.verify(accountID: "a", purpose: .login, code: first.code, challengeID: first.id).success
        )

        f.clock.advance(60)
        let second = try await f.challenge("a", .login)
        f.clock.advance(300)
        let late = try await f.service.verify(
            accountID: "a", purpose: .login, code: second.code, challengeID: second.id)
        #expect(!late.success)
        let events = try await f.service.listEvents(accountID: "a", pageSize: 1, beforeID: nil).events
        #expect(events.first?.detail.contains("expired") == true)
    }

    @Test func aCodeWorksOnceAndOnlyForItsPurposeAndAccount() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        try await f.enrollPhone("b", "+447700900123")
        f.clock.advance(60)
        let login = try await f.challenge("a", .login)
        // Another purpose, another account: refused.
        #expect(
            !(try await f.service.verify(accountID: "a", purpose: .changePhone, code: login.code, challengeID: login.id)
                .success))
        #expect(
            !(try await f.service.verify(accountID: "b", purpose: .login, code: login.code, challengeID: login.id)
                .success))
        // The right one works, once.
        #expect(
            try await f.service.verify(accountID: "a", purpose: .login, code: login.code, challengeID: login.id).success
        )
        #expect(
            !(try await f.service.verify(accountID: "a", purpose: .login, code: login.code, challengeID: login.id)
                .success))
    }

    @Test func aNewCodeVoidsThePreviousOneButNotTheFailureCounter() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        f.clock.advance(60)
        let first = try await f.challenge("a", .login)
        _ = try await f.service.verify(
            accountID: "a", purpose: .login, code: f.wrongCode(than: first.code), challengeID: first.id)
        f.clock.advance(31)
        let second = try await f.challenge("a", .login)
        #expect(
            try await f.service.status(accountID: "a").consecutiveFailures == 1, "a new code does not reset the counter"
        )
        #expect(
            !(try await f.service.verify(accountID: "a", purpose: .login, code: first.code, challengeID: first.id)
                .success))
        #expect(
            try await f.service.verify(accountID: "a", purpose: .login, code: second.code, challengeID: second.id)
                .success)
        #expect(try await f.service.status(accountID: "a").consecutiveFailures == 0, "a success does")
    }

    @Test func fiveWrongCodesUseUpAChallenge() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        f.clock.advance(60)
        let login = try await f.challenge("a", .login)
        var left: [Int] = []
        for _ in 0..<5 {
            let outcome = try await f.service.verify(
                accountID: "a", purpose: .login, code: f.wrongCode(than: login.code), challengeID: login.id)
            #expect(!outcome.success)
            left.append(outcome.attemptsLeft)
        }
        #expect(left == [4, 3, 2, 1, 0])
        #expect(
            !(try await f.service.verify(accountID: "a", purpose: .login, code: login.code, challengeID: login.id)
                .success))
    }

    /// docs/SECURITY.md §9: all refused the same way, all counted.
    @Test func malformedCodesAreFailedAttempts() async throws {
        let f = try await Fixture {
            $0.lockThreshold = 100; $0.attemptsPerChallenge = 20
        }
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        f.clock.advance(60)
        let login = try await f.challenge("a", .login)
        let code = login.code
        let fullWidth = String(code.unicodeScalars.map { Character(UnicodeScalar($0.value - 0x30 + 0xFF10)!) })
        let arabicIndic = String(code.unicodeScalars.map { Character(UnicodeScalar($0.value - 0x30 + 0x0660)!) })
        let inputs = [
            "+" + code, " " + code, code + " ", String(code.prefix(2)) + " " + String(code.dropFirst(2)), fullWidth,
            arabicIndic, code + "\0", "\0" + code, String(repeating: "1", count: 6 * 1024), "", String(code.prefix(5)),
            code + "0", "-" + String(code.dropFirst()), "1e5000", "0x1234",
        ]
        for input in inputs {
            let outcome = try await f.service.verify(
                accountID: "a", purpose: .login, code: input, challengeID: login.id)
            #expect(!outcome.success, "accepted \(input.debugDescription)")
        }
        #expect(try await f.service.status(accountID: "a").consecutiveFailures == inputs.count)
        #expect(try await f.service.verify(accountID: "a", purpose: .login, code: code, challengeID: login.id).success)
    }

    @Test func everyFailureLooksTheSame() async throws {
        let f = try await Fixture { $0.lockThreshold = 100 }
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        try await f.enrollPhone("b", "+447700900123")
        f.clock.advance(60)
        let mine = try await f.challenge("a", .login)
        let theirs = try await f.challenge("b", .login)
        let outcomes = [
            try await f.service.verify(
                accountID: "a", purpose: .login, code: f.wrongCode(than: mine.code), challengeID: mine.id),
            try await f.service.verify(accountID: "a", purpose: .login, code: "12a456", challengeID: mine.id),
            try await f.service.verify(accountID: "a", purpose: .login, code: theirs.code, challengeID: theirs.id),
            try await f.service.verify(accountID: "a", purpose: .login, code: mine.code, challengeID: "ch_nope"),
            try await f.service.verify(accountID: "a", purpose: .changePhone, code: mine.code, challengeID: mine.id),
        ]
        for outcome in outcomes {
            #expect(!outcome.success)
            #expect(outcome.proofToken == nil)
            #expect(outcome.factor == nil)
        }
        let reasons = try await f.service.listEvents(accountID: "a", pageSize: 5, beforeID: nil).events.map(\.detail)
        #expect(Set(reasons).count == 5, "the audit log keeps each reason: \(reasons)")
        #expect(
            reasons == [
                "change_phone: challenge for login", "login: unknown challenge", "login: challenge of another account",
                "login: malformed code", "login: wrong code",
            ])
    }

    @Test func aFailedSendIsNotTheUsersFailure() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        try await f.enrollPhone("a")
        f.clock.advance(60)
        f.sender.fail(with: .undeliverable(reason: "21211"))
        await #expect {
            _ = try await f.service.startChallenge(accountID: "a", purpose: .login)
        } throws: { error in
            (error as? TwoFactorError)?.kind == .failedPrecondition
                && (error as? TwoFactorError)?.message == "This phone number cannot receive text messages"
        }
        // The number is remembered: the next code is refused without paying the provider again.
        f.sender.fail(with: nil)
        let sentBefore = f.sender.messages.count
        f.clock.advance(600)
        await #expect(throws: TwoFactorError.self) {
            _ = try await f.service.startChallenge(accountID: "a", purpose: .login)
        }
        #expect(f.sender.messages.count == sentBefore)
        // A temporary failure is not remembered against the number.
        try await f.enrollPhone("b", "+447700900123")
        f.clock.advance(600)
        f.sender.fail(with: .temporary(reason: "503"))
        await #expect {
            _ = try await f.service.startChallenge(accountID: "b", purpose: .login)
        } throws: { ($0 as? TwoFactorError)?.kind == .unavailable }
        #expect(try await f.service.status(accountID: "a").consecutiveFailures == 0)
        #expect(try await f.service.status(accountID: "b").consecutiveFailures == 0)
        let kinds = try await f.service.listEvents(accountID: "a", pageSize: 10, beforeID: nil).events.map(\.kind)
        #expect(kinds.filter { $0 == .codeSendFailed }.count == 1)
        #expect(kinds.contains(.codeRefused))
        let log = try await f.service.listDeliveries(accountID: nil, pageSize: 50, beforeID: nil).deliveries
        #expect(log.contains { $0.accountID == "a" && $0.status == "rejected" })
        #expect(log.contains { $0.accountID == "b" && $0.status == "error" })
        #expect(log.contains { $0.accountID == "b" && $0.status == "accepted" && !$0.messageSID.isEmpty })
    }
}

/// A store whose every transaction fails, as a full disk or a read-only file would.
struct BrokenStore: TwoFactorStore {
    struct DiskFull: Error {}

    func transaction<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        throw DiskFull()
    }
}

@Suite("storage failures")
struct StorageFailureTests {
    /// docs/SECURITY.md §19: a storage error refuses the request; it never grants access.
    @Test func storageErrorsFailClosed() async throws {
        let service = try TwoFactorService(
            store: BrokenStore(), sender: RecordingSender(), keys: try DaemonKeys(masterKey: Array(1...32)),
            policy: TwoFactorPolicy(), clock: ManualClock(), random: SeededRandom())
        await #expect {
            _ = try await service.verify(accountID: "a", purpose: .login, code: "123456", challengeID: "ch_x")
        } throws: { error in
            (error as? TwoFactorError)?.kind == .unavailable
                && (error as? TwoFactorError)?.logDetail?.contains("DiskFull") == true
        }
        await #expect {
            _ = try await service.redeemBackupCode(accountID: "a", code: "2222-2222-2222-2222")
        } throws: { ($0 as? TwoFactorError)?.kind == .unavailable }
    }
}
