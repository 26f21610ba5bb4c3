public import Foundation

/// A started authenticator enrolment.
public struct TOTPEnrollment: Sendable, Equatable {
    public var secretBase32: String
    public var otpauthURI: String
    /// Confirm with a first code before this time.
    public var expiresAt: Date
}

/// The answer to confirming an authenticator enrolment.
public struct TOTPConfirmation: Sendable, Equatable {
    public var success: Bool
    public var summary: AccountSummary
    /// On success: a `manage_factors` proof for making the first backup codes.
    public var proofToken: String?
    public var proofExpiresAt: Date?
}

extension TwoFactorService {
    // MARK: Authenticator

    /// Starts an authenticator enrolment: a fresh 160-bit secret, stored encrypted and pending
    /// until `confirmTOTPEnrollment` sees a first valid code (`start_authenticator` in the
    /// step-up table: a `manage_factors` proof whenever the account has any active factor).
    public func beginTOTPEnrollment(accountID: String, label: String?, proof: ProofInput?)
        async throws(TwoFactorError) -> TOTPEnrollment
    {
        try Self.checkAccountID(accountID)
        let name = (label?.isEmpty ?? true) ? accountID : label!
        let now = clock.now()
        let secret = TOTP.generateSecret(byteCount: TOTP.recommendedSecretBytes, using: random)
        let uri: String
        do {
            uri = try OTPAuthURI.totp(secret: secret, issuer: policy.issuer, accountName: name)
        } catch {
            throw TwoFactorError(.invalidArgument, "The authenticator label cannot be used: \(error)")
        }
        let sealed: [UInt8]
        do {
            sealed = try keys.encryption.seal(secret, accountID: accountID, using: random)
        } catch {
            throw TwoFactorError(.internal, "The secret could not be protected", logDetail: "\(error)")
        }
        let expiresAt = now.addingTimeInterval(policy.totpEnrollmentLifetime)
        return try await transact(account: accountID) { tx in
            var account = try tx.account(accountID) ?? AccountRecord(id: accountID, now: now)
            if case .failure(let error) = try self.authorize(
                .startAuthenticator, proof: proof, account: &account, now: now, in: tx)
            {
                return .failure(error)
            }
            account.pendingTotpSealed = sealed
            account.pendingTotpExpiresAt = expiresAt
            account.updatedAt = now
            try tx.saveAccount(account)
            try self.audit(.totpEnrollmentStarted, .pending, account: accountID, at: now, in: tx)
            return .success(TOTPEnrollment(secretBase32: Base32.encode(secret), otpauthURI: uri, expiresAt: expiresAt))
        }
    }

    /// Turns the authenticator on when `code` is valid for the pending secret. A wrong code
    /// counts as a failed attempt. The `manage_factors` proof for the first backup codes comes
    /// back only when the account had no active factor before (enrolment grace).
    public func confirmTOTPEnrollment(accountID: String, code: String) async throws(TwoFactorError)
        -> TOTPConfirmation
    {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        let token = newProofToken()
        return try await transact(account: accountID) { tx in
            guard var account = try tx.account(accountID), let sealed = account.pendingTotpSealed,
                let expires = account.pendingTotpExpiresAt, expires > now
            else {
                return .failure(
                    TwoFactorError(.failedPrecondition, "No authenticator enrolment is waiting; start again"))
            }
            if self.isLocked(account, at: now) {
                return .success(
                    TOTPConfirmation(
                        success: false, summary: try self.summary(account, id: accountID, in: tx, now: now)))
            }
            let secret: [UInt8]
            do {
                secret = try self.keys.encryption.open(sealed, accountID: accountID)
            } catch {
                return .failure(TwoFactorError(.internal, "The pending secret cannot be read", logDetail: "\(error)"))
            }
            let totp = try TOTP(secret: secret)
            guard let candidate = OneTimeCode(parsing: code, length: .six),
                let step = totp.verify(candidate, at: now, window: self.policy.totpWindow)
            else {
                return .success(
                    try self.failCounted(
                        &account, .totpEnrollmentConfirm, detail: "wrong or malformed code", now: now, in: tx
                    ) { saved in
                        TOTPConfirmation(
                            success: false, summary: try self.summary(saved, id: accountID, in: tx, now: now))
                    })
            }
            let before = try self.activeFactors(account, in: tx)
            var detail = ""
            if !before.primary {
                detail = try self.voidUnprovenEnrolments(&account, keeping: .totp, now: now, in: tx)
            }
            self.registerSuccess(&account, now: now)
            account.totpSecretSealed = sealed
            account.totpLastStep = step
            account.pendingTotpSealed = nil
            account.pendingTotpExpiresAt = nil
            if account.preferred == nil { account.preferred = .totp }
            try tx.saveAccount(account)
            try self.audit(
                .totpEnabled, .success, account: accountID, detail: "authenticator on" + detail, at: now, in: tx)
            let proof =
                before.any
                ? nil
                : try self.issueProof(
                    token, accountID: accountID, purpose: .manageFactors,
                    expiresAt: now.addingTimeInterval(self.policy.codeLifetime), in: tx)
            return .success(
                TOTPConfirmation(
                    success: true, summary: try self.summary(account, id: accountID, in: tx, now: now),
                    proofToken: proof?.token, proofExpiresAt: proof?.expiresAt))
        }
    }

    // MARK: Turning factors off, preferring one

    /// Turns a factor off with a `disable_factor` proof. Turning SMS off removes the number,
    /// any pending number and every open challenge, so SMS is never left half-configured.
    /// Turning off the last of SMS and the authenticator also voids the backup codes: they are
    /// a way back into a second factor, not a second factor of their own.
    public func disableFactor(accountID: String, factor: FactorKind, proof: ProofInput?) async throws(TwoFactorError)
        -> AccountSummary
    {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        return try await transact(account: accountID) { tx in
            guard var account = try tx.account(accountID) else {
                return .failure(TwoFactorError(.failedPrecondition, "This factor is not on"))
            }
            if factor == .sms && !account.smsEnabled && account.phone != nil {
                // A number that was never verified is not a factor: forgetting it proves nothing
                // and needs nothing beyond what saving another one would.
                if case .failure(let error) = try self.authorize(
                    .savePhone, proof: proof, account: &account, now: now, in: tx)
                {
                    return .failure(error)
                }
            } else if case .failure(let error) = try self.authorize(
                .disable(factor), proof: proof, account: &account, now: now, in: tx)
            {
                return .failure(error)
            }
            var detail = factor.rawValue
            switch factor {
            case .sms:
                account.phone = nil
                account.phoneVerified = false
                account.pendingPhone = nil
                try tx.voidActiveChallenges(accountID: accountID, purpose: nil)
            case .totp:
                account.totpSecretSealed = nil
                account.pendingTotpSealed = nil
                account.pendingTotpExpiresAt = nil
            case .backup:
                try tx.replaceBackupCodes(accountID: accountID, hashes: [], at: now)
            }
            let codes = try tx.remainingBackupCodes(accountID: accountID)
            if !account.smsEnabled && !account.totpEnabled && codes > 0 {
                try tx.replaceBackupCodes(accountID: accountID, hashes: [], at: now)
                detail += "; no SMS or authenticator left, \(codes) backup codes voided"
            }
            if account.preferred == factor || (account.preferred == .sms && !account.smsEnabled)
                || (account.preferred == .totp && !account.totpEnabled)
            {
                account.preferred = account.smsEnabled ? .sms : (account.totpEnabled ? .totp : nil)
            }
            account.updatedAt = now
            try tx.saveAccount(account)
            try self.audit(.factorDisabled, .success, account: accountID, detail: detail, at: now, in: tx)
            return .success(try self.summary(account, id: accountID, in: tx, now: now))
        }
    }

    /// Sets the preferred method to `sms` or `totp`, among the factors that are on, with a
    /// `manage_factors` proof (`set_preferred_method` in the step-up table).
    public func setPreferredMethod(accountID: String, method: FactorKind, proof: ProofInput?)
        async throws(TwoFactorError) -> AccountSummary
    {
        try Self.checkAccountID(accountID)
        guard method == .sms || method == .totp else {
            throw TwoFactorError(.invalidArgument, "The preferred method must be sms or totp")
        }
        let now = clock.now()
        return try await transact(account: accountID) { tx in
            guard var account = try tx.account(accountID), method == .sms ? account.smsEnabled : account.totpEnabled
            else {
                return .failure(
                    TwoFactorError(
                        .failedPrecondition,
                        method == .sms ? "SMS two-factor is not on for this account" : "The authenticator is not on"))
            }
            if case .failure(let error) = try self.authorize(
                .setPreferredMethod, proof: proof, account: &account, now: now, in: tx)
            {
                return .failure(error)
            }
            account.preferred = method
            account.updatedAt = now
            try tx.saveAccount(account)
            try self.audit(
                .preferredMethodChanged, .success, account: accountID, detail: method.rawValue, at: now, in: tx)
            return .success(try self.summary(account, id: accountID, in: tx, now: now))
        }
    }
}
