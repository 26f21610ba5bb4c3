internal import Foundation
internal import OTPCore

/// The record of texts sent, for the SMS budgets (`SMSBudgetStorage`).
extension SQLiteStoreTransaction {
    /// Sends at or after `since`, newest first.
    func smsSends(accountID: String, since: Date) throws(StoreError) -> [SMSSendRecord] {
        try perform { db throws(StoreError) in
            let rows = try db.rows(SQL.selectSMSSendsOfAccount, [try bind(accountID), try bind(since)])
            return try rows.map(Self.decodeSMSSend)
        }
    }

    /// Sends to `phone` from `pool` at or after `since` (both pools are bounded by budgets).
    func countSMSSends(phone: PhoneNumber, pool: SMSPool, since: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try Self.count(
                db, SQL.countSMSSendsToPhone,
                [
                    .text(phone.e164), try bind(since), .integer(pool == .verification ? 1 : 0),
                    .integer(Int64(max(0, limit))),
                ])
        }
    }

    /// Sends to numbers of `countryCallingCode` at or after `since`.
    func countSMSSends(countryCallingCode: String, since: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try Self.count(
                db, SQL.countSMSSendsToCountry,
                [try bind(countryCallingCode), try bind(since), .integer(Int64(max(0, limit)))])
        }
    }

    /// All sends at or after `since`.
    func countAllSMSSends(since: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try Self.count(
                db, SQL.countAllSMSSends,
                [try bind(since), .integer(Int64(max(0, limit)))])
        }
    }

    func recordSMSSend(_ send: SMSSendRecord) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run(
                SQL.insertSMSSend,
                [
                    try bind(send.accountID), .text(send.phone.e164), .text(send.phone.countryCallingCode),
                    .text(send.purpose.rawValue), try bind(send.challengeID), try bind(send.at),
                ])
        }
    }

    /// Deletes sends strictly before `before`.
    func pruneSMSSends(before: Date) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run(SQL.deleteOldSMSSends, [try bind(before)])
        }
    }
}
