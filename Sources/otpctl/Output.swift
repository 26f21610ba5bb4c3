import ArgumentParser
import Foundation
import OTPClient

// Shared pieces of the account, code, factor and admin subcommands: argument types and checks,
// time text, the human and JSON forms of an account's status, and the mapping of refusals to
// stderr messages with hints.

// MARK: - JSON

/// Writes the JSON every subcommand prints with `--json`.
///
/// The shape is stable: keys are snake_case and sorted, times are Unix seconds (UTC) as
/// integers, and a value the daemon does not have (an empty string or a zero time on the wire)
/// is `null`, never an empty string or 0.
enum JSONOutput {
    /// Prints `value` (an object or an array) as pretty-printed JSON with sorted keys.
    static func print(_ value: Any) {
        let data = try! JSONSerialization.data(
            withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        Swift.print(String(decoding: data, as: UTF8.self))
    }

    /// `text`, or `null` when it is empty.
    static func string(_ text: String) -> Any { text.isEmpty ? NSNull() : text }

    /// Unix seconds, or `null` for 0 ("none" on the wire).
    static func time(_ unixSeconds: Int64) -> Any { unixSeconds == 0 ? NSNull() : Int(unixSeconds) }

    /// The lower-case factor name, or `null` for none.
    static func factor(_ factor: Factor) -> Any { factor == .unspecified ? NSNull() : factor.description }
}

// MARK: - Time

/// Time as otpctl shows it: always UTC, never the local zone, so output from different hosts
/// and the audit trail line up.
enum TimeText {
    /// What otpd sends as `locked_until` when only an administrator can end the lock.
    static let untilUnlocked = WireTime.lockedUntilAdministratorUnlocks

    /// `2026-11-27T10:00:00Z`.
    static func iso(_ unixSeconds: Int64) -> String {
        let c = components(unixSeconds)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// `10:05:00 UTC`, for times within the next minutes (code and proof expiry).
    static func clock(_ unixSeconds: Int64) -> String {
        let c = components(unixSeconds)
        return String(format: "%02d:%02d:%02d UTC", c.hour!, c.minute!, c.second!)
    }

    /// How long a lock lasts: `until 2026-11-27T10:00:00Z` or `until an administrator unlocks it`.
    static func lockEnd(_ unixSeconds: Int64) -> String {
        unixSeconds >= untilUnlocked ? "until an administrator unlocks it" : "until \(iso(unixSeconds))"
    }

    private static func components(_ unixSeconds: Int64) -> DateComponents {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0)!
        return calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: TimeInterval(unixSeconds))
        )
    }
}

// MARK: - Arguments

/// The checks otpd applies to an account id, made before anything is sent so a typo is a
/// usage error (exit 2) rather than a refusal.
enum AccountArgument {
    static let help = ArgumentHelp("The account id the shop uses for the admin user (1-128 bytes).")

    static func check(_ id: String) throws {
        guard !id.isEmpty, id.utf8.count <= 128 else {
            throw ValidationError("ACCOUNT must be 1-128 bytes of UTF-8.")
        }
        guard !id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationError("ACCOUNT must not contain control characters.")
        }
    }
}

/// What a one-time code is for, as written on the command line.
enum PurposeName: String, CaseIterable, ExpressibleByArgument {
    case verifyPhone = "verify_phone"
    case login
    case changePhone = "change_phone"
    case disableFactor = "disable_factor"
    case manageFactors = "manage_factors"

    var wire: Purpose {
        switch self {
        case .verifyPhone: .verifyPhone
        case .login: .login
        case .changePhone: .changePhone
        case .disableFactor: .disableFactor
        case .manageFactors: .manageFactors
        }
    }
}

/// A factor that can be turned off, as written on the command line.
enum FactorName: String, CaseIterable, ExpressibleByArgument {
    case sms
    case totp
    case backup

    var wire: Factor {
        switch self {
        case .sms: .sms
        case .totp: .totp
        case .backup: .backup
        }
    }
}

/// A factor that can be the preferred login method, as written on the command line.
enum PreferredName: String, CaseIterable, ExpressibleByArgument {
    case sms
    case totp

    var wire: Factor { self == .sms ? .sms : .totp }
}

// MARK: - Account status

extension AccountStatus {
    /// The profile page as lines of text, in the product's wording; never a full phone number.
    var lines: [String] {
        var lines = ["Account: \(accountId)"]
        if phoneMasked.isEmpty {
            lines.append("Phone: none")
        } else {
            let state = phoneVerified ? "The phone number is verified" : "The phone number is not verified"
            lines.append("Phone: \(phoneMasked) (\(state))")
        }
        if !pendingPhoneMasked.isEmpty {
            lines.append("Pending phone: \(pendingPhoneMasked) (not verified; the current number keeps working)")
        }
        lines.append("Authenticator: \(totpEnabled ? "on" : "off")")
        lines.append("Backup codes: \(backupCodesRemaining) left")
        lines.append("Preferred: \(preferredMethod == .unspecified ? "none" : preferredMethod.description)")
        lines.append("Setup required: \(setupRequired ? "yes" : "no")")
        if consecutiveFailures > 0 {
            lines.append("Failed attempts in a row: \(consecutiveFailures)")
        }
        if locked {
            lines.append("Locked \(TimeText.lockEnd(lockedUntil))")
        }
        return lines
    }

    /// The status as printed by `--json`.
    ///
    /// Keys: account_id, phone_masked, phone_verified, pending_phone_masked, sms_enabled,
    /// totp_enabled, backup_codes_remaining, preferred_method ("sms", "totp" or null),
    /// setup_required, locked, locked_until (Unix seconds or null), consecutive_failures.
    var jsonObject: [String: Any] {
        [
            "account_id": accountId,
            "phone_masked": JSONOutput.string(phoneMasked),
            "phone_verified": phoneVerified,
            "pending_phone_masked": JSONOutput.string(pendingPhoneMasked),
            "sms_enabled": smsEnabled,
            "totp_enabled": totpEnabled,
            "backup_codes_remaining": Int(backupCodesRemaining),
            "preferred_method": JSONOutput.factor(preferredMethod),
            "setup_required": setupRequired,
            "locked": locked,
            "locked_until": JSONOutput.time(locked ? lockedUntil : 0),
            "consecutive_failures": Int(consecutiveFailures),
        ]
    }
}

/// The keys of an account status object, for the help texts.
let statusJSONKeys = """
    A status object has account_id, phone_masked, phone_verified, pending_phone_masked, \
    sms_enabled, totp_enabled, backup_codes_remaining, preferred_method, setup_required, locked, \
    locked_until and consecutive_failures.
    """

// MARK: - Calls and failures

extension GlobalOptions {
    /// Runs `body` with a client, like `run`, and turns a refusal into a message with what the
    /// user can do next: the wait from `retry_after_seconds`, the end of a lock, and `hint`.
    ///
    /// - Parameters:
    ///   - account: named in the unlock hint of a lock that only an administrator can end.
    ///   - proofHint: shown when the daemon answers PERMISSION_DENIED (give it only when the
    ///     command line carried no proof).
    func request<T>(
        account: String? = nil, proofHint: String? = nil, _ body: (OTPClient) async throws(RPCError) -> T
    ) async throws(CommandFailure) -> T {
        let client = client()
        do {
            let value = try await body(client)
            await client.close()
            return value
        } catch {
            await client.close()
            throw CommandFailure.refusal(error, account: account, proofHint: proofHint)
        }
    }
}

extension CommandFailure {
    /// `STATUS_NAME: message (facts)` plus a hint line where one helps. Unreachable daemons
    /// keep the exit status and text of `CommandFailure(_:)`.
    static func refusal(_ error: RPCError, account: String?, proofHint: String?) -> CommandFailure {
        var failure = CommandFailure(error)
        guard failure.status == .refused else { return failure }
        var facts: [String] = []
        var hints: [String] = []
        if let detail = error.detail {
            if detail.lockedUntil > 0 {
                facts.append("locked \(TimeText.lockEnd(detail.lockedUntil))")
                if detail.lockedUntil >= TimeText.untilUnlocked, let account {
                    hints.append("an administrator can end the lock: otpctl unlock \(shellWord(account))")
                }
            }
            if detail.retryAfterSeconds > 0 {
                facts.append("try again in \(detail.retryAfterSeconds) s")
            }
        }
        if error.code == .permissionDenied, let proofHint, (error.detail?.lockedUntil ?? 0) == 0 {
            hints.append(proofHint)
        }
        if error.code == .unimplemented {
            hints.append("this otpd does not answer this call; update otpd")
        }
        var message = "\(error.code): \(error.message)"
        if !facts.isEmpty { message += " (\(facts.joined(separator: "; ")))" }
        for hint in hints { message += "\notpctl: hint: \(hint)" }
        failure.message = message
        return failure
    }

    /// A code, authenticator code or backup code that was not accepted: exit status 1 and the
    /// product's message, with the attempts left or the end of the lock.
    static func codeNotValid(attemptsLeft: UInt32?, lockedUntil: Int64, account: String) -> CommandFailure {
        var message = "The code is not valid"
        if lockedUntil > 0 {
            message += "; the account is locked \(TimeText.lockEnd(lockedUntil))"
            if lockedUntil >= TimeText.untilUnlocked {
                message += "\notpctl: hint: an administrator can end the lock: otpctl unlock \(shellWord(account))"
            }
        } else if let attemptsLeft {
            message +=
                attemptsLeft > 0
                ? " (\(attemptsLeft) \(attemptsLeft == 1 ? "attempt" : "attempts") left)"
                : " (this code cannot be used again; send a new one)"
        }
        return CommandFailure(status: .refused, message: message)
    }
}

/// The line that shows a single-use proof token.
func proofTokenLine(_ token: String, expiresAt: Int64) -> String {
    let expiry = expiresAt > 0 ? ", expires \(TimeText.clock(expiresAt))" : ""
    return "Proof token (single use\(expiry)): \(token)"
}

/// The product's reminder after the first factor is set up, when the account has no backup codes.
func backupReminder(account: String, token: String) -> String {
    let proof = token.isEmpty ? "" : " --proof-token \(token)"
    return "Important: be sure to create and save a list of backup codes: "
        + "otpctl backup generate \(shellWord(account))\(proof) --out FILE"
}

/// `word` as it can be pasted into a shell: unchanged when it is plain, else single-quoted.
func shellWord(_ word: String) -> String {
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-".unicodeScalars)
    if !word.isEmpty && word.unicodeScalars.allSatisfy(safe.contains) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
