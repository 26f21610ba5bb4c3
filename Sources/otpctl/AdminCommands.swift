import ArgumentParser
import Foundation
import OTPClient

/// `otpctl events [ACCOUNT]`: the audit trail, newest first.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "List audit events, newest first.",
        discussion: """
            One line per event: time (UTC), [account,] kind, outcome, masked number, detail. \
            Events never hold a code, a secret or a full phone number. When more events exist, \
            the last line says how to see the next page (--before with the last id shown).

            JSON: an array of {"id", "account_id", "kind", "outcome", "detail", \
            "destination_masked", "at" (ISO-8601 UTC), "at_ms" (Unix milliseconds)}; absent \
            values are null. The next page starts --before the last id.
            """)

    @Argument(help: "The account id (default: every account).") var account: String?
    @Option(help: "How many events to show (1-500).") var limit: Int = 50
    @Option(help: ArgumentHelp("Show only events older than this event id (paging).", valueName: "id"))
    var before: UInt64?
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let account { try AccountArgument.check(account) }
        guard (1...500).contains(limit) else { throw ValidationError("--limit must be 1-500.") }
        if before == 0 { throw ValidationError("--before must be an event id (1 or more).") }
    }

    func run() async throws {
        let request = ListEventsRequest(accountId: account ?? "", pageSize: UInt32(limit), beforeId: before ?? 0)
        let page = try await global.request(account: account) { client throws(RPCError) in
            try await client.listEvents(request)
        }
        if global.json {
            JSONOutput.print(page.events.map(\.jsonObject))
            return
        }
        if page.events.isEmpty {
            print("No events.")
            return
        }
        var rows = page.events.map { event in
            var row = [TimeText.iso(Int64((Double(event.atMs) / 1000).rounded(.down)))]
            if account == nil { row.append(event.accountId) }
            row += [event.kind, event.outcome, event.destinationMasked.isEmpty ? "-" : event.destinationMasked]
            row.append(event.detail)
            return row
        }
        let widths = (0..<rows[0].count - 1).map { column in rows.map { $0[column].count }.max() ?? 0 }
        rows = rows.map { row in
            row.enumerated().map { index, text in
                index < widths.count ? text.padding(toLength: widths[index], withPad: " ", startingAt: 0) : text
            }
        }
        for row in rows {
            print(row.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        if page.nextBeforeId != 0 {
            let who = account.map { " \(shellWord($0))" } ?? ""
            print("More: otpctl events\(who) --limit \(limit) --before \(page.nextBeforeId)")
        }
    }
}

extension Event {
    /// The event as printed by `otpctl events --json`.
    var jsonObject: [String: Any] {
        [
            "id": Int(clamping: id), "account_id": accountId, "kind": kind, "outcome": outcome,
            "detail": JSONOutput.string(detail), "destination_masked": JSONOutput.string(destinationMasked),
            "at": TimeText.iso(Int64((Double(atMs) / 1000).rounded(.down))), "at_ms": Int(atMs),
        ]
    }
}

/// Who runs otpctl, for the audit trail of administrator actions.
enum AdminActor {
    static let help = ArgumentHelp(
        "Who does this, for the audit trail (default: the Unix user running otpctl).", valueName: "name")

    static func name(_ given: String?) -> String {
        if let given, !given.isEmpty { return given }
        let user = ProcessInfo.processInfo.userName
        if let sudoUser = ProcessInfo.processInfo.environment["SUDO_USER"], !sudoUser.isEmpty, sudoUser != user {
            return "\(sudoUser) (as \(user))"
        }
        return user
    }
}

/// `otpctl unlock ACCOUNT`: ends a lockout.
struct UnlockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract: "End an account's lock (administrator).",
        discussion: """
            Recorded in the audit trail with --actor and --reason.

            JSON: {"status": status object}. \(statusJSONKeys)
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Option(help: AdminActor.help) var actor: String?
    @Option(help: "Why, for the audit trail.") var reason: String?
    @OptionGroup var global: GlobalOptions

    func validate() throws { try AccountArgument.check(account) }

    func run() async throws {
        let request = UnlockAccountRequest(accountId: account, actor: AdminActor.name(actor), reason: reason ?? "")
        let response = try await global.request(account: account) { client throws(RPCError) in
            try await client.unlockAccount(request)
        }
        let status = response.status ?? AccountStatus(accountId: account)
        if global.json {
            JSONOutput.print(["status": status.jsonObject])
        } else {
            print("Unlocked. The failure count of \(account) is cleared.")
        }
    }
}

/// `otpctl reset ACCOUNT --yes`: removes every factor of an account.
struct ResetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Remove every factor of an account (administrator).",
        discussion: """
            The phone number, the authenticator, the backup codes, open codes and proof tokens \
            are removed; the audit events are kept. The user must set up two-factor again at \
            the next login. Without --yes nothing is done (usage error, exit status 2).

            JSON: {"status": status object}. \(statusJSONKeys)
            """)

    @Argument(help: AccountArgument.help) var account: String
    @Option(help: AdminActor.help) var actor: String?
    @Option(help: "Why, for the audit trail.") var reason: String?
    @Flag(help: "Confirm the reset (required).") var yes = false
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        try AccountArgument.check(account)
        guard yes else {
            throw ValidationError(
                "reset removes every factor of \(account) and cannot be undone; add --yes to confirm.")
        }
    }

    func run() async throws {
        let request = ResetAccountRequest(accountId: account, actor: AdminActor.name(actor), reason: reason ?? "")
        let response = try await global.request(account: account) { client throws(RPCError) in
            try await client.resetAccount(request)
        }
        let status = response.status ?? AccountStatus(accountId: account)
        if global.json {
            JSONOutput.print(["status": status.jsonObject])
        } else {
            print(
                "Reset. Every factor of \(account) is removed (events are kept); setup is required at the next login.")
        }
    }
}
