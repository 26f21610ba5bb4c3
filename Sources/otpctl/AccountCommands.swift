import ArgumentParser
import Foundation
import OTPClient

/// `otpctl status ACCOUNT`: what the profile page shows for one account.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show an account's phone, factors, backup codes, lock.",
        discussion: """
            An account otpd has never seen is shown as a new account (setup required). Phone \
            numbers are always masked.

            JSON: one status object. \(statusJSONKeys)
            """)

    @Argument(help: AccountArgument.help) var account: String
    @OptionGroup var global: GlobalOptions

    func validate() throws { try AccountArgument.check(account) }

    func run() async throws {
        let request = GetStatusRequest(accountId: account)
        let status = try await global.request(account: account) { client throws(RPCError) in
            try await client.getStatus(request)
        }
        if global.json {
            JSONOutput.print(status.jsonObject)
        } else {
            status.lines.forEach { print($0) }
        }
    }
}

/// `otpctl phone ...`: the phone number that receives the codes.
struct PhoneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "phone",
        abstract: "Save or change the phone number for codes.",
        subcommands: [PhoneSetCommand.self])
}

/// `otpctl phone set ACCOUNT NUMBER`: saves a first number, or proposes a new one.
struct PhoneSetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Save a phone number (it stays \"not verified\" until a code sent to it is verified).",
        discussion: """
            A first number is saved as not verified; verify it with:
              otpctl send ACCOUNT --purpose verify_phone
              otpctl verify ACCOUNT CODE --purpose verify_phone --challenge ID

            Changing a verified number needs a proof: a code texted to the current number \
            (otpctl send ACCOUNT --purpose change_phone, then otpctl verify ACCOUNT CODE \
            --purpose change_phone --challenge ID prints a proof token), a current \
            authenticator code (--totp), or a backup code. The new number is pending until it \
            is verified the same way as a first number; the current number keeps working \
            until then.

            JSON: {"pending": bool, "status": status object}. \(statusJSONKeys)
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Argument(help: "The number in international format, e.g. +14155550123 (spaces, dashes and dots are allowed).")
    var number: String
    @OptionGroup(title: "Proof (at most one; needed when the account has a verified number)")
    var proof: ProofOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        try AccountArgument.check(account)
        guard !number.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ValidationError("NUMBER must not be empty.")
        }
    }

    func run() async throws {
        let request = SetPhoneRequest(accountId: account, phoneNumber: number, proof: proof.proof)
        let hint = proof.proof == nil ? ProofOptions.hint(for: .changePhone, account: account) : nil
        let response = try await global.request(account: account, proofHint: hint) { client throws(RPCError) in
            try await client.setPhone(request)
        }
        let status = response.status ?? AccountStatus(accountId: account)
        if global.json {
            JSONOutput.print(["pending": response.pending, "status": status.jsonObject])
        } else if response.pending {
            print("The new number is pending until it is verified; the current number keeps working.")
            print("Next: otpctl send \(shellWord(account)) --purpose verify_phone")
        } else {
            print("Saved. The phone number is not verified.")
            print("Next: otpctl send \(shellWord(account)) --purpose verify_phone")
        }
    }
}
