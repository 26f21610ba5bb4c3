public import Logging
public import OTPCore

/// Tries a list of senders in order and returns the first receipt, e.g. a Twilio Messaging
/// Service first, then a plain `From` number or a second account.
///
/// It moves on to the next sender only when the current one fails with:
/// - `.temporary` (rate limit, outage, timeout): another route may be up right now;
/// - `.configuration` (credentials revoked, `From` number unusable, trial account): the problem
///   belongs to that sender's settings, not to the message, so a sender with other settings can
///   still deliver; the failing sender has already logged it at `error` level for an
///   administrator.
///
/// An `.undeliverable` failure is final: it is about the number (invalid, landline, opted out),
/// so another route would fail the same way, cost money, or — for an opt-out (STOP) — go around
/// the recipient's choice.
///
/// The receipt and the final error count every HTTP attempt made through all senders tried. The
/// final error is the last sender's, with that total.
public struct FailoverSender: SMSSender {
    /// `failover(` + the senders' names in order + `)`, e.g. `failover(twilio,twilio)`.
    public let name: String
    /// The senders, in the order they are tried.
    public let senders: [any SMSSender]
    private let logger: Logger

    /// - Parameter senders: at least one sender, tried in this order.
    /// - Precondition: `senders` is not empty.
    public init(senders: [any SMSSender], logger: Logger) {
        precondition(!senders.isEmpty, "FailoverSender needs at least one sender")
        self.senders = senders
        self.logger = logger
        self.name = "failover(" + senders.map(\.name).joined(separator: ",") + ")"
    }

    /// Sends through the first sender that takes the message (see the type's documentation).
    public func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt {
        var attempts = 0
        for (index, sender) in senders.enumerated() {
            do {
                var receipt = try await sender.send(message)
                receipt.attempts += attempts
                return receipt
            } catch {
                attempts += error.attempts
                let isLast = index == senders.count - 1
                guard !isLast, error.kind != .undeliverable, !Task.isCancelled else {
                    var final = error
                    final.attempts = attempts
                    if final.provider.isEmpty { final.provider = sender.name }
                    throw final
                }
                logger.warning(
                    "sms sender failed, trying the next one",
                    metadata: [
                        "sms.sender": "\(index + 1) of \(senders.count) (\(sender.name))",
                        "sms.kind": "\(error.kind)", "sms.reason": "\(error.reason)",
                        "sms.error_code": "\(error.providerCode.map(String.init) ?? "none")",
                        "sms.to": "\(message.to.masked)", "sms.challenge": "\(message.challengeID)",
                    ])
            }
        }
        preconditionFailure("unreachable: the last sender either returns or throws")
    }
}
