/// The audit event kinds, as far as the configuration needs them.
///
/// This list belongs in OTPCore, next to `TwoFactorService.defaultNotifiedKinds`, where the
/// events are written; it lives here until it moves there. When the domain records a new kind
/// (`grep -rn 'kind: "' Sources/OTPCore`, and the `kind = "` assignments), add it here too.
enum EventKinds {
    /// Every event kind the domain records; `[notify] kinds` may name any of them, and an
    /// unknown name stops otpd (a typo must not turn a notification off without a word).
    static let notifiable: Set<String> = [
        // Phone number and codes
        "phone_saved", "phone_change_requested", "phone_verified", "phone_changed", "code_sent", "code_send_failed",
        "code_refused", "verify", "proof", "sms_delivery_failed",
        // Authenticator
        "totp_enrollment_started", "totp_enrollment_confirm", "totp_enabled", "totp_replay_refused",
        // Factors and backup codes
        "factor_disabled", "preferred_method_changed", "backup_codes_generated", "backup_codes_regenerated",
        "backup_code_redeemed", "backup_codes_low",
        // Lockout and administration
        "account_locked", "account_unlocked", "account_reset",
    ]
}
