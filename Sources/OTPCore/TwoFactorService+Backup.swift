public import Foundation
import OTPMetrics

/// A new set of backup codes, shown once.
public struct BackupCodeSet: Sendable {
    /// Formatted codes (`xxxx-xxxx-xxxx-xxxx`). The store keeps only their keyed hashes.
    public var codes: [String]
    public var generatedAt: Date
}

/// The answer to redeeming a backup code.
public struct BackupRedemption: Sendable, Equatable {
    public var success: Bool
    /// Unused codes left.
    public var remaining: Int
    /// At or below the low watermark: the user should make a new set.
    public var low: Bool
    public var lockedUntil: Date?
}

extension TwoFactorService {
    /// Makes a new set of backup codes, voiding the previous set at once
    /// (`generate_backup_codes` in the step-up table): only while SMS or an authenticator is
    /// on, and always with a `manage_factors` proof (the one returned by the account's first
    /// phone verification or authenticator confirmation serves for the very first set).
    public func generateBackupCodes(accountID: String, proof: ProofInput?) async throws(TwoFactorError)
        -> BackupCodeSet
    {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        let codes = BackupCode.generateSet(count: policy.backupCodeCount, using: random)
        let hashes = codes.map { keys.hashing.hash($0, accountID: accountID) }
        let formatted = codes.map(\.formatted)
        return try await transact(account: accountID) { tx in
            var account = try tx.account(accountID) ?? AccountRecord(id: accountID, now: now)
            let previous = try tx.remainingBackupCodes(accountID: accountID)
            let hadSet = previous > 0
            if case .failure(let error) = try self.authorize(
                .generateBackupCodes, proof: proof, account: &account, now: now, in: tx)
            {
                return .failure(error)
            }
            try tx.replaceBackupCodes(accountID: accountID, hashes: hashes, at: now)
            account.updatedAt = now
            try tx.saveAccount(account)
            try self.audit(
                hadSet ? .backupCodesRegenerated : .backupCodesGenerated, .success, account: accountID,
                detail: hadSet
                    ? "\(formatted.count) new codes; \(previous) unused old codes voided" : "\(formatted.count) codes",
                at: now, in: tx)
            return .success(BackupCodeSet(codes: formatted, generatedAt: now))
        }
    }

    /// Redeems a backup code for a login. A matching unused code is consumed by one conditional
    /// update, so of any number of concurrent redemptions of one code exactly one succeeds.
    /// Anything else counts as a failed attempt, with the same answer whatever the reason: a
    /// failure carries no count of remaining codes, and an unknown account costs the work of
    /// a known one (the keyed hash, a counted attempt, the same queries).
    public func redeemBackupCode(accountID: String, code: String) async throws(TwoFactorError) -> BackupRedemption {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        return try await transact(account: accountID) { tx in
            guard var account = try tx.account(accountID) else {
                // The same keyed hash and conditional update as for a known account (it finds
                // nothing to consume), then the daemon-wide count in place of the account row.
                _ = try self.consumeBackupCode(code, account: AccountRecord(id: accountID, now: now), now: now, in: tx)
                _ = try tx.remainingBackupCodes(accountID: accountID)
                try tx.countUnknownAccountAttempt()
                let outcome: OTPMetrics.VerificationOutcome = BackupCode(parsing: code) == nil ? .malformed : .wrong
                tx.afterCommit { OTPMetrics.verification(outcome, factor: .backup) }
                try self.audit(
                    .backupCodeRedeemed, .failure, account: accountID, detail: "no such account", at: now, in: tx)
                return .success(BackupRedemption(success: false, remaining: 0, low: false))
            }
            if self.isLocked(account, at: now) {
                tx.afterCommit { OTPMetrics.verification(.locked, factor: .backup) }
                return .success(
                    try self.failCounted(
                        &account, .backupCodeRedeemed, detail: "account locked", whileLocked: true, now: now, in: tx
                    ) {
                        BackupRedemption(success: false, remaining: 0, low: false, lockedUntil: $0.lockedUntil)
                    })
            }
            let consumed = try self.consumeBackupCode(code, account: account, now: now, in: tx)
            let remaining = try tx.remainingBackupCodes(accountID: accountID)
            let low = remaining <= self.policy.backupCodesLowWatermark
            let outcome: OTPMetrics.VerificationOutcome =
                consumed ? .success : BackupCode(parsing: code) == nil ? .malformed : .wrong
            tx.afterCommit { OTPMetrics.verification(outcome, factor: .backup) }
            if consumed {
                self.registerSuccess(&account, now: now)
                try tx.saveAccount(account)
                try self.audit(
                    .backupCodeRedeemed, .success, account: accountID, detail: "login; \(remaining) left", at: now,
                    in: tx)
                if low {
                    try self.audit(
                        .backupCodesLow, .warning, account: accountID, detail: "\(remaining) unused backup codes left",
                        at: now, in: tx)
                }
                return .success(BackupRedemption(success: true, remaining: remaining, low: low))
            }
            return .success(
                try self.failCounted(
                    &account, .backupCodeRedeemed,
                    detail: BackupCode(parsing: code) == nil ? "malformed code" : "unknown or used code", now: now,
                    in: tx
                ) { saved in
                    BackupRedemption(
                        success: false, remaining: 0, low: false,
                        lockedUntil: self.isLocked(saved, at: now) ? saved.lockedUntil : nil)
                })
        }
    }
}
