internal import Foundation
internal import OTPCore

/// The audit trail and the notification cursor (`EventStorage`).
extension SQLiteStoreTransaction {
    @discardableResult
    func appendEvent(_ event: EventRecord) throws(StoreError) -> Int64 {
        try perform { db throws(StoreError) in
            try db.insert(
                SQL.insertEvent,
                [
                    try bind(event.accountID), .text(event.kind.rawValue), .text(event.outcome.rawValue),
                    try bind(event.detail),
                    try bind(event.destinationMasked), try bind(event.at),
                ])
        }
    }

    /// `limit` is clamped to 1...1000.
    func events(accountID: String?, beforeID: Int64?, limit: Int) throws(StoreError) -> [EventRecord] {
        try perform { db throws(StoreError) in
            try Self.newestFirst(db, SQL.eventsNewestFirst, accountID: accountID, beforeID: beforeID, limit: limit)
                .map(Self.decodeEvent)
        }
    }

    /// Ids follow commit order here (one writer), so the horizon is the newest event.
    func notificationHorizon() throws(StoreError) -> EventPosition {
        EventPosition(id: try lastEventID())
    }

    /// Oldest first; `limit` is clamped to 1...1000. The kinds are matched inside SQLite, so
    /// the events skipped cost no decoding.
    func eventsToNotify(
        after: EventPosition, through: EventPosition, kinds: Set<EventKind>, window: Int, limit: Int
    ) throws(StoreError) -> NotificationPage {
        let last = min(through.id, after.id + Int64(max(1, window)))
        let events: [EventRecord] = try perform { db throws(StoreError) in
            guard !kinds.isEmpty else { return [] }
            var parameters: [SQLValue] = [.integer(after.id), .integer(last)]
            for kind in kinds.map(\.rawValue).sorted() { parameters.append(.text(kind)) }
            parameters.append(.integer(Int64(min(max(limit, 1), 1000))))
            return try db.rows(SQL.eventsOfKinds[kinds.count - 1], parameters).map(Self.decodeEvent)
        }
        return NotificationPage(
            events: events, positions: events.map { EventPosition(id: $0.id) },
            lookedThrough: EventPosition(id: max(after.id, last)))
    }

    func countRecentEvents(accountID: String, kind: EventKind, since: Date, window: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try Self.count(
                db, SQL.countRecentEventsOfAccount,
                [try bind(accountID), .integer(Int64(max(1, window))), .text(kind.rawValue), try bind(since)])
        }
    }

    func lastEventID() throws(StoreError) -> Int64 {
        try perform { db throws(StoreError) in try db.scalar(SQL.lastEventID) ?? 0 }
    }

    func notificationCursor() throws(StoreError) -> EventPosition? {
        try perform { db throws(StoreError) in
            guard let text = try db.metaValue(forKey: "notify_cursor") else { return nil }
            guard let value = EventPosition(text) else {
                throw StoreError(kind: .corrupt, message: "daemon_meta.notify_cursor is not an event position")
            }
            return value
        }
    }

    func setNotificationCursor(_ position: EventPosition) throws(StoreError) {
        try perform { db throws(StoreError) in
            try db.setMetaValue(position.description, forKey: "notify_cursor")
        }
    }

    /// The rows of `shapes` (a query over a table with `id` and `account_id`) newest first:
    /// of one account or all, with ids below `beforeID`; `limit` is clamped to 1...1000.
    static func newestFirst(
        _ db: SQLiteConnection, _ shapes: SQL.NewestFirst, accountID: String?, beforeID: Int64?, limit: Int
    ) throws(StoreError) -> [SQLRow] {
        let limit = Int64(min(max(limit, 1), 1000))
        switch (accountID, beforeID) {
        case (let accountID?, let beforeID?):
            return try db.rows(shapes.ofAccountBeforeID, [try bind(accountID), .integer(beforeID), .integer(limit)])
        case (let accountID?, nil):
            return try db.rows(shapes.ofAccount, [try bind(accountID), .integer(limit)])
        case (nil, let beforeID?):
            return try db.rows(shapes.beforeID, [.integer(beforeID), .integer(limit)])
        case (nil, nil):
            return try db.rows(shapes.all, [.integer(limit)])
        }
    }

    func deleteEvents(before: Date, limit: Int) throws(StoreError) -> Int {
        try perform { db throws(StoreError) in
            try db.run(SQL.deleteOldEvents, [.integer(Int64(limit)), try bind(before)])
        }
    }
}
