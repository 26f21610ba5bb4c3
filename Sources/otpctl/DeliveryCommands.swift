import ArgumentParser
import Foundation
import OTPClient

/// `otpctl deliveries [ACCOUNT]`: the SMS delivery log, newest first.
struct DeliveriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveries",
        abstract: "Show the SMS delivery log, newest first.",
        discussion: """
            One line per text handed to the SMS provider: time (UTC), [account,] purpose, masked \
            number, provider, status (accepted/queued/sent/delivered/undelivered/failed from the \
            provider; rejected or error when it never took the message), error code, attempts, \
            message sid. Never the text.

            JSON: an array of {"id", "account_id", "challenge_id", "purpose", \
            "destination_masked", "provider", "message_sid", "status", "error_code", "attempts", \
            "created_at", "updated_at" (Unix seconds)}; absent values are null.
            """)

    @Argument(help: "The account id (default: every account).") var account: String?
    @Option(help: "How many deliveries to show (1-500).") var limit: Int = 50
    @Option(help: ArgumentHelp("Show only deliveries older than this id (paging).", valueName: "id"))
    var before: UInt64?
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let account { try AccountArgument.check(account) }
        guard (1...500).contains(limit) else { throw ValidationError("--limit must be 1-500.") }
        if before == 0 { throw ValidationError("--before must be a delivery id (1 or more).") }
    }

    func run() async throws {
        let request = ListDeliveriesRequest(accountId: account ?? "", pageSize: UInt32(limit), beforeId: before ?? 0)
        let page = try await global.request(account: account) { client throws(RPCError) in
            try await client.listDeliveries(request)
        }
        if global.json {
            JSONOutput.print(
                page.deliveries.map { d -> [String: Any] in
                    [
                        "id": Int(d.id), "account_id": d.accountId, "challenge_id": JSONOutput.string(d.challengeId),
                        "purpose": d.purpose, "destination_masked": d.destinationMasked, "provider": d.provider,
                        "message_sid": JSONOutput.string(d.messageSid), "status": d.status,
                        "error_code": d.errorCode == 0 ? NSNull() : Int(d.errorCode), "attempts": Int(d.attempts),
                        "created_at": JSONOutput.time(d.createdAt), "updated_at": JSONOutput.time(d.updatedAt),
                    ]
                })
            return
        }
        if page.deliveries.isEmpty {
            print("No deliveries.")
            return
        }
        for d in page.deliveries {
            var fields = [TimeText.iso(d.createdAt)]
            if account == nil { fields.append(d.accountId) }
            fields += [d.purpose, d.destinationMasked, d.provider, d.status]
            if d.errorCode != 0 { fields.append("error \(d.errorCode)") }
            fields.append("\(d.attempts) attempt\(d.attempts == 1 ? "" : "s")")
            if !d.messageSid.isEmpty { fields.append(d.messageSid) }
            print(fields.joined(separator: "  "))
        }
        if page.nextBeforeId != 0 {
            print(
                "More: otpctl deliveries\(account.map { " " + $0 } ?? "") --limit \(limit) --before \(page.nextBeforeId)"
            )
        }
    }
}

/// `otpctl sms test NUMBER`: an administrator's check of the SMS settings.
struct SMSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sms", abstract: "Check the SMS sender; the SMS pumping breaker.",
        subcommands: [SMSTestCommand.self, SMSBreakerCommand.self])
}

struct SMSTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Send a test text (no code in it) through the configured sender.",
        discussion: """
            Shows whether the provider took the message (and its message sid), or why not: a \
            configuration problem (wrong account SID or token, bad sender number), a number that \
            cannot receive texts, or a temporary failure. JSON: {"provider", "message_sid", \
            "status", "attempts"}.
            """)

    @Argument(help: "The phone number, E.164 (e.g. +15551234567).") var number: String
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let response = try await global.request(account: nil) { client throws(RPCError) in
            try await client.sendTestSms(SendTestSmsRequest(phoneNumber: number))
        }
        if global.json {
            JSONOutput.print([
                "provider": response.provider, "message_sid": JSONOutput.string(response.messageSid),
                "status": response.status, "attempts": Int(response.attempts),
            ])
        } else {
            print(
                "Sent through \(response.provider): \(response.status)"
                    + (response.messageSid.isEmpty ? "" : " (\(response.messageSid))")
                    + ", \(response.attempts) attempt\(response.attempts == 1 ? "" : "s").")
        }
    }
}

/// `otpctl report-delivery`: forwards a provider status callback by hand (what the shop's web
/// endpoint does for every Twilio callback); useful to replay one from a web server log.
struct ReportDeliveryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report-delivery",
        abstract: "Forward a Twilio status callback (URL, form fields, X-Twilio-Signature).",
        discussion: """
            Example: otpctl report-delivery https://shop.example/otpd/twilio-status \
            --field MessageSid=SM... --field MessageStatus=delivered --signature 'base64...'
            A forged or altered report is refused (PERMISSION_DENIED, exit 1). JSON: \
            {"updated", "message_sid", "status"}.
            """)

    @Argument(help: "The full callback URL Twilio called.") var url: String
    @Option(
        name: .customLong("field"), help: ArgumentHelp("A form field as NAME=VALUE (repeat).", valueName: "name=value"))
    var fields: [String] = []
    @Option(help: "The X-Twilio-Signature header.") var signature: String
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        for field in fields where !field.contains("=") {
            throw ValidationError("--field takes NAME=VALUE, not \(field)")
        }
    }

    func run() async throws {
        let parameters = fields.map { field -> FormParameter in
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return FormParameter(name: String(parts[0]), value: parts.count > 1 ? String(parts[1]) : "")
        }
        let request = ReportDeliveryRequest(url: url, parameters: parameters, signature: signature)
        let response = try await global.request(account: nil) { client throws(RPCError) in
            try await client.reportDelivery(request)
        }
        if global.json {
            JSONOutput.print([
                "updated": response.updated, "message_sid": response.messageSid, "status": response.status,
            ])
        } else {
            print(
                response.updated
                    ? "Delivery \(response.messageSid) is now \(response.status)."
                    : "Nothing changed: \(response.messageSid) is \(response.status).")
        }
    }
}
