import ArgumentParser
import Foundation
import OTPClient

/// `otpctl send ACCOUNT --purpose P`: texts a one-time code (StartChallenge).
struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Text a one-time code to the account's phone.",
        discussion: """
            verify_phone sends to the number waiting for verification (a first number or a \
            pending new one); every other purpose sends to the verified number. A code only \
            works for its own purpose. Asking again too soon is refused with RESOURCE_EXHAUSTED \
            and the wait in seconds.

            JSON: {"challenge_id", "purpose", "destination" (masked), "expires_at", "resend_at" \
            (Unix seconds), "code_length"}.
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Option(help: "What the code is for.") var purpose: PurposeName
    @OptionGroup var global: GlobalOptions

    func validate() throws { try AccountArgument.check(account) }

    func run() async throws {
        let request = StartChallengeRequest(accountId: account, purpose: purpose.wire)
        let ticket = try await global.request(account: account) { client throws(RPCError) in
            try await client.startChallenge(request)
        }
        if global.json {
            JSONOutput.print([
                "challenge_id": ticket.challengeId, "purpose": purpose.rawValue,
                "destination": JSONOutput.string(ticket.destinationMasked),
                "expires_at": JSONOutput.time(ticket.expiresAt), "resend_at": JSONOutput.time(ticket.resendAt),
                "code_length": Int(ticket.codeLength),
            ])
        } else {
            var facts = ["challenge \(ticket.challengeId)", "expires \(TimeText.clock(ticket.expiresAt))"]
            if ticket.resendAt > 0 { facts.append("resend after \(TimeText.clock(ticket.resendAt))") }
            print("Code sent to \(ticket.destinationMasked) (\(facts.joined(separator: ", ")))")
        }
    }
}

/// `otpctl verify ACCOUNT CODE --purpose P`: checks a texted or authenticator code.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a code from a text message or the app.",
        discussion: """
            A code texted by 'otpctl send' needs --challenge with the id that command printed. \
            An authenticator code is accepted wherever a texted code is (leave --challenge \
            out), except for verify_phone, which proves the number the code was sent to.

            A code that is not valid is a refusal: "The code is not valid" (with the attempts \
            left, or the end of a lock) goes to stderr and the exit status is 1. Every failure \
            counts against the account; enough of them lock it.

            On success for verify_phone the number becomes verified and SMS two-factor is on. \
            For change_phone, disable_factor and manage_factors, and after verify_phone, a \
            single-use proof token is printed: pass it as --proof-token to the action it is for \
            (after verify_phone it serves to make the first backup codes).

            JSON (printed on success and on failure): {"success", "factor" ("sms", "totp" or \
            null), "attempts_left", "locked_until", "proof_token", "proof_expires_at", "status" \
            (status object)}; times are Unix seconds, absent values null.
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Argument(help: "The code.") var code: String
    @Option(help: "What the code is for.") var purpose: PurposeName
    @Option(
        name: .customLong("challenge"),
        help: ArgumentHelp("The challenge id printed by 'otpctl send'.", valueName: "id"))
    var challenge: String?
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        try AccountArgument.check(account)
        guard !code.isEmpty else { throw ValidationError("CODE must not be empty.") }
        if let challenge, challenge.isEmpty { throw ValidationError("--challenge must not be empty.") }
        if purpose == .verifyPhone && challenge == nil {
            throw ValidationError(
                "--purpose verify_phone needs --challenge ID (printed by 'otpctl send'): the code proves the number it was sent to."
            )
        }
    }

    func run() async throws {
        let request = VerifyRequest(accountId: account, purpose: purpose.wire, code: code, challengeId: challenge ?? "")
        let response = try await global.request(account: account) { client throws(RPCError) in
            try await client.verify(request)
        }
        let status = response.status ?? AccountStatus(accountId: account)
        if global.json {
            JSONOutput.print([
                "success": response.success,
                "factor": JSONOutput.factor(response.success ? response.factor : .unspecified),
                "attempts_left": Int(response.attemptsLeft), "locked_until": JSONOutput.time(response.lockedUntil),
                "proof_token": JSONOutput.string(response.proofToken),
                "proof_expires_at": JSONOutput.time(response.proofToken.isEmpty ? 0 : response.proofExpiresAt),
                "status": status.jsonObject,
            ])
        }
        guard response.success else {
            throw CommandFailure.codeNotValid(
                attemptsLeft: challenge == nil ? nil : response.attemptsLeft, lockedUntil: response.lockedUntil,
                account: account)
        }
        guard !global.json else { return }
        print("Verified.")
        if purpose == .verifyPhone { print("The phone number is verified") }
        if !response.proofToken.isEmpty {
            print(proofTokenLine(response.proofToken, expiresAt: response.proofExpiresAt))
        }
        if purpose == .verifyPhone && status.backupCodesRemaining == 0 {
            print(backupReminder(account: account, token: response.proofToken))
        }
    }
}
