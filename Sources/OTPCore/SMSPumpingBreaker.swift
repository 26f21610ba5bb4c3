public import Foundation

/// The settings of the SMS pumping breaker (docs/SECURITY.md §22).
///
/// SMS pumping (toll fraud) is bots asking for texts to numbers of one premium range, whose
/// codes are never typed in: every number is used once, so the per-account and per-number
/// budgets do not see it. What does show is the range's verification rate. People who save
/// their own number type in the code they receive (most within a minute or two); a bot never
/// does. So the breaker watches, per country calling code and per number range (the country
/// code and the first ``prefixDigits`` digits after it), the verification texts sent over the
/// last ``window`` and how many of their codes were verified, and pauses verification texts
/// to a range whose rate falls below ``minimumVerifiedFraction`` once enough of its texts
/// have had their chance (``minimumTextsPerRange``).
///
/// Only verification texts (`verify_phone`, to a number not yet proved) are counted and
/// paused. Texts to a verified number (logins, changes) are never paused: that number once
/// received a code and its owner typed it in, and an administrator of the shop must never be
/// locked out by a bot's traffic under the same range. They are paid from budgets of their own
/// (per account, per number).
public struct SMSBreakerPolicy: Sendable, Equatable {
    /// Off: nothing is counted or paused.
    public var enabled = true
    /// How far back texts count. An hour: long enough to see a range's pattern, short enough
    /// that a quiet range's old texts stop counting the same day.
    public var window: TimeInterval = 3600
    /// Digits after the country calling code that make a range (4-8). 5 digits is a block of
    /// at most 100,000 numbers for a 10-digit national number: about the size in which
    /// carriers hand out premium and international-revenue-share ranges, and narrow enough that
    /// pausing one leaves the country's other numbers untouched.
    public var prefixDigits = 5
    /// A range is judged once this many of its verification texts in the window have had their
    /// chance to be verified. 10: with people's typical rate (well over half of the codes typed
    /// in), 10 texts with at most one verified happen by chance about once in 600 tries (p =
    /// 0.6), while a bot reaches 10 after 10 texts.
    public var minimumTextsPerRange = 10
    /// The same for a whole country calling code (0 turns the country-level breaker off): it
    /// catches a bot that spreads its texts over many ranges of one country. 50, since a
    /// country's texts mix many people's and a pause there stops every new number of the
    /// country (verified numbers still get their texts).
    public var minimumTextsPerCountry = 50
    /// A range (or country) is paused when fewer than this fraction of its judged texts were
    /// verified. 0.2: far below people's rate, far above a bot's 0.
    public var minimumVerifiedFraction = 0.2
    /// A text counts against its range once it is this old without being verified (or at once
    /// when verified). 120 s: most people type the code within a minute, and a burst of
    /// people saving numbers at once must not look like a bot while their codes are on the
    /// way. Capped by the code's lifetime.
    public var decisionDelay: TimeInterval = 120
    /// How long a tripped range (or country) stays paused. An hour: a bot's run is usually
    /// over, and people in the range can try again the same hour. Counting starts afresh when
    /// it ends.
    public var coolOff: TimeInterval = 3600

    public init() {}

    /// Checks the ranges of the settings.
    public func validate() throws(TwoFactorError) {
        try checkSetting(window >= 60 && window <= 86_400, "the SMS breaker's window must be 1 minute to 1 day")
        try checkSetting(
            (4...8).contains(prefixDigits), "the SMS breaker's range must be 4-8 digits after the country code")
        try checkSetting(minimumTextsPerRange >= 1, "the SMS breaker's minimum texts per range must be at least 1")
        try checkSetting(
            minimumTextsPerCountry >= 0, "the SMS breaker's minimum texts per country must not be negative")
        try checkSetting(
            minimumVerifiedFraction > 0 && minimumVerifiedFraction <= 1,
            "the SMS breaker's minimum verified fraction must be above 0 and at most 1")
        try checkSetting(
            decisionDelay >= 10 && decisionDelay <= window,
            "the SMS breaker's decision delay must be 10 s to the window")
        try checkSetting(
            coolOff >= 60 && coolOff <= 7 * 86_400, "the SMS breaker's cool-off must be 1 minute to 7 days")
    }
}

/// A range of numbers the breaker watches: a whole country calling code (`+44`) or a number
/// range (`+4479112`). Its text is a prefix of the E.164 form of every number it holds.
public struct SMSBreakerScope: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The prefix, e.g. `+44` or `+4479112`.
    public let prefix: String
    /// The country calling code it lies in, e.g. `44`.
    public let countryCallingCode: String

    /// The scopes of `phone`: its country, then its range of `digits` digits after the country
    /// code (the country alone when the national number is not longer than that).
    public static func scopes(of phone: PhoneNumber, digits: Int) -> [SMSBreakerScope] {
        let code = phone.countryCallingCode
        let country = SMSBreakerScope(prefix: "+" + code, countryCallingCode: code)
        let rangeLength = 1 + code.count + digits
        guard phone.e164.count > rangeLength else { return [country] }
        return [country, SMSBreakerScope(prefix: String(phone.e164.prefix(rangeLength)), countryCallingCode: code)]
    }

    /// Parses what an administrator typed (`+44`, `+4479112`, spaces allowed): a `+`, then a
    /// country calling code alone or followed by 4-8 more digits.
    public init(parsing text: String) throws(TwoFactorError) {
        let compact = text.filter { $0 != " " }
        let digits = compact.dropFirst()
        guard compact.first == "+", !digits.isEmpty, digits.count <= 12,
            digits.allSatisfy({ $0.isASCII && $0.isNumber }),
            digits.first != "0"
        else {
            throw TwoFactorError(
                .invalidArgument, "A number range is a + and digits: a country code (+44) or a range (+4479112)")
        }
        // The country code of the range is read as a phone number's would be: pad to a
        // parseable length (the code depends on the leading digits only).
        let padded = String(compact) + String(repeating: "0", count: max(0, PhoneNumber.minimumDigits - digits.count))
        guard let code = (try? PhoneNumber(parsing: padded))?.countryCallingCode, digits.count >= code.count,
            digits.count == code.count || (4...8).contains(digits.count - code.count)
        else {
            throw TwoFactorError(
                .invalidArgument, "A number range is a country code (+44) or one with 4-8 more digits (+4479112)")
        }
        self.init(prefix: String(compact), countryCallingCode: code)
    }

    init(prefix: String, countryCallingCode: String) {
        self.prefix = prefix
        self.countryCallingCode = countryCallingCode
    }

    /// A scope as a store saved it (its columns' CHECKs hold the same rules as the parser).
    public init(storedPrefix prefix: String, countryCallingCode: String) {
        self.init(prefix: prefix, countryCallingCode: countryCallingCode)
    }

    /// Whether this is a whole country.
    public var isCountry: Bool { prefix.count == 1 + countryCallingCode.count }

    /// The first text after every number of the scope in text order (digits sort before `:`),
    /// so that `prefix <= number < upperBound` holds exactly for the scope's numbers.
    public var upperBound: String { prefix + ":" }

    public var description: String { prefix }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.prefix < rhs.prefix }
}

/// What is stored of a scope the breaker acted on (tripped, reset or exempted). A scope with no
/// record is watched, counted from the start of the window.
public struct SMSBreakerRecord: Sendable, Equatable {
    public var scope: SMSBreakerScope
    /// Paused until then (nil when not tripped or the pause is over).
    public var trippedUntil: Date?
    /// Never paused: an administrator's choice (e.g. a range that many real users share and
    /// whose codes arrive late).
    public var exempt: Bool
    /// Texts before this are not counted (the end of the last pause, or a reset).
    public var countingSince: Date
    /// How many times it tripped.
    public var trips: Int
    public var updatedAt: Date

    public init(
        scope: SMSBreakerScope, trippedUntil: Date?, exempt: Bool, countingSince: Date, trips: Int, updatedAt: Date
    ) {
        self.scope = scope
        self.trippedUntil = trippedUntil
        self.exempt = exempt
        self.countingSince = countingSince
        self.trips = trips
        self.updatedAt = updatedAt
    }
}

/// Verification texts of a scope and how many of their codes were verified.
public struct SMSBreakerCount: Sendable, Equatable {
    /// Texts that had their chance: verified, or older than the decision delay.
    public var texts: Int
    public var verified: Int

    public init(texts: Int, verified: Int) {
        self.texts = texts
        self.verified = verified
    }
}

/// One verification text in the window, as the breaker's listing reads it.
public struct SMSBreakerText: Sendable, Equatable {
    public var phone: PhoneNumber
    public var at: Date
    public var verified: Bool

    public init(phone: PhoneNumber, at: Date, verified: Bool) {
        self.phone = phone
        self.at = at
        self.verified = verified
    }
}

/// The breaker's state of one scope, for `otpctl sms breaker`.
public struct SMSBreakerStatus: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Verification texts to it are paused until ``SMSBreakerStatus/trippedUntil``.
        case tripped
        /// An administrator exempted it: never paused.
        case exempt
        /// Counted, not paused.
        case watched
    }

    public var scope: SMSBreakerScope
    public var state: State
    public var count: SMSBreakerCount
    public var trippedUntil: Date?
    public var trips: Int
}

/// What an administrator does to a scope.
public enum SMSBreakerAction: String, Sendable, CaseIterable {
    /// Ends a pause and starts counting afresh (texts before now no longer count).
    case reset
    /// Never pause this scope (ends a pause too).
    case exempt
    /// Watch it again, counting afresh.
    case removeExemption = "remove_exemption"
}

/// The storage of the breaker: its records, and the counts it reads from the texts sent.
public protocol SMSBreakerStorage {
    func smsBreaker(scope: SMSBreakerScope) throws -> SMSBreakerRecord?
    /// Inserts or replaces the record of its scope.
    func saveSMSBreaker(_ record: SMSBreakerRecord) throws
    /// Every record, at most `limit`, in scope order.
    func smsBreakers(limit: Int) throws -> [SMSBreakerRecord]
    /// The verification texts (for an account, not an administrator's test) to numbers of
    /// `scope` sent at or after `since`, not refused by the provider, that were verified, or
    /// are older than `decidedBefore`.
    func countVerificationTexts(scope: SMSBreakerScope, since: Date, decidedBefore: Date) throws -> SMSBreakerCount
    /// The same texts of every scope, newest first, at most `limit`.
    func verificationTexts(since: Date, decidedBefore: Date, limit: Int) throws -> [SMSBreakerText]
}

extension SMSBreakerPolicy {
    /// The texts a scope needs before it is judged.
    func minimumTexts(for scope: SMSBreakerScope) -> Int {
        scope.isCountry ? minimumTextsPerCountry : minimumTextsPerRange
    }

    /// Whether `count` trips `scope`: enough judged texts, too few verified. A country with a
    /// minimum of 0 never trips.
    func trips(_ scope: SMSBreakerScope, _ count: SMSBreakerCount) -> Bool {
        let minimum = minimumTexts(for: scope)
        guard minimum > 0, count.texts >= minimum else { return false }
        return Double(count.verified) < minimumVerifiedFraction * Double(count.texts)
    }
}
