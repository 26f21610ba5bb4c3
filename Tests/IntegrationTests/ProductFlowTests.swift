import Foundation
import OTPClient
import OTPCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// One message of the development outbox.
struct OutboxMessage {
    var to: String
    var body: String
    var purpose: String
    var challengeID: String

    /// The code in the text.
    var code: String {
        String(body.split(separator: " ").first { $0.count >= 6 && $0.allSatisfy(\.isNumber) } ?? "")
    }
}

extension DaemonProcess {
    /// Every message in the outbox, oldest first.
    func outbox() -> [OutboxMessage] {
        guard let text = try? String(contentsOfFile: outboxPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String] else {
                return nil
            }
            return OutboxMessage(
                to: object["to"] ?? "", body: object["body"] ?? "", purpose: object["purpose"] ?? "",
                challengeID: object["challenge_id"] ?? "")
        }
    }

    /// The code of the message for `challengeID`.
    func code(for challengeID: String) throws -> String {
        try #require(outbox().last { $0.challengeID == challengeID }).code
    }

    /// Saves `number` for `account` and verifies it with the code from the outbox: SMS
    /// two-factor on. Returns the answer, which carries the enrolment's manage_factors proof.
    @discardableResult
    func enrollPhone(_ client: OTPClient, _ account: String, number: String = "+15551234567") async throws
        -> VerifyResponse
    {
        _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: number))
        let challenge = try await client.startChallenge(
            StartChallengeRequest(accountId: account, purpose: .verifyPhone))
        let verified = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .verifyPhone, code: try code(for: challenge.challengeId),
                challengeId: challenge.challengeId))
        #expect(verified.success)
        return verified
    }
}

/// The current authenticator code for a base32 secret.
func totpCode(_ secret: String, at date: Date = Date()) throws -> String {
    try TOTP(secret: try Base32.decode(secret)).code(at: date)!.text
}

/// Waits until the next 30-second TOTP step starts, so a second code differs from the first.
func waitForNextTOTPStep() async throws {
    let now = Date().timeIntervalSince1970
    let next = (floor(now / 30) + 1) * 30
    try await Task.sleep(for: .milliseconds(Int64((next - now) * 1000) + 50))
}

/// The product document's flow and the security limits, through the real otpd binary.
@Suite("product flow through the daemon", .serialized)
struct ProductFlowTests {
    static let relaxedSMS =
        "[sms]\nresend_cooldown_seconds = 0\nper_account_per_hour = 1000\nper_phone_per_day = 1000\nverifications_per_phone_per_day = 1000\nglobal_per_minute = 100000\nper_country_per_hour = 100000\n"

    /// First login → save number (not verified) → send code → read it from the outbox → verify
    /// (verified) → login with an SMS code → login with an authenticator code → change the
    /// number with a proof → verify the new number → the old one no longer receives codes.
    @Test func theWholeProductFlow() async throws {
        let daemon = try DaemonProcess(config: Self.relaxedSMS)
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        let account = "admin@shop.example"

        // First login: nothing set up.
        #expect(try await client.getStatus(GetStatusRequest(accountId: account)).setupRequired)

        // Save a number: "The phone number is not verified".
        let saved = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: "+1 555-123-4567"))
        #expect(saved.status?.phoneMasked == "+1******4567")
        #expect(saved.status?.phoneVerified == false)

        // "Send verification code", read it from the outbox, verify: "The phone number is verified".
        let challenge = try await client.startChallenge(
            StartChallengeRequest(accountId: account, purpose: .verifyPhone))
        #expect(challenge.destinationMasked == "+1******4567")
        #expect(daemon.outbox().last?.to == "+15551234567")
        let verified = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .verifyPhone, code: try daemon.code(for: challenge.challengeId),
                challengeId: challenge.challengeId))
        #expect(verified.success)
        #expect(verified.status?.phoneVerified == true)
        #expect(verified.status?.smsEnabled == true)
        #expect(verified.status?.setupRequired == false)

        // Backup codes right after set-up, within the enrolment's proof.
        let backup = try await client.generateBackupCodes(
            GenerateBackupCodesRequest(accountId: account, proof: Proof(kind: .token(verified.proofToken))))
        #expect(backup.codes.count == 10)

        // Login with an SMS code.
        let login = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .login))
        let loggedIn = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .login, code: try daemon.code(for: login.challengeId),
                challengeId: login.challengeId))
        #expect(loggedIn.success)
        #expect(loggedIn.factor == .sms)

        // Turn on the authenticator (needs a manage_factors proof now) and log in with it.
        let manage = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .manageFactors))
        let manageProof = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .manageFactors, code: try daemon.code(for: manage.challengeId),
                challengeId: manage.challengeId))
        let enrollment = try await client.beginTotpEnrollment(
            BeginTotpEnrollmentRequest(accountId: account, proof: Proof(kind: .token(manageProof.proofToken))))
        #expect(enrollment.otpauthUri.hasPrefix("otpauth://totp/"))
        let confirmed = try await client.confirmTotpEnrollment(
            ConfirmTotpEnrollmentRequest(accountId: account, code: try totpCode(enrollment.secretBase32)))
        #expect(confirmed.success)
        try await waitForNextTOTPStep()
        let totpLogin = try await client.verify(
            VerifyRequest(accountId: account, purpose: .login, code: try totpCode(enrollment.secretBase32)))
        #expect(totpLogin.success)
        #expect(totpLogin.factor == .totp)

        // Change the number: a code texted to the current number proves it.
        let change = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .changePhone))
        #expect(daemon.outbox().last?.to == "+15551234567")
        let proof = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .changePhone, code: try daemon.code(for: change.challengeId),
                challengeId: change.challengeId))
        let pending = try await client.setPhone(
            SetPhoneRequest(
                accountId: account, phoneNumber: "+44 7700 900123", proof: Proof(kind: .token(proof.proofToken))))
        #expect(pending.pending)
        #expect(pending.status?.pendingPhoneMasked == "+44******0123")

        // Verify the new number; it replaces the old one.
        let newNumber = try await client.startChallenge(
            StartChallengeRequest(accountId: account, purpose: .verifyPhone))
        #expect(daemon.outbox().last?.to == "+447700900123")
        let replaced = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .verifyPhone, code: try daemon.code(for: newNumber.challengeId),
                challengeId: newNumber.challengeId))
        #expect(replaced.success)
        #expect(replaced.status?.phoneMasked == "+44******0123")

        // The old number no longer receives codes.
        let before = daemon.outbox().filter { $0.to == "+15551234567" }.count
        let after = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .login))
        #expect(after.destinationMasked == "+44******0123")
        #expect(daemon.outbox().filter { $0.to == "+15551234567" }.count == before)

        let events = try await client.listEvents(ListEventsRequest(accountId: account, pageSize: 100)).events
        #expect(events.contains { $0.kind == "phone_changed" })
        #expect(events.contains { $0.kind == "totp_enabled" })
        await client.close()
    }

    /// docs/SECURITY.md §10: parallel guesses on many challenges all count; the lock holds for the right code.
    @Test func twoHundredConcurrentWrongGuessesOverFiftyChallenges() async throws {
        let daemon = try DaemonProcess(config: Self.relaxedSMS)
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        let account = "target"
        _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: "+15551234567"))
        let enrol = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .verifyPhone))
        #expect(
            try await client.verify(
                VerifyRequest(
                    accountId: account, purpose: .verifyPhone, code: try daemon.code(for: enrol.challengeId),
                    challengeId: enrol.challengeId)
            ).success)

        var challenges: [String] = []
        for _ in 0..<50 {
            challenges.append(
                try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .login)).challengeId)
        }
        let lastCode = try daemon.code(for: challenges.last!)
        let wrong = lastCode == "000000" ? "111111" : "000000"
        let clients = (0..<8).map { _ in daemon.client() }
        let successes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                let challenge = challenges[i % 50]
                let client = clients[i % clients.count]
                group.addTask {
                    try await client.verify(
                        VerifyRequest(accountId: account, purpose: .login, code: wrong, challengeId: challenge)
                    ).success
                }
            }
            var count = 0
            for try await success in group where success { count += 1 }
            return count
        }
        #expect(successes == 0)
        let status = try await client.getStatus(GetStatusRequest(accountId: account))
        #expect(status.consecutiveFailures == 200)
        #expect(status.locked)
        // Past max_consecutive_failures (100): locked until an administrator unlocks, which the
        // wire says with its one value for it.
        #expect(status.lockedUntil == WireTime.lockedUntilAdministratorUnlocks)
        let right = try await client.verify(
            VerifyRequest(accountId: account, purpose: .login, code: lastCode, challengeId: challenges.last!))
        #expect(!right.success, "the lock holds even for the right code")
        #expect(right.lockedUntil == WireTime.lockedUntilAdministratorUnlocks)
        for client in clients { await client.close() }
        await client.close()
    }

    @Test func stateSurvivesARestartAndTheDatabaseHoldsNoCodeInClear() async throws {
        let daemon = try DaemonProcess(config: Self.relaxedSMS)
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        var client = daemon.client()
        _ = try await client.setPhone(SetPhoneRequest(accountId: "a", phoneNumber: "+15551234567"))
        let enrol = try await client.startChallenge(StartChallengeRequest(accountId: "a", purpose: .verifyPhone))
        let verified = try await client.verify(
            VerifyRequest(
                accountId: "a", purpose: .verifyPhone, code: try daemon.code(for: enrol.challengeId),
                challengeId: enrol.challengeId))
        let backup = try await client.generateBackupCodes(
            GenerateBackupCodesRequest(accountId: "a", proof: Proof(kind: .token(verified.proofToken))))
        let pendingLogin = try await client.startChallenge(StartChallengeRequest(accountId: "a", purpose: .login))
        let loginCode = try daemon.code(for: pendingLogin.challengeId)
        let manage = try await client.startChallenge(StartChallengeRequest(accountId: "a", purpose: .manageFactors))
        let manageProof = try await client.verify(
            VerifyRequest(
                accountId: "a", purpose: .manageFactors, code: try daemon.code(for: manage.challengeId),
                challengeId: manage.challengeId))
        let enrollment = try await client.beginTotpEnrollment(
            BeginTotpEnrollmentRequest(accountId: "a", proof: Proof(kind: .token(manageProof.proofToken))))
        #expect(
            try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: backup.codes[0])).success)
        await client.close()

        // Kill -9: nothing acknowledged may be lost.
        await daemon.kill9()
        try await daemon.start()
        client = daemon.client()
        let status = try await client.getStatus(GetStatusRequest(accountId: "a"))
        #expect(status.phoneVerified)
        #expect(status.backupCodesRemaining == 9)
        #expect(
            try await client.verify(
                VerifyRequest(accountId: "a", purpose: .login, code: loginCode, challengeId: pendingLogin.challengeId)
            ).success)
        #expect(
            !(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: backup.codes[0])).success)
        )
        await client.close()
        #expect(await daemon.terminate() == 0)

        // The file bytes never hold a code, a backup code or the TOTP secret in clear.
        var bytes = [UInt8]()
        for suffix in ["", "-wal"] {
            if let data = FileManager.default.contents(atPath: daemon.database + suffix) { bytes += data }
        }
        #expect(bytes.count > 4096)
        let secrets =
            [loginCode, try daemon.code(for: enrol.challengeId), enrollment.secretBase32]
            + backup.codes + backup.codes.map { $0.replacingOccurrences(of: "-", with: "") }
        for secret in secrets {
            #expect(!contains(bytes, Array(secret.utf8)), "found \(secret) in the database file")
        }
        let rawSecret = try Base32.decode(enrollment.secretBase32)
        #expect(!contains(bytes, rawSecret))
        #expect(!daemon.log().contains(loginCode))
        #expect(!daemon.log().contains("5551234567"))
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == first && Array(haystack[i..<i + needle.count]) == needle { return true }
            i += 1
        }
        return false
    }
}
