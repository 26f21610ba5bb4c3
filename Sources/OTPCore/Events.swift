public import Foundation
import OTPMetrics

/// What an audit event records. The raw values are the spelling in the database, in the
/// notification hook's JSON and environment, on the wire and in `[notify] kinds`: they must
/// never change (existing databases and clients depend on them). A new kind is a new case.
public enum EventKind: String, Sendable, CaseIterable {
    // Phone number and codes
    case phoneSaved = "phone_saved"
    case phoneChangeRequested = "phone_change_requested"
    case phoneVerified = "phone_verified"
    case phoneChanged = "phone_changed"
    case codeSent = "code_sent"
    case codeSendFailed = "code_send_failed"
    case codeRefused = "code_refused"
    case verify
    case proof
    case smsDeliveryFailed = "sms_delivery_failed"
    case testSMSSent = "test_sms_sent"
    case testSMSFailed = "test_sms_failed"
    // Authenticator
    case totpEnrollmentStarted = "totp_enrollment_started"
    case totpEnrollmentConfirm = "totp_enrollment_confirm"
    case totpEnabled = "totp_enabled"
    case totpReplayRefused = "totp_replay_refused"
    // Factors and backup codes
    case factorDisabled = "factor_disabled"
    case preferredMethodChanged = "preferred_method_changed"
    case backupCodesGenerated = "backup_codes_generated"
    case backupCodesRegenerated = "backup_codes_regenerated"
    case backupCodeRedeemed = "backup_code_redeemed"
    case backupCodesLow = "backup_codes_low"
    // Lockout and administration
    case accountLocked = "account_locked"
    case accountUnlocked = "account_unlocked"
    case accountReset = "account_reset"
    // The SMS pumping breaker (docs/SECURITY.md §22)
    case smsBreakerTripped = "sms_breaker_tripped"
    case smsBreakerReset = "sms_breaker_reset"
    case smsBreakerExempted = "sms_breaker_exempted"
    case smsBreakerExemptionRemoved = "sms_breaker_exemption_removed"
}

/// How an audited attempt ended. The raw values are stored and shown like ``EventKind``'s and
/// must never change either.
public enum EventOutcome: String, Sendable, CaseIterable {
    case success
    case failure
    /// Started, waiting for a code (a pending number or authenticator).
    case pending
    /// A number saved but not yet proved.
    case notVerified = "not_verified"
    /// A text the provider took.
    case accepted
    /// A text the provider refused, or (a provider's status) one it could not deliver.
    case failed
    /// A provider's status: the message did not reach the phone.
    case undelivered
    /// A text not sent because the number cannot receive texts.
    case undeliverable
    /// A text not sent because a budget is used up.
    case rateLimited = "rate_limited"
    case locked
    case refused
    case warning
}

/// One audit record. Never holds a code, a secret or a full phone number.
public struct EventRecord: Sendable, Equatable {
    /// Assigned by the store; 0 for a new event.
    public var id: Int64
    public var accountID: String
    public var kind: EventKind
    public var outcome: EventOutcome
    public var detail: String
    public var destinationMasked: String
    public var at: Date

    public init(
        id: Int64 = 0, accountID: String, kind: EventKind, outcome: EventOutcome, detail: String = "",
        destinationMasked: String = "", at: Date
    ) {
        self.id = id
        self.accountID = accountID
        self.kind = kind
        self.outcome = outcome
        self.detail = detail
        self.destinationMasked = destinationMasked
        self.at = at
    }
}

extension TwoFactorService {
    /// Appends one audit event in `tx`: the one way the domain writes to the audit trail.
    /// `destination` is a masked number, never a full one.
    func audit(
        _ kind: EventKind, _ outcome: EventOutcome, account: String, detail: String = "", destination: String = "",
        at now: Date, in tx: any StoreTransaction
    ) throws {
        try tx.appendEvent(
            EventRecord(
                accountID: account, kind: kind, outcome: outcome, detail: detail, destinationMasked: destination,
                at: now))
    }

    /// Appends a refusal's audit event (a refused proof, a text refused by a budget or the
    /// breaker) unless the account already has `refusalEventsPerHour` events of that kind in
    /// the last hour among its newest `refusalEventWindow` events (docs/SECURITY.md §11). A
    /// refusal is not a guess and counts nowhere else, so without this cap each of a stolen
    /// session's requests would add an event, for as long as it kept sending. The answer is the
    /// same either way; a refusal past the cap is counted in `otpd_audit_events_capped_total`
    /// (by kind) once its transaction commits. Returns whether the event was written.
    @discardableResult
    func auditRefusal(
        _ kind: RefusalKind, _ outcome: EventOutcome, account: String, detail: String, destination: String = "",
        at now: Date, in tx: any StoreTransaction
    ) throws -> Bool {
        let recent = try tx.countRecentEvents(
            accountID: account, kind: kind.event, since: now.addingTimeInterval(-3600),
            window: Self.refusalEventWindow)
        guard recent < Self.refusalEventsPerHour else {
            tx.afterCommit { OTPMetrics.auditEventCapped(kind.metric) }
            return false
        }
        // The last one kept says so, so that a reader knows the trail is cut there.
        let last = recent == Self.refusalEventsPerHour - 1
        try audit(
            kind.event, outcome, account: account,
            detail: last ? detail + "; further ones within the hour are not recorded" : detail,
            destination: destination, at: now, in: tx)
        return true
    }

    /// The refusals `auditRefusal` caps: each is one audit event kind and one label of
    /// `otpd_audit_events_capped_total`, so a capped refusal is always counted.
    enum RefusalKind: Sendable {
        /// A step-up refused for want of its proof.
        case proof
        /// A text refused by a budget, the breaker, or a number known to be unreachable.
        case codeRefused

        var event: EventKind {
            switch self {
            case .proof: .proof
            case .codeRefused: .codeRefused
            }
        }

        var metric: OTPMetrics.CappedEvent {
            switch self {
            case .proof: .proof
            case .codeRefused: .codeRefused
            }
        }
    }

    /// Refusal events of one kind kept per account and hour (`auditRefusal`).
    static let refusalEventsPerHour = 10
    /// How many of an account's newest events `auditRefusal` looks through.
    static let refusalEventWindow = 64
}
