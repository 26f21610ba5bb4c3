import OTPCore
import Testing

/// The spellings are stored in databases, sent on the wire and to the notification hook, and
/// named in `[notify] kinds`: they are pinned here, letter for letter.
@Suite("event vocabulary")
struct EventVocabularyTests {
    @Test func eventKindsKeepTheirSpelling() {
        #expect(
            EventKind.allCases.map(\.rawValue) == [
                "phone_saved", "phone_change_requested", "phone_verified", "phone_changed", "code_sent",
                "code_send_failed", "code_refused", "verify", "proof", "sms_delivery_failed", "test_sms_sent",
                "test_sms_failed", "totp_enrollment_started", "totp_enrollment_confirm", "totp_enabled",
                "totp_replay_refused", "factor_disabled", "preferred_method_changed", "backup_codes_generated",
                "backup_codes_regenerated", "backup_code_redeemed", "backup_codes_low", "account_locked",
                "account_unlocked", "account_reset", "sms_breaker_tripped", "sms_breaker_reset", "sms_breaker_exempted",
                "sms_breaker_exemption_removed",
            ])
        #expect(TwoFactorService.recordedKinds == Set(EventKind.allCases))
    }

    @Test func eventOutcomesKeepTheirSpelling() {
        #expect(
            EventOutcome.allCases.map(\.rawValue) == [
                "success", "failure", "pending", "not_verified", "accepted", "failed", "undelivered",
                "undeliverable", "rate_limited", "locked", "refused", "warning",
            ])
    }

    @Test func theDefaultNotifiedKinds() {
        #expect(
            Set(TwoFactorService.defaultNotifiedKinds.map(\.rawValue)) == [
                "phone_verified", "phone_change_requested", "phone_changed", "totp_enabled", "factor_disabled",
                "backup_codes_generated", "backup_codes_regenerated", "backup_code_redeemed", "account_locked",
                "totp_replay_refused", "account_unlocked", "account_reset", "sms_breaker_tripped", "sms_breaker_reset",
                "sms_breaker_exempted", "sms_breaker_exemption_removed",
            ])
    }
}
