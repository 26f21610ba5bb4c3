internal import Foundation
internal import OTPCore

/// The account rows (`AccountStorage`).
extension SQLiteStoreTransaction {
    func account(_ id: String) throws(StoreError) -> AccountRecord? {
        try perform { db throws(StoreError) in
            guard let row = try db.rows(SQL.selectAccount, [try bind(id)]).first else { return nil }
            return try Self.decodeAccount(row)
        }
    }

    func saveAccount(_ account: AccountRecord) throws(StoreError) {
        try perform { db throws(StoreError) in
            let totpLastStep: SQLValue
            if let step = account.totpLastStep {
                guard let value = Int64(exactly: step) else {
                    throw StoreError(kind: .constraint, message: "accounts.totp_last_step is out of range")
                }
                totpLastStep = .integer(value)
            } else {
                totpLastStep = .null
            }
            let parameters: [SQLValue] = [
                try bind(account.id),
                try bind(account.phone?.e164),
                .integer(account.phoneVerified ? 1 : 0),
                try bind(account.pendingPhone?.e164),
                try bind(account.totpSecretSealed, column: "accounts.totp_secret"),
                totpLastStep,
                try bind(account.pendingTotpSealed, column: "accounts.pending_totp"),
                try bind(account.pendingTotpExpiresAt),
                try bind(account.preferred?.rawValue),
                .integer(Int64(account.consecutiveFailures)),
                .integer(Int64(account.lockCount)),
                try bind(account.lockedUntil),
                try bind(account.createdAt),
                try bind(account.updatedAt),
            ]
            // UPDATE, then INSERT when there was nothing to update: an UPSERT would make SQLite
            // build a temporary table on every call (a third of the writer's time under load).
            if try db.run(SQL.updateAccount, parameters) == 0 {
                try db.run(SQL.insertAccount, parameters)
            }
        }
    }

    func deleteAccountData(_ id: String) throws(StoreError) {
        try perform { db throws(StoreError) in
            let parameters = [try bind(id)]
            try db.run(SQL.deleteAccountChallenges, parameters)
            try db.run(SQL.deleteAccountProofs, parameters)
            try db.run(SQL.deleteBackupCodes, parameters)
            try db.run(SQL.deleteAccount, parameters)
        }
    }

    func countUnknownAccountAttempt() throws(StoreError) {
        try perform { db throws(StoreError) in
            if try db.run(SQL.incrementUnknownAccountAttempts) == 0 {
                try db.run(SQL.insertMeta, [.text("unknown_account_attempts"), .text("1")])
            }
        }
    }
}
