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
    /// The sender that took it, e.g. `twilio` or `outbox`.
    public var provider: String
    /// The provider's id of the message (Twilio's `SM...` sid).
    public var messageID: String
    /// The provider's status on acceptance, e.g. `queued` or `accepted`.
    public var status: String
    /// HTTP requests it took (retries included).
    public var attempts: Int

    public init(provider: String, messageID: String, status: String = "accepted", attempts: Int = 1) {
        self.provider = provider
        self.messageID = messageID
        self.status = status
        self.attempts = attempts
    }
}

/// Why a message was not sent. Never contains the message text or a credential.
public struct SMSSendError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The number cannot receive texts (invalid, landline, opted out, unroutable).
        case undeliverable
        /// A temporary provider problem (rate limit, outage, timeout): trying later may work.
        case temporary
        /// otpd's own settings are wrong (credentials, sender number).
        case configuration
    }

    public var kind: Kind
    /// For the log and the delivery log.
    public var reason: String
    /// The sender that failed, e.g. `twilio`.
    public var provider: String
    /// The provider's numeric error code (Twilio's `code`), when it gave one.
    public var providerCode: Int?
    /// HTTP requests made before giving up.
    public var attempts: Int

    public init(kind: Kind, reason: String, provider: String = "", providerCode: Int? = nil, attempts: Int = 1) {
        self.kind = kind
        self.reason = reason
        self.provider = provider
        self.providerCode = providerCode
        self.attempts = attempts
    }

    public static func undeliverable(reason: String, providerCode: Int? = nil) -> SMSSendError {
        SMSSendError(kind: .undeliverable, reason: reason, providerCode: providerCode)
    }

    public static func temporary(reason: String, providerCode: Int? = nil) -> SMSSendError {
        SMSSendError(kind: .temporary, reason: reason, providerCode: providerCode)
    }

    public static func configuration(reason: String, providerCode: Int? = nil) -> SMSSendError {
        SMSSendError(kind: .configuration, reason: reason, providerCode: providerCode)
    }

    public var description: String {
        "\(kind) from \(provider.isEmpty ? "sender" : provider)"
            + (providerCode.map { " (code \($0))" } ?? "") + ": \(reason) after \(attempts) attempt(s)"
    }
}

/// Sends text messages. Implementations must not log the message body or a credential, must
/// give up before `message.expiresAt`, and must not block the caller's thread.
public protocol SMSSender: Sendable {
    /// A short name for `ServerInfo` and logs, e.g. `outbox` or `twilio`.
    var name: String { get }
    func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt
}
