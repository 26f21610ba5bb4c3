public import Foundation

/// Every limit and setting of the domain, with the defaults of docs/SECURITY.md. The daemon fills
/// it from its configuration; tests build their own.
public struct TwoFactorPolicy: Sendable {
    // Codes
    /// Digits of an SMS code (6-10).
    public var codeLength: CodeDigits = .six
    /// How long an SMS code works (at most 10 minutes).
    public var codeLifetime: TimeInterval = 300
    /// Wrong codes allowed per challenge.
    public var attemptsPerChallenge = 5

    // Lockout
    /// Consecutive failures (all factors together) that lock the account.
    public var lockThreshold = 10
    /// Lock times for the first, second, ... lockout of a failure streak (the last repeats).
    public var lockDurations: [TimeInterval] = [60, 300, 900, 3600]
    /// After this many consecutive failures the account stays locked until an administrator
    /// unlocks it.
    public var maximumConsecutiveFailures = 100

    /// Whether a guess refused because the account is locked gets an audit event of its own,
    /// given the account's consecutive failures counting that guess (docs/SECURITY.md §11).
    ///
    /// Yes for the first guess refused in each lock (the one after a lock began at a multiple of
    /// ``lockThreshold``, or after ``maximumConsecutiveFailures``) and whenever the count
    /// reaches a power of two; no otherwise. Every refused guess still counts in the account
    /// and in the metrics; only its own event is left out, so a bot hammering a locked account
    /// adds a number of events that grows with the logarithm of its guesses instead of with
    /// them (each guess was one or two events: a database growing by tens of megabytes a minute
    /// under an attack, and write latency growing with it).
    public func auditsGuessWhileLocked(consecutiveFailures n: Int) -> Bool {
        guard n > 1 else { return true }
        if n & (n - 1) == 0 { return true }
        if n > maximumConsecutiveFailures { return n == maximumConsecutiveFailures + 1 }
        return (n - 1) % lockThreshold == 0
    }

    // SMS budgets
    /// Wait before the first resend of a code for the same purpose; doubles on each repeat.
    public var resendCooldown: TimeInterval = 30
    public var maximumResendCooldown: TimeInterval = 900
    public var smsPerAccountPerHour = 5
    /// Texts to one number as some account's verified number (logins, changes), per day.
    public var smsPerPhonePerDay = 10
    /// Verification texts (and test texts) to one number, per day: a separate pool, so that
    /// whoever saves someone else's number and drains this one cannot stop that person's
    /// login texts (``SMSPool``).
    public var smsVerificationsPerPhonePerDay = 5
    /// 0 turns the per-country budget off (then rely on the allow-list and the provider).
    public var smsPerCountryPerHour = 100
    /// 0 turns the overall budget off.
    public var smsGlobalPerMinute = 60
    /// Country calling codes that may receive texts (e.g. `["1", "44"]`); empty allows all.
    public var allowedCountryCodes: Set<String> = []
    /// The SMS pumping breaker: pauses verification texts to a range whose codes are not
    /// typed in (``SMSBreakerPolicy``).
    public var smsBreaker = SMSBreakerPolicy()

    // Authenticator
    /// Steps accepted either side of the current one.
    public var totpWindow = 1
    /// How long an authenticator enrolment waits for its first code.
    public var totpEnrollmentLifetime: TimeInterval = 600
    /// The issuer shown in authenticator apps.
    public var issuer = "otpd"

    // Backup codes
    /// Codes in a set (5-20).
    public var backupCodeCount = 10
    /// Purposes for which a backup code is accepted as proof (a user who lost the phone can
    /// change the number or turn SMS off with one).
    public var backupCodeProofPurposes: Set<CodePurpose> = [.changePhone, .disableFactor]
    /// At or below this many unused codes the user is told to make a new set.
    public var backupCodesLowWatermark = 3

    /// The name that starts every text, e.g. the shop's name.
    public var smsBrand = "otpd"

    // MARK: Retention (the pruner, `TwoFactorService.prune()`)

    /// Audit events older than this are deleted; nil keeps them forever. Default 400 days: a
    /// year of history for the yearly access review, plus a margin.
    public var eventRetention: TimeInterval? = 400 * 86_400
    /// SMS delivery records older than this are deleted; nil keeps them forever.
    public var deliveryRetention: TimeInterval? = 90 * 86_400
    /// Challenges are deleted this long after they expired (their outcome stays in the audit
    /// log). A day keeps the audit reason for a late code precise ("expired", not "unknown").
    public var expiredChallengeRetention: TimeInterval = 86_400

    public init() {}

    /// Checks the ranges the security rules demand.
    public func validate() throws(TwoFactorError) {
        try checkSetting(codeLifetime >= 30 && codeLifetime <= 600, "code lifetime must be 30-600 seconds")
        try checkSetting((1...20).contains(attemptsPerChallenge), "attempts per challenge must be 1-20")
        try checkSetting((1...100).contains(lockThreshold), "lock threshold must be 1-100")
        try checkSetting(
            !lockDurations.isEmpty && lockDurations.allSatisfy { $0 > 0 }, "lock durations must be positive")
        try checkSetting(
            maximumConsecutiveFailures >= lockThreshold && maximumConsecutiveFailures <= 100,
            "maximum consecutive failures must be between the lock threshold and 100")
        try checkSetting(
            resendCooldown >= 0 && maximumResendCooldown >= resendCooldown, "resend cooldowns are inconsistent")
        try checkSetting(
            smsPerAccountPerHour > 0 && smsPerPhonePerDay > 0 && smsVerificationsPerPhonePerDay > 0
                && smsPerCountryPerHour >= 0 && smsGlobalPerMinute >= 0,
            "SMS budgets per account and per number must be positive")
        try checkSetting((0...2).contains(totpWindow), "TOTP window must be 0-2 steps")
        try checkSetting((5...20).contains(backupCodeCount), "backup code count must be 5-20")
        try checkSetting(!issuer.isEmpty && !issuer.contains(":"), "issuer must be non-empty and contain no colon")
        try checkSetting(
            (eventRetention ?? .infinity) >= 86_400 && (deliveryRetention ?? .infinity) >= 86_400,
            "event and delivery retention must be at least one day")
        try checkSetting(expiredChallengeRetention >= 0, "expired challenge retention must not be negative")
        try smsBreaker.validate()
    }

    /// How long the `lockNumber`-th lockout (1-based) of a streak lasts.
    func lockDuration(forLock lockNumber: Int) -> TimeInterval {
        lockDurations[min(max(lockNumber, 1), lockDurations.count) - 1]
    }

    /// The wait after the `sends`-th send for one purpose within the hour.
    func cooldown(afterSends sends: Int) -> TimeInterval {
        guard sends > 0 else { return 0 }
        let factor = pow(2.0, Double(min(sends - 1, 16)))
        return min(resendCooldown * factor, maximumResendCooldown)
    }
}

/// The check of one setting's range: INVALID_ARGUMENT with `message` unless `ok`.
func checkSetting(_ ok: Bool, _ message: String) throws(TwoFactorError) {
    if !ok { throw TwoFactorError(.invalidArgument, message) }
}
