internal import Foundation
internal import OTPCore

/// Backup codes by keyed hash (`BackupCodeStorage`).
extension SQLiteStoreTransaction {
    func replaceBackupCodes(accountID: String, hashes: [[UInt8]], at: Date) throws(StoreError) {
        try perform { db throws(StoreError) in
            let account = try bind(accountID)
            let createdAt = try bind(at)
            try db.run(SQL.deleteBackupCodes, [account])
            for hash in hashes {
                try db.run(
                    SQL.insertBackupCode, [account, try bind(hash, column: "backup_codes.code_hash"), createdAt])
            }
        }
    }

    /// One conditional update; true only when it changed exactly one row (docs/SECURITY.md §7).
    func consumeBackupCode(accountID: String, hash: [UInt8], at: Date) throws(StoreError) -> Bool {
        try perform { db throws(StoreError) in
            guard !hash.isEmpty else { return false }
            let changed = try db.run(SQL.consumeBackupCode, [try bind(at), try bind(accountID), .blob(hash)])
            return changed == 1
        }
    }

    func remainingBackupCodes(accountID: String) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try Self.count(db, SQL.countUnusedBackupCodes, [try bind(accountID)])
        }
    }
}
