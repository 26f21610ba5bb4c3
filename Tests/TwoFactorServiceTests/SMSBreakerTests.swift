import Foundation
import OTPCore
import OTPTestSupport
import Testing

/// The SMS pumping breaker (docs/SECURITY.md §22), driven through the service with a manual
/// clock. The SMS budgets are lifted so that only the breaker can stop a bot.
@Suite("SMS pumping breaker")
struct SMSBreakerTests {
    static let botRange = "+4479112"
    static let legitimateRange = "+4479000"

    /// Saves `number` on a new account and asks for its verification text. Returns the error
    /// when refused.
    static func requestVerification(_ f: Fixture, account: String, number: String) async throws -> TwoFactorError? {
        _ = try await f.service.setPhone(accountID: account, number: number, proof: nil)
        do {
            _ = try await f.service.startChallenge(accountID: account, purpose: .verifyPhone)
            return nil
        } catch {
            return error
        }
    }

    /// Verifies the text just sent to `account`.
    static func verifyLast(_ f: Fixture, account: String, challengeID: String) async throws -> Bool {
        try await f.service.verify(
            accountID: account, purpose: .verifyPhone, code: f.sender.lastCode, challengeID: challengeID
        ).success
    }

    static func texts(_ f: Fixture, to range: String) -> Int {
        f.sender.messages.filter { $0.to.e164.hasPrefix(range) }.count
    }

    /// A bot asks for a text to a new number of one range every 10 s and never types a code in,
    /// while people of another range of the same country save their numbers and verify them
    /// every 20 s. The bot is stopped within the documented volume (10 judged texts, plus the
    /// texts of the 2 minutes before a text is judged); the people are never refused.
    @Test func aPumpingRunTripsItsRangeWithinTheDocumentedVolumeAndPeopleElsewhereAreNeverRefused() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        var botRefusals: [TwoFactorError] = []
        for step in 0..<120 {
            if let refusal = try await Self.requestVerification(
                f, account: "bot-\(step)", number: "\(Self.botRange)\(String(format: "%05d", step))")
            {
                botRefusals.append(refusal)
            }
            if step.isMultiple(of: 2) {
                let account = "person-\(step)"
                let refusal = try await Self.requestVerification(
                    f, account: account, number: "\(Self.legitimateRange)\(String(format: "%05d", step))")
                #expect(refusal == nil, "a person was refused: \(String(describing: refusal))")
                let challenge = try await f.service.status(accountID: account)
                #expect(!challenge.phoneVerified)
                let sent = f.sender.messages.last!
                #expect(try await Self.verifyLast(f, account: account, challengeID: sent.challengeID))
            }
            f.clock.advance(10)
        }
        let policy = SMSBreakerPolicy()
        let documented = policy.minimumTextsPerRange + Int(policy.decisionDelay / 10)
        let botTexts = Self.texts(f, to: Self.botRange)
        #expect(botTexts <= documented, "the bot got \(botTexts) texts, more than the documented \(documented)")
        #expect(botTexts >= policy.minimumTextsPerRange, "tripped before the range could be judged")
        #expect(botRefusals.count == 120 - botTexts)
        #expect(botRefusals.allSatisfy { $0.kind == .resourceExhausted && ($0.retryAfter ?? 0) > 0 })
        #expect(Self.texts(f, to: Self.legitimateRange) == 60)

        let breakers = try await f.service.smsBreakers()
        let tripped = breakers.filter { $0.state == .tripped }.map(\.scope.prefix)
        #expect(tripped == [Self.botRange], "tripped: \(tripped)")
        let events = try await f.service.listEvents(accountID: nil, pageSize: 500, beforeID: nil).events
        let trips = events.filter { $0.kind == .smsBreakerTripped }
        #expect(trips.count == 1)
        #expect(trips.first?.detail.hasPrefix("\(Self.botRange): 0 of ") == true, "\(trips.first?.detail ?? "")")
        // Nothing personal in the trip's record: the range, not a number.
        #expect(trips.first?.accountID == "")
        #expect(TwoFactorService.defaultNotifiedKinds.contains(.smsBreakerTripped))
    }

    /// An administrator of the shop whose number lies in the bot's range was verified before
    /// the run: the breaker never counts or pauses their texts.
    @Test func aVerifiedNumberUnderATrippedRangeStillGetsLoginTexts() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        try await f.enrollPhone("admin", "\(Self.botRange)99999")
        f.clock.advance(60)
        try await Self.pump(f, range: Self.botRange, until: { $0 != nil })
        let login = try await f.service.startChallenge(accountID: "admin", purpose: .login)
        #expect(login.destinationMasked.hasSuffix("9999"))
        #expect(
            try await f.service.verify(
                accountID: "admin", purpose: .login, code: f.sender.lastCode, challengeID: login.challengeID
            ).success)
        // A code to change the number goes to the verified number too.
        _ = try await f.service.startChallenge(accountID: "admin", purpose: .changePhone)
    }

    /// Requests texts to new numbers of `range` every 10 s, never verified, until `stop` says
    /// so of a request's refusal (at most 200). Returns the refusal that stopped it.
    @discardableResult
    static func pump(
        _ f: Fixture, range: String, from start: Int = 0, until stop: (TwoFactorError?) -> Bool
    ) async throws -> TwoFactorError? {
        for step in start..<(start + 200) {
            let refusal = try await requestVerification(
                f, account: "bot-\(range)-\(step)", number: "\(range)\(String(format: "%05d", step))")
            f.clock.advance(10)
            if stop(refusal) { return refusal }
        }
        Issue.record("the breaker never stopped the bot")
        return nil
    }

    /// The pause lasts the cool-off, to the second; then texts flow again and the range is
    /// counted afresh (the texts before the pause do not trip it again at once).
    @Test func theCoolOffEndsOnTime() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        let refusal = try #require(try await Self.pump(f, range: Self.botRange, until: { $0 != nil }))
        let retryAfter = try #require(refusal.retryAfter)
        #expect(retryAfter > 3500 && retryAfter <= 3600)
        f.clock.advance(TimeInterval(retryAfter - 11))
        #expect(try await Self.requestVerification(f, account: "late-1", number: "\(Self.botRange)70001") != nil)
        f.clock.advance(1)
        #expect(try await Self.requestVerification(f, account: "late-2", number: "\(Self.botRange)70002") == nil)
        // Counting starts afresh: the next nine unverified texts are sent.
        for step in 0..<9 {
            #expect(
                try await Self.requestVerification(f, account: "again-\(step)", number: "\(Self.botRange)8000\(step)")
                    == nil)
        }
        let breakers = try await f.service.smsBreakers()
        #expect(breakers.first { $0.scope.prefix == Self.botRange }?.trips == 1)
    }

    /// A bot that spreads its texts over many ranges of one country trips the country once 50
    /// of its texts are judged; another country's people keep receiving texts.
    @Test func aBotSpreadOverManyRangesTripsItsCountryAndOtherCountriesKeepWorking() async throws {
        let f = try await Fixture { $0.liftSMSBudgets() }
        defer { f.tearDown() }
        var sent = 0
        var stopped: TwoFactorError?
        for step in 0..<200 where stopped == nil {
            // A new 5-digit range each time: no range ever has 10 texts.
            let number = "+336\(String(format: "%04d", step))1234"
            stopped = try await Self.requestVerification(f, account: "bot-\(step)", number: number)
            if stopped == nil { sent += 1 }
            f.clock.advance(10)
            if step.isMultiple(of: 5) {
                let person = "person-\(step)"
                #expect(
                    try await Self.requestVerification(
                        f, account: person, number: "+1415555\(String(format: "%04d", step))") == nil)
                #expect(try await Self.verifyLast(f, account: person, challengeID: f.sender.messages.last!.challengeID))
            }
        }
        #expect(stopped?.kind == .resourceExhausted)
        #expect(sent >= 50 && sent <= 50 + 13, "the bot got \(sent) texts")
        let breakers = try await f.service.smsBreakers()
        #expect(breakers.first?.scope.prefix == "+33" && breakers.first?.state == .tripped)
    }

    /// Reset ends a pause and counts afresh; an exempt range is never paused; removing the
    /// exemption watches it again. Each change is audited with who and why. (The country-level
    /// breaker is off here: exempting a range does not exempt its country.)
    @Test func administratorsResetAndExemptRanges() async throws {
        let f = try await Fixture {
            $0.liftSMSBudgets()
            $0.smsBreaker.minimumTextsPerCountry = 0
        }
        defer { f.tearDown() }
        try await Self.pump(f, range: Self.botRange, until: { $0 != nil })
        let reset = try await f.service.updateSMSBreaker(
            scope: "+44 79112", action: .reset, actor: "ops", reason: "false alarm")
        #expect(reset.state == .watched && reset.count.texts == 0)
        #expect(try await Self.requestVerification(f, account: "after-reset", number: "\(Self.botRange)90000") == nil)

        let exempt = try await f.service.updateSMSBreaker(
            scope: Self.botRange, action: .exempt, actor: "ops", reason: "")
        #expect(exempt.state == .exempt)
        // 60 unverified texts: never paused while exempt.
        for step in 0..<60 {
            #expect(
                try await Self.requestVerification(
                    f, account: "exempt-\(step)", number: "\(Self.botRange)6\(String(format: "%04d", step))") == nil)
            f.clock.advance(10)
        }
        _ = try await f.service.updateSMSBreaker(
            scope: Self.botRange, action: .removeExemption, actor: "ops", reason: "")
        // Counted afresh from now: the 60 earlier texts do not trip it.
        #expect(try await Self.requestVerification(f, account: "watched", number: "\(Self.botRange)50000") == nil)

        let events = try await f.service.listEvents(accountID: nil, pageSize: 500, beforeID: nil).events
        let changes = events.filter {
            [.smsBreakerReset, .smsBreakerExempted, .smsBreakerExemptionRemoved].contains($0.kind)
        }
        #expect(changes.map(\.kind) == [.smsBreakerExemptionRemoved, .smsBreakerExempted, .smsBreakerReset])
        #expect(changes.last?.detail == "+4479112 by ops: false alarm; its pause ended")
    }

    @Test func rangesAreParsedStrictly() throws {
        #expect(try SMSBreakerScope(parsing: "+44").isCountry)
        #expect(try SMSBreakerScope(parsing: "+4479112").countryCallingCode == "44")
        #expect(try SMSBreakerScope(parsing: "+1 41555").prefix == "+141555")
        for bad in ["44", "+", "+0441", "+44791", "+4479112345678", "+44a7911", "+４４", ""] {
            #expect(throws: TwoFactorError.self, "\(bad)") { try SMSBreakerScope(parsing: bad) }
        }
        let phone = try PhoneNumber(parsing: "+447911234567")
        #expect(SMSBreakerScope.scopes(of: phone, digits: 5).map(\.prefix) == ["+44", "+4479112"])
    }

    @Test func theSettingsAreChecked() {
        var policy = TwoFactorPolicy()
        policy.smsBreaker.minimumVerifiedFraction = 0
        #expect(throws: TwoFactorError.self) { try policy.validate() }
        policy = TwoFactorPolicy()
        policy.smsBreaker.prefixDigits = 3
        #expect(throws: TwoFactorError.self) { try policy.validate() }
    }
}
