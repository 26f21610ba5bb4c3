import Foundation
import OTPClient
import OTPTestSupport
import Testing

/// The SMS pumping breaker through the real daemon and otpctl (docs/SECURITY.md §22): a bot's
/// run under one range is paused with RESOURCE_EXHAUSTED, an administrator lists and resets
/// it, and a verified number under the range keeps its login texts. The budgets are lifted and
/// the breaker made quick (3 texts, judged after 10 s) so that the run takes seconds.
@Suite("SMS pumping breaker (daemon)", .serialized)
struct SMSBreakerDaemonTests {
    static let config = """
        [sms]
        resend_cooldown_seconds = 0
        per_account_per_hour = 1000
        per_phone_per_day = 1000
        verifications_per_phone_per_day = 1000
        per_country_per_hour = 0
        global_per_minute = 0

        [sms_breaker]
        min_texts_per_range = 3
        decision_seconds = 10
        cool_off_minutes = 30
        """

    func otpctl(_ daemon: DaemonProcess, _ arguments: String...) throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        try runProgram(Binaries.otpctl, arguments + ["--socket", daemon.socket])
    }

    @Test func aBotIsPausedAnAdministratorSeesAndResetsItAndAVerifiedNumberKeepsItsTexts() async throws {
        let daemon = try DaemonProcess(config: Self.config)
        defer { Task { await daemon.cleanUp() } }
        try await daemon.start()
        let client = daemon.client()
        // The shop's administrator, verified under the range before the run.
        try await daemon.enrollPhone(client, "admin", number: "+447911299999")

        // Five texts to new numbers of the range, never verified. With the administrator's
        // verified one that is 1 of 6 (17 %, under the 20 % minimum), judged once 10 s old.
        for bot in 0..<5 {
            let account = "bot-\(bot)"
            _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: "+44791120000\(bot)"))
            _ = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .verifyPhone))
        }
        try await Task.sleep(for: .seconds(11))

        _ = try await client.setPhone(SetPhoneRequest(accountId: "bot-late", phoneNumber: "+447911200011"))
        let sentBefore = daemon.outbox().count
        do throws(RPCError) {
            _ = try await client.startChallenge(StartChallengeRequest(accountId: "bot-late", purpose: .verifyPhone))
            Issue.record("the bot's sixth text was sent")
        } catch {
            #expect(error.code == .resourceExhausted, "\(error)")
            #expect(error.message == "Text messages to numbers like this one are paused for a while; try again later")
        }
        #expect(daemon.outbox().count == sentBefore)

        // Another range of the same country, and the administrator's login, still get texts.
        _ = try await client.setPhone(SetPhoneRequest(accountId: "person", phoneNumber: "+447900012345"))
        _ = try await client.startChallenge(StartChallengeRequest(accountId: "person", purpose: .verifyPhone))
        let login = try await client.startChallenge(StartChallengeRequest(accountId: "admin", purpose: .login))
        #expect(login.destinationMasked.hasSuffix("9999"))

        // otpctl lists the paused range first.
        let listed = try otpctl(daemon, "sms", "breaker", "--json")
        #expect(listed.status == 0, "\(listed.stderr)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        let first = try #require(rows.first)
        #expect(first["scope"] as? String == "+4479112")
        #expect(first["state"] as? String == "tripped")
        #expect(first["texts"] as? Int == 6 && first["verified"] as? Int == 1)
        #expect((first["paused_until"] as? Int ?? 0) > Int(Date().timeIntervalSince1970) + 1700)
        let text = try otpctl(daemon, "sms", "breaker")
        #expect(text.stdout.hasPrefix("+4479112  tripped  1 of 6 verified  paused until "), "\(text.stdout)")

        // The trip is in the audit trail; a reset ends the pause, audited with the reason.
        let events = try await client.listEvents(ListEventsRequest(accountId: "", pageSize: 100)).events
        #expect(
            events.contains {
                $0.kind == "sms_breaker_tripped" && $0.detail.hasPrefix("+4479112: 1 of 6 verification texts verified")
            })
        let reset = try otpctl(daemon, "sms", "breaker", "reset", "+44 79112", "--reason", "test over", "--json")
        #expect(reset.status == 0, "\(reset.stderr)")
        #expect(reset.stdout.contains("\"state\" : \"watched\"") || reset.stdout.contains("\"state\":\"watched\""))
        _ = try await client.startChallenge(StartChallengeRequest(accountId: "bot-late", purpose: .verifyPhone))
        let after = try await client.listEvents(ListEventsRequest(accountId: "", pageSize: 100)).events
        #expect(after.contains { $0.kind == "sms_breaker_reset" && $0.detail.contains("test over") })

        // A range that is not one is refused with a clear message.
        let bad = try otpctl(daemon, "sms", "breaker", "exempt", "+44791")
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("country code (+44) or one with 4-8 more digits"), "\(bad.stderr)")
    }
}
