import Foundation

/// One page of audit events.
public struct EventPage: Sendable, Equatable {
    /// Newest first.
    public var events: [EventRecord]
    /// Pass as `beforeID` for the next page; nil when there are no more.
    public var nextBeforeID: Int64?
}

extension TwoFactorService {
    /// Audit events, newest first: of one account, or of every account when `accountID` is nil.
    public func listEvents(accountID: String?, pageSize: Int, beforeID: Int64?) async throws(TwoFactorError)
        -> EventPage
    {
        if let accountID { try Self.checkAccountID(accountID) }
        let limit = Self.pageLimit(pageSize)
        return try await transact { tx in
            let (events, next) = Self.page(
                try tx.events(accountID: accountID, beforeID: beforeID, limit: limit + 1), limit: limit, id: \.id)
            return .success(EventPage(events: events, nextBeforeID: next))
        }
    }

    /// A page size: 50 when none is asked for, else 1...500.
    static func pageLimit(_ pageSize: Int) -> Int {
        pageSize == 0 ? 50 : min(max(pageSize, 1), 500)
    }

    /// The first `limit` of `rows` (fetched with one more than asked, which tells whether
    /// another page exists) and the id to continue before, if any.
    static func page<Row>(_ rows: [Row], limit: Int, id: (Row) -> Int64) -> ([Row], Int64?) {
        let page = Array(rows.prefix(limit))
        return (page, rows.count > limit ? page.last.map(id) : nil)
    }

    /// Administrator: clears the lock and the failure counter. Recorded with who and why.
    public func unlock(accountID: String, actor: String, reason: String) async throws(TwoFactorError) -> AccountSummary
    {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        let detail = Self.adminDetail(actor: actor, reason: reason)
        return try await transact(account: accountID) { tx in
            guard var account = try tx.account(accountID) else {
                return .success(AccountSummary(accountID: accountID))
            }
            let failures = account.consecutiveFailures
            self.registerSuccess(&account, now: now)
            try tx.saveAccount(account)
            try self.audit(
                .accountUnlocked, .success, account: accountID, detail: "\(detail); \(failures) failures cleared",
                at: now, in: tx)
            return .success(try self.summary(account, id: accountID, in: tx, now: now))
        }
    }

    /// Administrator: removes every factor, challenge, proof and backup code of the account,
    /// which then needs setting up again. Its events are kept.
    public func reset(accountID: String, actor: String, reason: String) async throws(TwoFactorError) -> AccountSummary {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        let detail = Self.adminDetail(actor: actor, reason: reason)
        return try await transact(account: accountID) { tx in
            try tx.deleteAccountData(accountID)
            try self.audit(.accountReset, .success, account: accountID, detail: detail, at: now, in: tx)
            return .success(AccountSummary(accountID: accountID))
        }
    }

    static func adminDetail(actor: String, reason: String) -> String {
        func clean(_ text: String) -> String {
            String(text.unicodeScalars.filter { $0.properties.generalCategory != .control }.prefix(200))
        }
        return "by \(actor.isEmpty ? "unknown" : clean(actor))" + (reason.isEmpty ? "" : ": \(clean(reason))")
    }
}
