import ArgumentParser
import Foundation
import OTPClient

/// `otpctl sms breaker [reset|exempt|unexempt RANGE]`: the SMS pumping breaker
/// (docs/SECURITY.md §22).
struct SMSBreakerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "breaker",
        abstract: "List the number ranges the SMS pumping breaker paused, exempts or watches (administrator).",
        discussion: """
            One line per country calling code (+44) or number range (+4479112): its state \
            (tripped: verification texts to it are paused; exempt; watched), the verification \
            texts of the window and how many were verified, the end of the pause, and how many \
            times it tripped. Texts to verified numbers (logins) are never counted or paused.

            JSON: an array of {"scope", "state", "texts", "verified", "paused_until" (Unix \
            seconds or null), "trips"}.
            """,
        subcommands: [
            SMSBreakerListCommand.self, SMSBreakerResetCommand.self, SMSBreakerExemptCommand.self,
            SMSBreakerUnexemptCommand.self,
        ],
        defaultSubcommand: SMSBreakerListCommand.self)

    static func print(_ breakers: [SmsBreaker], json: Bool) {
        if json {
            JSONOutput.print(
                breakers.map { b -> [String: Any] in
                    [
                        "scope": b.scope, "state": b.state.description, "texts": Int(b.texts),
                        "verified": Int(b.verified), "paused_until": JSONOutput.time(b.pausedUntil),
                        "trips": Int(b.trips),
                    ]
                })
            return
        }
        if breakers.isEmpty {
            Swift.print("No verification texts in the window, and no range paused or exempt.")
            return
        }
        for b in breakers {
            var fields = [b.scope, b.state.description, "\(b.verified) of \(b.texts) verified"]
            if b.pausedUntil != 0 { fields.append("paused until \(TimeText.iso(b.pausedUntil))") }
            if b.trips != 0 { fields.append("tripped \(b.trips) time\(b.trips == 1 ? "" : "s")") }
            Swift.print(fields.joined(separator: "  "))
        }
    }
}

struct SMSBreakerListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the paused, exempt and watched ranges (the default).")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let response = try await global.request(account: nil) { client throws(RPCError) in
            try await client.listSmsBreakers()
        }
        SMSBreakerCommand.print(response.breakers, json: global.json)
    }
}

/// The options every change takes, and the call.
struct SMSBreakerChange: ParsableArguments {
    @Argument(help: "A country calling code (+44) or a number range (+4479112).") var range: String
    @Option(help: AdminActor.help) var actor: String?
    @Option(help: "Why, for the audit trail.") var reason: String?
    @OptionGroup var global: GlobalOptions

    func apply(_ action: SmsBreakerAction) async throws {
        let request = UpdateSmsBreakerRequest(
            scope: range, action: action, actor: AdminActor.name(actor), reason: reason ?? "")
        let response = try await global.request(account: nil) { client throws(RPCError) in
            try await client.updateSmsBreaker(request)
        }
        SMSBreakerCommand.print(response.breaker.map { [$0] } ?? [], json: global.json)
    }
}

struct SMSBreakerResetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset", abstract: "End a range's pause and count it afresh (audited).")
    @OptionGroup var change: SMSBreakerChange
    func run() async throws { try await change.apply(.reset) }
}

struct SMSBreakerExemptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exempt", abstract: "Never pause a range (audited; its country is still watched).")
    @OptionGroup var change: SMSBreakerChange
    func run() async throws { try await change.apply(.exempt) }
}

struct SMSBreakerUnexemptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unexempt", abstract: "Watch an exempt range again, counting afresh (audited).")
    @OptionGroup var change: SMSBreakerChange
    func run() async throws { try await change.apply(.removeExemption) }
}
