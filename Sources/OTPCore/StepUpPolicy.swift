/// The step-up rule in one place: for every change to an account's factors, what proof it
/// needs in each account state, and which proofs count (docs/SECURITY.md, "Step-up").
///
/// Every action that adds, replaces or removes a factor, or changes the preferred method,
/// asks ``StepUpPolicy/requirement(for:factors:locked:backupCodeProofPurposes:)`` and nothing
/// else: no action decides on its own whether a proof is needed. The threat it answers is a
/// person holding the password and a live session: once the account has any active factor,
/// that person must not be able to add their own phone, authenticator or backup codes, replace
/// the owner's, or turn the owner's off.

/// What the step-up table sees of an account: its active factors.
public struct ActiveFactors: Sendable, Hashable, CustomStringConvertible {
    /// A verified phone number (SMS two-factor is on).
    public var sms: Bool
    /// A confirmed authenticator.
    public var totp: Bool
    /// At least one unused backup code.
    public var backupCodes: Bool

    public init(sms: Bool = false, totp: Bool = false, backupCodes: Bool = false) {
        self.sms = sms
        self.totp = totp
        self.backupCodes = backupCodes
    }

    /// Any factor at all: from then on every change needs a proof.
    public var any: Bool { sms || totp || backupCodes }
    /// SMS or an authenticator: a factor that can sign in day to day (backup codes are only
    /// for recovery).
    public var primary: Bool { sms || totp }

    public var description: String {
        let names = [sms ? "sms" : nil, totp ? "totp" : nil, backupCodes ? "backup" : nil].compactMap { $0 }
        return names.isEmpty ? "none" : names.joined(separator: "+")
    }
}

/// A change to an account's factors that the step-up table rules on.
public enum FactorChange: String, Sendable, Hashable, CaseIterable {
    /// Saving a phone number while SMS is not on (a first number, or replacing one that was
    /// never verified).
    case savePhone = "save_phone"
    /// Replacing the verified number (the new one is held pending until verified).
    case changePhone = "change_phone"
    /// Starting an authenticator enrolment.
    case startAuthenticator = "start_authenticator"
    /// Making backup codes: the first set or a new one that voids the old.
    case generateBackupCodes = "generate_backup_codes"
    case disableSMS = "disable_sms"
    case disableAuthenticator = "disable_authenticator"
    case disableBackupCodes = "disable_backup_codes"
    case setPreferredMethod = "set_preferred_method"

    /// The change that turns `factor` off.
    public static func disable(_ factor: FactorKind) -> FactorChange {
        switch factor {
        case .sms: .disableSMS
        case .totp: .disableAuthenticator
        case .backup: .disableBackupCodes
        }
    }
}

/// A kind of proof a caller can offer.
public enum ProofKind: String, Sendable, Hashable, CaseIterable {
    /// A proof token from a successful verification of the action's purpose.
    case token
    /// A current authenticator code.
    case authenticatorCode = "authenticator_code"
    /// An unused backup code (consumed).
    case backupCode = "backup_code"
}

extension ProofInput {
    /// Which kind of proof this is.
    public var kind: ProofKind {
        switch self {
        case .token: .token
        case .totpCode: .authenticatorCode
        case .backupCode: .backupCode
        }
    }
}

/// What one change needs in one account state.
public enum StepUpRequirement: Sendable, Equatable {
    /// The change cannot be made in this state at all (the message says why).
    case refused(TwoFactorError.Kind, String)
    /// No proof: the account has no active factor, so this is its first enrolment.
    case noProof
    /// A proof from a current factor: a token of `purpose`, or one of `accepted`'s other kinds.
    case proof(purpose: CodePurpose, accepted: Set<ProofKind>)
}

/// The step-up table (docs/SECURITY.md, "Step-up").
public enum StepUpPolicy {
    /// The purpose whose proof a change needs when it needs one.
    public static func purpose(of change: FactorChange) -> CodePurpose {
        switch change {
        case .changePhone: .changePhone
        case .disableSMS, .disableAuthenticator, .disableBackupCodes: .disableFactor
        case .savePhone, .startAuthenticator, .generateBackupCodes, .setPreferredMethod: .manageFactors
        }
    }

    /// What `change` needs for an account with `factors`.
    ///
    /// - A locked account changes nothing.
    /// - Backup codes are a recovery factor: they are made only while SMS or an authenticator
    ///   is on (codes made before a first factor would be a hidden way in that outlives it).
    /// - With no active factor, the first factor is enrolled without a proof.
    /// - With any active factor, every change needs a proof from a current one: a token of the
    ///   change's purpose (earned by verifying an SMS or authenticator code), an authenticator
    ///   code when one is on, and a backup code when the configuration accepts one for that
    ///   purpose (a lost phone) or when backup codes are the only factor left.
    public static func requirement(
        for change: FactorChange, factors: ActiveFactors, locked: Bool, backupCodeProofPurposes: Set<CodePurpose>
    ) -> StepUpRequirement {
        if locked { return .refused(.permissionDenied, "The account is locked") }
        switch change {
        case .changePhone where !factors.sms:
            return .refused(.failedPrecondition, "SMS two-factor is not on; save a number instead")
        case .savePhone where factors.sms:
            return .refused(.failedPrecondition, "A number is verified; changing it needs a change_phone proof")
        case .startAuthenticator where factors.totp:
            return .refused(.failedPrecondition, "The authenticator is already on; turn it off first")
        case .generateBackupCodes where !factors.primary:
            return .refused(
                .failedPrecondition, "Backup codes can be made once SMS or an authenticator is on")
        case .disableSMS where !factors.sms, .disableAuthenticator where !factors.totp,
            .disableBackupCodes where !factors.backupCodes:
            return .refused(.failedPrecondition, "This factor is not on")
        case .setPreferredMethod where !factors.primary:
            return .refused(.failedPrecondition, "Neither SMS nor the authenticator is on")
        default:
            break
        }
        guard factors.any else { return .noProof }
        let purpose = purpose(of: change)
        var accepted: Set<ProofKind> = [.token]
        if factors.totp { accepted.insert(.authenticatorCode) }
        if factors.backupCodes && (backupCodeProofPurposes.contains(purpose) || !factors.primary) {
            accepted.insert(.backupCode)
        }
        return .proof(purpose: purpose, accepted: accepted)
    }
}
