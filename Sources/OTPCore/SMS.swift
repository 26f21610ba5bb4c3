public import Foundation

/// One text message to send.
public struct SMSMessage: Sendable, CustomStringConvertible {
    public var to: PhoneNumber
    /// The full text, including the code: only senders ever see it.
    public var body: String
    public var purpose: CodePurpose
    public var challengeID: String
    /// When the code stops working (a sender may pass the remaining lifetime to the provider).
    public var expiresAt: Date

    public init(to: PhoneNumber, body: String, purpose: CodePurpose, challengeID: String, expiresAt: Date) {
        self.to = to
        self.body = body
        self.purpose = purpose
        self.challengeID = challengeID
        self.expiresAt = expiresAt
    }

    /// Safe for logs: masked number, no text.
    public var description: String { "SMS(to: \(to.masked), purpose: \(purpose.rawValue), challenge: \(challengeID))" }
}

/// What the provider said when it took a message.
public struct SMSReceipt: Sendable, Equatable {
    public var provider: String
    public var messageID: String

    public init(provider: String, messageID: String) {
        self.provider = provider
        self.messageID = messageID
    }
}

/// Why a message was not sent. Never contains the message text.
public enum SMSSendError: Error, Sendable, Equatable {
    /// The number cannot receive texts (invalid, landline, opted out, blocked country).
    case undeliverable(reason: String)
    /// A temporary provider problem (rate limit, outage, timeout): trying later may work.
    case temporary(reason: String)
    /// otpd's own settings are wrong (credentials, sender number).
    case configuration(reason: String)
}

/// Sends text messages. Implementations must not log the message body.
public protocol SMSSender: Sendable {
    /// A short name for `ServerInfo` and logs, e.g. `outbox` or `twilio`.
    var name: String { get }
    func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt
}
