import Foundation
import OTPClient
import OTPTestSupport
import Testing

/// The product flow driven through the built `otpctl` binary against the real daemon: human
/// output in the product's wording, `--json` parsed as JSON, and the documented exit statuses
/// (0 success, 1 refused, 2 usage, 3 unreachable).
@Suite("otpctl product flow", .serialized)
struct CLIFlowTests {
    /// Status of a new account, save a number, verify it with a texted code, make backup codes,
    /// log in with a texted code, and read the result back.
    @Test func theProductFlowThroughOtpctl() async throws {
        try await withDaemon { daemon in
            let account = "shop-admin-1"

            // A new account: nothing is set up.
            let fresh = try otpctl(daemon, "status", account)
            #expect(fresh.status == 0, "\(fresh.stderr)")
            #expect(fresh.lines.contains("Phone: none"))
            #expect(fresh.lines.contains("Setup required: yes"))
            let freshJSON = try object(otpctl(daemon, "status", account, "--json"))
            #expect(freshJSON["account_id"] as? String == account)
            #expect(freshJSON["setup_required"] as? Bool == true)
            #expect(freshJSON["phone_masked"] is NSNull)
            #expect(freshJSON["preferred_method"] is NSNull)

            // Save the number: "The phone number is not verified".
            let saved = try otpctl(daemon, "phone", "set", account, "+1 415 555 0123")
            #expect(saved.status == 0, "\(saved.stderr)")
            #expect(saved.lines.first == "Saved. The phone number is not verified.")
            let unverified = try otpctl(daemon, "status", account)
            #expect(unverified.lines.contains("Phone: +1******0123 (The phone number is not verified)"))
            #expect(unverified.lines.contains("Setup required: yes"))

            // "Send verification code".
            let sent = try object(otpctl(daemon, "send", account, "--purpose", "verify_phone", "--json"))
            let challenge = try #require(sent["challenge_id"] as? String)
            #expect(challenge.hasPrefix("ch_"))
            #expect(sent["destination"] as? String == "+1******0123")
            #expect(sent["code_length"] as? Int == 6)
            #expect(sent["purpose"] as? String == "verify_phone")
            let expiresAt = try #require(sent["expires_at"] as? Int)
            #expect(expiresAt > Int(Date().timeIntervalSince1970))
            #expect(sent["resend_at"] is Int)
            let sms = try lastSMS(daemon)
            #expect(sms["challenge_id"] as? String == challenge)
            #expect(sms["purpose"] as? String == "verify_phone")
            #expect(sms["to"] as? String == "+14155550123")
            let code = try #require(sixDigitCode(in: sms["body"] as? String ?? ""))

            // Asking again at once is refused with the wait.
            let tooSoon = try otpctl(daemon, "send", account, "--purpose", "verify_phone")
            #expect(tooSoon.status == 1)
            #expect(tooSoon.stderr.contains("otpctl: RESOURCE_EXHAUSTED: "))
            #expect(tooSoon.stderr.contains("try again in "))

            // A wrong code is a refusal: exit 1, the product's message on stderr.
            let wrong = try otpctl(
                daemon, "verify", account, otherCode(than: code), "--purpose", "verify_phone", "--challenge", challenge)
            #expect(wrong.status == 1)
            #expect(wrong.stdout.isEmpty)
            #expect(wrong.stderr.contains("The code is not valid (4 attempts left)"), "\(wrong.stderr)")
            let wrongJSON = try otpctl(
                daemon, "verify", account, otherCode(than: code), "--purpose", "verify_phone", "--challenge", challenge,
                "--json")
            #expect(wrongJSON.status == 1)
            let refused = try object(wrongJSON, expecting: 1)
            #expect(refused["success"] as? Bool == false)
            #expect(refused["attempts_left"] as? Int == 3)
            #expect(refused["factor"] is NSNull)
            #expect(refused["proof_token"] is NSNull)

            // The right code: "The phone number is verified", and a proof for the first backup codes.
            let verified = try otpctl(
                daemon, "verify", account, code, "--purpose", "verify_phone", "--challenge", challenge)
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(verified.lines.prefix(2) == ["Verified.", "The phone number is verified"])
            let tokenLine = try #require(verified.lines.first { $0.hasPrefix("Proof token (single use, expires ") })
            let token = try #require(tokenLine.components(separatedBy: ": ").last)
            #expect(token.hasPrefix("pf_"))
            #expect(
                verified.lines.contains { $0.hasPrefix("Important: be sure to create and save a list of backup codes") }
            )

            // Backup codes need the proof; the hint says how to get one.
            let noProof = try otpctl(daemon, "backup", "generate", account)
            #expect(noProof.status == 1)
            #expect(noProof.stderr.hasPrefix("otpctl: PERMISSION_DENIED: "))
            #expect(noProof.stderr.contains("otpctl: hint: "))

            // Backup codes to a new file with mode 0600; shown once, never on stdout.
            let file = daemon.directory.file("backup-codes.txt")
            let backup = try otpctl(daemon, "backup", "generate", account, "--proof-token", token, "--out", file)
            #expect(backup.status == 0, "\(backup.stderr)")
            #expect(backup.stdout.contains(file))
            #expect(backup.stdout.contains("will not be shown again"))
            let attributes = try FileManager.default.attributesOfItem(atPath: file)
            #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o777 } == 0o600)
            let written = try String(contentsOfFile: file, encoding: .utf8)
            let codes = written.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
            #expect(codes.count == 10)
            #expect(!backup.stdout.contains(codes[0]))

            // An existing file is never overwritten, and nothing is asked of the daemon.
            let again = try otpctl(daemon, "backup", "generate", account, "--proof-token", token, "--out", file)
            #expect(again.status == 2)
            #expect(again.stderr.contains("exists"))
            #expect(try String(contentsOfFile: file, encoding: .utf8) == written)

            // A backup code works once.
            let redeemed = try otpctl(daemon, "backup", "redeem", account, codes[0])
            #expect(redeemed.status == 0, "\(redeemed.stderr)")
            #expect(redeemed.lines == ["Accepted. 9 backup codes left."])
            let reused = try otpctl(daemon, "backup", "redeem", account, codes[0])
            #expect(reused.status == 1)
            #expect(reused.stderr.contains("The code is not valid"))

            // Every later login: a code texted to the verified number.
            let login = try otpctl(daemon, "send", account, "--purpose", "login")
            #expect(login.status == 0, "\(login.stderr)")
            let loginSMS = try lastSMS(daemon)
            #expect(loginSMS["purpose"] as? String == "login")
            let loginChallenge = try #require(loginSMS["challenge_id"] as? String)
            #expect(login.lines.count == 1)
            #expect(login.stdout.hasPrefix("Code sent to +1******0123 (challenge \(loginChallenge), expires "))
            #expect(login.stdout.contains(" UTC, resend after "))
            let loginCode = try #require(sixDigitCode(in: loginSMS["body"] as? String ?? ""))
            let loggedIn = try object(
                otpctl(
                    daemon, "verify", account, loginCode, "--purpose", "login", "--challenge", loginChallenge, "--json")
            )
            #expect(loggedIn["success"] as? Bool == true)
            #expect(loggedIn["factor"] as? String == "sms")
            #expect(loggedIn["locked_until"] is NSNull)
            #expect((loggedIn["status"] as? [String: Any])?["phone_verified"] as? Bool == true)

            // The profile now shows the verified number.
            let done = try otpctl(daemon, "status", account)
            #expect(done.status == 0)
            #expect(done.lines.contains("Phone: +1******0123 (The phone number is verified)"))
            #expect(done.lines.contains("Authenticator: off"))
            #expect(done.lines.contains("Backup codes: 9 left"))
            #expect(done.lines.contains("Preferred: sms"))
            #expect(done.lines.contains("Setup required: no"))
            #expect(!done.lines.contains { $0.hasPrefix("Locked") })
            let doneJSON = try object(otpctl(daemon, "status", account, "--json"))
            #expect(doneJSON["phone_verified"] as? Bool == true)
            #expect(doneJSON["sms_enabled"] as? Bool == true)
            #expect(doneJSON["setup_required"] as? Bool == false)
            #expect(doneJSON["preferred_method"] as? String == "sms")
            #expect(doneJSON["backup_codes_remaining"] as? Int == 9)
            #expect(doneJSON["locked_until"] is NSNull)

            // The audit trail: every step, never a full number or a code.
            let events = try otpctl(daemon, "events", account, "--json")
            #expect(events.status == 0)
            let list = try #require(
                try JSONSerialization.jsonObject(with: Data(events.stdout.utf8)) as? [[String: Any]])
            let kinds = Set(list.compactMap { $0["kind"] as? String })
            #expect(kinds.isSuperset(of: ["phone_saved", "code_sent", "phone_verified", "backup_codes_generated"]))
            #expect(list.allSatisfy { $0["account_id"] as? String == account && $0["at_ms"] is Int && $0["id"] is Int })
            let human = try otpctl(daemon, "events", account)
            #expect(human.status == 0)
            #expect(human.lines.count == list.count)
            #expect(human.lines.allSatisfy(startsWithISOTime))
            for output in [events.stdout, human.stdout] {
                #expect(!output.contains("4155550123"))
                #expect(!output.contains(code) && !output.contains(loginCode))
            }
        }
    }

    /// Enough wrong codes lock the account; status and refusals show until when, and an
    /// administrator's unlock ends it and is audited.
    @Test func aLockShowsItsEndAndUnlockEndsIt() async throws {
        try await withDaemon { daemon in
            let account = "locked-admin"
            #expect(try otpctl(daemon, "phone", "set", account, "+14155550199").status == 0)
            let sent = try object(otpctl(daemon, "send", account, "--purpose", "verify_phone", "--json"))
            let challenge = try #require(sent["challenge_id"] as? String)
            let code = try #require(sixDigitCode(in: try lastSMS(daemon)["body"] as? String ?? ""))
            var last: ProgramResult?
            for _ in 0..<10 {
                last = try otpctl(
                    daemon, "verify", account, otherCode(than: code), "--purpose", "verify_phone", "--challenge",
                    challenge)
                #expect(last?.status == 1)
            }
            #expect(last?.stderr.contains("The code is not valid; the account is locked until 20") == true)

            let status = try otpctl(daemon, "status", account)
            let lockLine = try #require(status.lines.first { $0.hasPrefix("Locked until ") })
            #expect(startsWithISOTime(String(lockLine.dropFirst("Locked until ".count))))
            let json = try object(otpctl(daemon, "status", account, "--json"))
            #expect(json["locked"] as? Bool == true)
            #expect((json["locked_until"] as? Int ?? 0) > Int(Date().timeIntervalSince1970))
            #expect(json["consecutive_failures"] as? Int == 10)

            let refused = try otpctl(daemon, "send", account, "--purpose", "verify_phone")
            #expect(refused.status == 1)
            #expect(refused.stderr.hasPrefix("otpctl: PERMISSION_DENIED: "))
            #expect(refused.stderr.contains("locked until 20"))

            let unlocked = try otpctl(daemon, "unlock", account, "--actor", "help-desk", "--reason", "called in")
            #expect(unlocked.status == 0, "\(unlocked.stderr)")
            let after = try object(otpctl(daemon, "status", account, "--json"))
            #expect(after["locked"] as? Bool == false)
            #expect(after["consecutive_failures"] as? Int == 0)
            let events = try otpctl(daemon, "events", account, "--limit", "1", "--json")
            let newest = try #require(
                (try JSONSerialization.jsonObject(with: Data(events.stdout.utf8)) as? [[String: Any]])?.first)
            #expect(newest["kind"] as? String == "account_unlocked")
            #expect((newest["detail"] as? String)?.contains("by help-desk: called in") == true)
        }
    }

    /// `reset` does nothing without `--yes` (usage error); with it the account starts over.
    @Test func resetNeedsYesThenTheAccountStartsOver() async throws {
        try await withDaemon { daemon in
            let account = "reset-admin"
            #expect(try otpctl(daemon, "phone", "set", account, "+14155550142").status == 0)
            let refused = try otpctl(daemon, "reset", account)
            #expect(refused.status == 2)
            #expect(refused.stderr.contains("--yes"))
            #expect(try otpctl(daemon, "status", account).lines.contains { $0.hasPrefix("Phone: +1******0142") })

            let reset = try object(otpctl(daemon, "reset", account, "--yes", "--actor", "ops", "--json"))
            let status = try #require(reset["status"] as? [String: Any])
            #expect(status["setup_required"] as? Bool == true)
            #expect(status["phone_masked"] is NSNull)
            #expect(try otpctl(daemon, "status", account).lines.contains("Phone: none"))
        }
    }

    /// Command lines otpctl refuses before talking to the daemon: exit status 2, nothing on stdout.
    @Test(arguments: [
        ["phone", "set", "a", "+14155550123", "--totp", "123456", "--backup-code", "abcd-efgh-ijkm-npqr"],
        ["disable", "a", "totp", "--proof-token", "pf_x", "--totp", "123456"],
        ["reset", "a"],
        ["verify", "a", "123456", "--purpose", "verify_phone"],
        ["send", "a", "--purpose", "bogus"],
        ["send", "a"],
        ["status"],
        ["status", ""],
        ["prefer", "a", "backup"],
        ["events", "--limit", "0"],
        ["backup", "generate", "a", "--out", "/"],
    ])
    func usageErrorsExitWith2(arguments: [String]) throws {
        // A socket that does not exist: reaching the daemon would be exit status 3, not 2.
        let result = try runProgram(Binaries.otpctl, arguments + ["--socket", "/nonexistent/otpd.sock"])
        #expect(result.status == 2, "\(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(!result.stderr.isEmpty)
    }

    /// A daemon that cannot be reached: exit status 3, whatever the command.
    @Test(arguments: [
        ["status", "a"], ["send", "a", "--purpose", "login"], ["verify", "a", "123456", "--purpose", "login"],
        ["events", "--json"], ["backup", "redeem", "a", "abcd-efgh-ijkm-npqr"],
    ])
    func anUnreachableDaemonExitsWith3(arguments: [String]) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try runProgram(Binaries.otpctl, arguments + ["--socket", directory.file("none.sock")])
        #expect(result.status == 3, "\(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("otpctl: UNAVAILABLE: "))
    }

    /// The root help groups the commands by task with an example each.
    @Test func theHelpGroupsTheCommands() throws {
        let help = try runProgram(Binaries.otpctl, ["--help"])
        #expect(help.status == 0)
        for group in ["account", "phone", "codes", "authenticator", "backup", "admin", "diagnostics"] {
            #expect(help.stdout.contains("\n  \(group) "), "\(group)")
        }
        #expect(help.stdout.contains("$ otpctl verify alice 123456 --purpose verify_phone --challenge ch_"))
        let verify = try runProgram(Binaries.otpctl, ["help", "verify"])
        #expect(verify.stdout.contains("exit status is 1"))
    }

    // MARK: - Helpers

    /// Starts a daemon for `body` and always cleans it up.
    private func withDaemon(_ body: (DaemonProcess) async throws -> Void) async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        do {
            try await body(daemon)
        } catch {
            await daemon.cleanUp()
            throw error
        }
        await daemon.cleanUp()
    }

    /// What one otpctl run did.
    struct ProgramResult {
        var status: Int32
        var stdout: String
        var stderr: String
        var lines: [String] {
            stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        }
    }

    /// Runs otpctl on the daemon's socket.
    private func otpctl(_ daemon: DaemonProcess, _ arguments: String...) throws -> ProgramResult {
        let result = try runProgram(Binaries.otpctl, arguments + ["--socket", daemon.socket])
        return ProgramResult(status: result.status, stdout: result.stdout, stderr: result.stderr)
    }

    /// The JSON object otpctl printed, after checking the exit status.
    private func object(_ result: ProgramResult, expecting status: Int32 = 0) throws -> [String: Any] {
        #expect(result.status == status, "stderr: \(result.stderr)")
        let value = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        return try #require(value as? [String: Any], "not a JSON object: \(result.stdout)")
    }

    /// The newest line of the daemon's SMS outbox.
    private func lastSMS(_ daemon: DaemonProcess) throws -> [String: Any] {
        let text = try String(contentsOfFile: daemon.outboxPath, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    /// The 6-digit code in an SMS text.
    private func sixDigitCode(in body: String) -> String? {
        body.split(whereSeparator: { !$0.isNumber }).map(String.init).first { $0.count == 6 }
    }

    /// A code that differs from `code` in every digit.
    private func otherCode(than code: String) -> String {
        String(code.map { Character(String((($0.wholeNumberValue ?? 0) + 1) % 10)) })
    }

    /// True when `text` starts with a time like `2026-11-27T10:00:00Z`.
    private func startsWithISOTime(_ text: String) -> Bool {
        let pattern = Array("dddd-dd-ddTdd:dd:ddZ")
        let prefix = Array(text.prefix(pattern.count))
        guard prefix.count == pattern.count else { return false }
        return zip(pattern, prefix).allSatisfy { expected, actual in
            expected == "d" ? actual.isASCII && actual.isNumber : expected == actual
        }
    }
}
