public import Foundation

/// The settings an authenticator app and the server must share for TOTP (RFC 6238).
public struct TOTPParameters: Sendable, Hashable {
    /// The accepted step lengths, in seconds.
    public static let periodRange = 1...300

    /// The HMAC hash function.
    public let algorithm: OTPHashAlgorithm
    /// The number of digits in a code.
    public let digits: CodeDigits
    /// The time step X, in seconds; T0 is always 0 (the Unix epoch).
    public let period: Int

    /// SHA1, 6 digits, 30-second step: what docs/SECURITY.md §4 requires and every app supports.
    public static let standard = TOTPParameters(checked: .sha1, digits: .six, period: 30)

    /// Creates parameters, or returns `nil` if `period` is outside ``periodRange``.
    public init?(algorithm: OTPHashAlgorithm, digits: CodeDigits, period: Int) {
        guard Self.periodRange.contains(period) else { return nil }
        self.init(checked: algorithm, digits: digits, period: period)
    }

    private init(checked algorithm: OTPHashAlgorithm, digits: CodeDigits, period: Int) {
        self.algorithm = algorithm
        self.digits = digits
        self.period = period
    }

    /// The time step counter T = floor(unixTime / period) for `date`, or `nil` for a time before
    /// the Unix epoch (or not finite), which has no step.
    public func step(at date: Date) -> UInt64? {
        let seconds = date.timeIntervalSince1970
        guard seconds.isFinite, seconds >= 0,
            let whole = UInt64(exactly: seconds.rounded(.down))
        else { return nil }
        return whole / UInt64(period)
    }
}

/// Why a TOTP secret was refused.
public enum TOTPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The secret is shorter than ``TOTP/minimumSecretBytes``.
    case secretTooShort(byteCount: Int)

    /// A sentence saying what is wrong.
    public var description: String {
        switch self {
        case .secretTooShort(let count):
            "TOTP secret has \(count) bytes; at least \(TOTP.minimumSecretBytes) are required"
        }
    }
}

/// A TOTP generator and verifier (RFC 6238) for one shared secret.
///
/// The secret stays inside: `description` is redacted and the type is not `Equatable`.
public struct TOTP: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The shortest secret accepted: 128 bits (RFC 4226 §4, R6). New secrets should have
    /// ``recommendedSecretBytes``.
    public static let minimumSecretBytes = 16
    /// The length of a newly generated secret: 160 bits (RFC 4226 §4, docs/SECURITY.md §4).
    public static let recommendedSecretBytes = 20
    /// The widest verification window accepted, in steps either side of the current one.
    public static let maximumWindow = 10

    /// The shared secret, as raw bytes.
    public let secret: [UInt8]
    /// The algorithm, digits and period.
    public let parameters: TOTPParameters

    /// Creates a TOTP for `secret`; throws if the secret is shorter than 16 bytes.
    public init(secret: [UInt8], parameters: TOTPParameters = .standard) throws(TOTPError) {
        guard secret.count >= Self.minimumSecretBytes else {
            throw .secretTooShort(byteCount: secret.count)
        }
        self.secret = secret
        self.parameters = parameters
    }

    /// Draws a new secret of `byteCount` bytes (at least 20, i.e. 160 bits) from `random`.
    public static func generateSecret(
        byteCount: Int = TOTP.recommendedSecretBytes, using random: some RandomSource
    ) -> [UInt8] {
        precondition(byteCount >= recommendedSecretBytes, "TOTP secrets need at least 160 bits")
        return random.bytes(byteCount)
    }

    /// The code for time step `step`.
    public func code(forStep step: UInt64) -> OneTimeCode {
        HOTP.code(
            secret: secret, counter: step, digits: parameters.digits,
            algorithm: parameters.algorithm)
    }

    /// The code an authenticator app shows at `date`, or `nil` before the Unix epoch.
    public func code(at date: Date) -> OneTimeCode? {
        parameters.step(at: date).map { code(forStep: $0) }
    }

    /// Checks `candidate` against the steps `current - window ... current + window` and returns
    /// the step it matches, or `nil`.
    ///
    /// Every step of the window is computed and compared in constant time, with no early exit
    /// when one matches (docs/SECURITY.md §8), so the time taken does not say which step matched or
    /// how much of a code was right. If the candidate matches several steps (a chance
    /// collision), the latest step is returned, which errs toward refusing replays.
    ///
    /// This function does not know which steps were used before: pass the result to
    /// ``acceptableStep(matched:lastAccepted:)`` and record it atomically (docs/SECURITY.md §6).
    ///
    /// - Parameters:
    ///   - candidate: the parsed code the user typed; a code of the wrong length never matches.
    ///   - date: the server's current time (from an ``OTPClock``).
    ///   - window: steps accepted either side of the current one, `0...10`; default 1.
    public func verify(_ candidate: OneTimeCode, at date: Date, window: Int = 1) -> UInt64? {
        precondition((0...Self.maximumWindow).contains(window), "TOTP window out of range")
        guard candidate.length == parameters.digits, let current = parameters.step(at: date)
        else { return nil }
        var anyMatch: UInt64 = 0
        var matchedStep: UInt64 = 0
        for offset in -window...window {
            let magnitude = UInt64(offset.magnitude)
            let (step, overflow) =
                offset < 0
                ? current.subtractingReportingOverflow(magnitude)
                : current.addingReportingOverflow(magnitude)
            // Depends only on the public clock, never on the secret or the candidate.
            if overflow { continue }
            let mask = ConstantTime.equalityMask(code(forStep: step).utf8, candidate.utf8)
            matchedStep = ConstantTime.select(mask, step, matchedStep)
            anyMatch |= mask
        }
        return anyMatch != 0 ? matchedStep : nil
    }

    /// The replay rule (RFC 6238 §5.2, docs/SECURITY.md §6): a matched step is acceptable only if it is
    /// later than the last step accepted for the account (`nil`: none accepted yet). The same
    /// step again, or an earlier one, is refused.
    public static func acceptableStep(matched: UInt64, lastAccepted: UInt64?) -> Bool {
        guard let lastAccepted else { return true }
        return matched > lastAccepted
    }

    /// A redacted summary that never contains the secret.
    public var description: String {
        "TOTP(\(parameters.algorithm.rawValue), \(parameters.digits) digits, \(parameters.period) s, secret redacted)"
    }

    /// A redacted summary that never contains the secret.
    public var debugDescription: String { description }
}
