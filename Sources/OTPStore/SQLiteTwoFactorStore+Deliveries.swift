internal import Foundation
internal import OTPCore

/// The delivery log and the numbers that cannot receive texts (schema version 3).
extension SQLiteStoreTransaction {
    func insertDelivery(_ delivery: DeliveryRecord) throws(StoreError) -> Int64 {
        try perform { db throws(StoreError) in
            try db.insert(
                SQL.insertDelivery,
                [
                    try bind(delivery.accountID), try bind(delivery.challengeID), try bind(delivery.purpose),
                    try bind(delivery.destinationMasked), try bind(delivery.provider), try bind(delivery.messageSID),
                    try bind(delivery.status), delivery.errorCode.map { .integer(Int64($0)) } ?? .null,
                    .integer(Int64(max(0, delivery.attempts))), try bind(delivery.createdAt),
                    try bind(delivery.updatedAt),
                ])
        }
    }

    func delivery(messageSID: String) throws(StoreError) -> DeliveryRecord? {
        guard !messageSID.isEmpty else { return nil }
        return try perform { db throws(StoreError) in
            let rows = try db.rows(SQL.selectDeliveryBySID, [try bind(messageSID)])
            return try rows.first.map(Self.decodeDelivery)
        }
    }

    func updateDelivery(id: Int64, status: String, errorCode: Int?, at: Date) throws(StoreError) {
        try perform { db throws(StoreError) in
            let changed = try db.run(
                SQL.updateDelivery,
                [try bind(status), errorCode.map { .integer(Int64($0)) } ?? .null, try bind(at), .integer(id)])
            guard changed == 1 else {
                throw StoreError(kind: .other, message: "delivery \(id) does not exist")
            }
        }
    }

    func deliveries(accountID: String?, beforeID: Int64?, limit: Int) throws(StoreError) -> [DeliveryRecord] {
        try perform { db throws(StoreError) in
            try Self.newestFirst(
                db, SQL.deliveriesNewestFirst, accountID: accountID, beforeID: beforeID, limit: limit
            ).map(Self.decodeDelivery)
        }
    }

    func markUndeliverable(phone: PhoneNumber, errorCode: Int?, at: Date) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.run(
                SQL.upsertUndeliverable,
                [.text(phone.e164), errorCode.map { .integer(Int64($0)) } ?? .null, try bind(at)])
        }
    }

    func undeliverable(phone: PhoneNumber) throws(StoreError) -> (at: Date, errorCode: Int?)? {
        try perform { db throws(StoreError) in
            guard let row = try db.rows(SQL.selectUndeliverable, [.text(phone.e164)]).first else { return nil }
            var reader = RowReader(row, table: "undeliverable_numbers")
            let at = try reader.date("at")
            let code = try reader.optionalInteger("error_code").map { Int($0) }
            return (at, code)
        }
    }

    private static func decodeDelivery(_ row: SQLRow) throws(StoreError) -> DeliveryRecord {
        var reader = RowReader(row, table: "deliveries")
        return DeliveryRecord(
            id: try reader.integer("id"), accountID: try reader.text("account_id"),
            challengeID: try reader.text("challenge_id"), purpose: try reader.text("purpose"),
            destinationMasked: try reader.text("destination_masked"), provider: try reader.text("provider"),
            messageSID: try reader.text("message_sid"), status: try reader.text("status"),
            errorCode: try reader.optionalInteger("error_code").map { Int($0) }, attempts: try reader.count("attempts"),
            createdAt: try reader.date("created_at"), updatedAt: try reader.date("updated_at"))
    }

    func deleteDeliveries(before: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try db.run(SQL.deleteOldDeliveries, [.integer(Int64(limit)), try bind(before)])
        }
    }
}
