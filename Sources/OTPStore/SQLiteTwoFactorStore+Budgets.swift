internal import Foundation
internal import OTPCore

/// The record of texts sent, for the SMS budgets (`SMSBudgetStorage`).
extension SQLiteStoreTransaction {
    /// Sends at or after `since`, newest first.
    func smsSends(accountID: String, since: Date) throws(StoreError) -> [SMSSendRecord] {
        try perform { db throws(StoreError) in
            let rows = try db.query(
                """
                SELECT account_id, phone, purpose, challenge_id, at FROM sms_sends
                WHERE account_id = ? AND at >= ? ORDER BY at DESC, id DESC
                """,
                [try bind(accountID), try bind(since)])
            return try rows.map(Self.decodeSMSSend)
        }
    }

    /// Sends to `phone` from `pool` at or after `since`. The index finds the number's sends
    /// of the last day; the pool is a filter on those (both pools are bounded by budgets).
    func countSMSSends(phone: PhoneNumber, pool: SMSPool, since: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try Self.count(
                db,
                """
                SELECT count(*) FROM (SELECT 1 FROM sms_sends
                WHERE phone = ? AND at >= ? AND (purpose = 'verify_phone') = ? LIMIT ?)
                """,
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
                db, "SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE country_code = ? AND at >= ? LIMIT ?)",
                [try bind(countryCallingCode), try bind(since), .integer(Int64(max(0, limit)))])
        }
    }

    /// All sends at or after `since`.
    func countAllSMSSends(since: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try Self.count(
                db, "SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE at >= ? LIMIT ?)",
                [try bind(since), .integer(Int64(max(0, limit)))])
        }
    }

    func recordSMSSend(_ send: SMSSendRecord) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run(
                """
                INSERT INTO sms_sends (account_id, phone, country_code, purpose, challenge_id, at)
                VALUES (?, ?, ?, ?, ?, ?)
                """,
                [
                    try bind(send.accountID), .text(send.phone.e164), .text(send.phone.countryCallingCode),
                    .text(send.purpose.rawValue), try bind(send.challengeID), try bind(send.at),
                ])
        }
    }

    /// Deletes sends strictly before `before`.
    func pruneSMSSends(before: Date) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run("DELETE FROM sms_sends WHERE at < ?", [try bind(before)])
        }
    }
}
