internal import Foundation
internal import OTPCore

/// The SMS pumping breaker's records and counts (`SMSBreakerStorage`, schema version 5).
extension SQLiteStoreTransaction {
    func smsBreaker(scope: SMSBreakerScope) throws(StoreError) -> SMSBreakerRecord? {
        try perform { db throws(StoreError) in
            try db.rows(SQL.selectBreaker, [try bind(scope.prefix)]).first.map(Self.decodeBreaker)
        }
    }

    func saveSMSBreaker(_ record: SMSBreakerRecord) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run(
                SQL.upsertBreaker,
                [
                    try bind(record.scope.prefix), try bind(record.scope.countryCallingCode),
                    try bind(record.trippedUntil), .integer(record.exempt ? 1 : 0), try bind(record.countingSince),
                    .integer(Int64(max(0, record.trips))), try bind(record.updatedAt),
                ])
        }
    }

    func smsBreakers(limit: Int) throws(StoreError) -> [SMSBreakerRecord] {
        try perform { db throws(StoreError) in
            try db.rows(SQL.selectBreakers, [.integer(Int64(max(0, limit)))]).map(Self.decodeBreaker)
        }
    }

    func countVerificationTexts(scope: SMSBreakerScope, since: Date, decidedBefore: Date) throws(StoreError)
        -> SMSBreakerCount
    {
        try perform { db throws(StoreError) in
            guard
                let row = try db.rows(
                    SQL.countBreakerTexts,
                    [
                        try bind(scope.countryCallingCode), try bind(since), try bind(scope.prefix),
                        try bind(scope.upperBound), try bind(decidedBefore),
                    ]
                ).first
            else { return SMSBreakerCount(texts: 0, verified: 0) }
            var reader = RowReader(row, table: "sms_sends")
            return SMSBreakerCount(texts: try reader.count("texts"), verified: try reader.count("verified"))
        }
    }

    func verificationTexts(since: Date, decidedBefore: Date, limit: Int) throws(StoreError) -> [SMSBreakerText] {
        try perform { db throws(StoreError) in
            try db.rows(
                SQL.selectBreakerTexts, [try bind(since), try bind(decidedBefore), .integer(Int64(max(0, limit)))]
            ).map { row throws(StoreError) in
                var reader = RowReader(row, table: "sms_sends")
                return SMSBreakerText(
                    phone: try reader.phone("phone"), at: try reader.date("at"),
                    verified: try reader.count("verified") == 1)
            }
        }
    }

    private static func decodeBreaker(_ row: SQLRow) throws(StoreError) -> SMSBreakerRecord {
        var reader = RowReader(row, table: "sms_breakers")
        let prefix = try reader.text("scope")
        let country = try reader.text("country_code")
        return SMSBreakerRecord(
            scope: SMSBreakerScope(storedPrefix: prefix, countryCallingCode: country),
            trippedUntil: try reader.optionalDate("tripped_until"), exempt: try reader.integer("exempt") == 1,
            countingSince: try reader.date("counting_since"), trips: try reader.count("trips"),
            updatedAt: try reader.date("updated_at"))
    }
}
