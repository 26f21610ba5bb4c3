import Foundation
import OTPMetrics

extension TwoFactorService {
    // MARK: The SMS pumping breaker (docs/SECURITY.md §22)

    /// The refusal of a verification text to `phone` when its country or range is paused, or
    /// is paused by this very request (its count of texts verified fell below the threshold):
    /// RESOURCE_EXHAUSTED with the time to wait. Trips are recorded (a `sms_breaker_tripped`
    /// event, which the notification hook announces) in the caller's transaction. Texts to a
    /// verified number never come here (see ``SMSBreakerPolicy``).
    func breakerRefusal(
        for phone: PhoneNumber, accountID: String, now: Date, in tx: any StoreTransaction
    ) throws -> TwoFactorError? {
        let settings = policy.smsBreaker
        guard settings.enabled else { return nil }
        for scope in SMSBreakerScope.scopes(of: phone, digits: settings.prefixDigits) {
            let record = try tx.smsBreaker(scope: scope)
            if record?.exempt == true { continue }
            var pausedUntil = record?.trippedUntil.flatMap { $0 > now ? $0 : nil }
            if pausedUntil == nil {
                let count = try breakerCount(scope, record: record, now: now, in: tx)
                if settings.trips(scope, count) {
                    let until = now.addingTimeInterval(settings.coolOff)
                    try tx.saveSMSBreaker(
                        SMSBreakerRecord(
                            scope: scope, trippedUntil: until, exempt: false, countingSince: until,
                            trips: (record?.trips ?? 0) + 1, updatedAt: now))
                    try audit(
                        .smsBreakerTripped, .warning, account: "",
                        detail: "\(scope): \(count.verified) of \(count.texts) verification texts verified since "
                            + "\(WireTimestamp(breakerSince(record, now: now))) (minimum "
                            + "\(Int((settings.minimumVerifiedFraction * 100).rounded()))%); verification texts to it "
                            + "paused until \(WireTimestamp(until))",
                        at: now, in: tx)
                    let kind: OTPMetrics.BreakerScope = scope.isCountry ? .country : .range
                    tx.afterCommit { OTPMetrics.breakerTrip(kind) }
                    pausedUntil = until
                }
            }
            guard let pausedUntil else { continue }
            tx.afterCommit { OTPMetrics.budgetRefusal(.breaker) }
            try auditRefusal(
                .codeRefused, .rateLimited, account: accountID,
                detail: "verify_phone: the SMS breaker paused \(scope) until \(WireTimestamp(pausedUntil))",
                destination: phone.masked, at: now, in: tx)
            return TwoFactorError(
                .resourceExhausted,
                "Text messages to numbers like this one are paused for a while; try again later",
                retryAfter: retryAfter(pausedUntil, now), logDetail: "SMS breaker: \(scope) paused")
        }
        return nil
    }

    /// Where a scope's counting starts: the window's start, or later after a pause or a reset.
    private func breakerSince(_ record: SMSBreakerRecord?, now: Date) -> Date {
        max(now.addingTimeInterval(-policy.smsBreaker.window), record?.countingSince ?? .distantPast)
    }

    /// A text not verified by this time counts as unverified.
    private func breakerDecidedBefore(_ now: Date) -> Date {
        now.addingTimeInterval(-min(policy.smsBreaker.decisionDelay, policy.codeLifetime))
    }

    private func breakerCount(
        _ scope: SMSBreakerScope, record: SMSBreakerRecord?, now: Date, in tx: any StoreTransaction
    ) throws -> SMSBreakerCount {
        try tx.countVerificationTexts(
            scope: scope, since: breakerSince(record, now: now), decidedBefore: breakerDecidedBefore(now))
    }

    /// The most scopes ``smsBreakers()`` lists: the tripped and exempt ones first, then the
    /// watched ones with the most texts.
    public static let maximumListedBreakers = 100

    /// The most texts ``smsBreakers()`` reads to count the watched scopes: the newest of the
    /// window. The budgets keep a window far below it by default (60 texts a minute overall);
    /// the bound keeps an administrator's listing from holding the writer for long when they
    /// are lifted.
    static let maximumListedTexts = 20_000

    /// Administrator: the scopes the breaker paused, the exempt ones, and the watched ones
    /// (every country and range with verification texts in the window), tripped first, then
    /// exempt, then by texts. At most ``maximumListedBreakers``. A paused scope's count is
    /// that of the whole window (what paused it); any other's starts where it counts from.
    public func smsBreakers() async throws(TwoFactorError) -> [SMSBreakerStatus] {
        let now = clock.now()
        let settings = policy.smsBreaker
        return try await transact { tx in
            var records: [SMSBreakerScope: SMSBreakerRecord] = [:]
            for record in try tx.smsBreakers(limit: 10_000) { records[record.scope] = record }
            // Every text of the window, grouped by its scopes: a paused scope shows the texts
            // that paused it (the whole window), any other counts from its own start.
            func since(_ scope: SMSBreakerScope) -> Date {
                let record = records[scope]
                let paused = record?.trippedUntil.map { $0 > now } ?? false
                return paused ? now.addingTimeInterval(-settings.window) : self.breakerSince(record, now: now)
            }
            var counts: [SMSBreakerScope: SMSBreakerCount] = [:]
            let texts = try tx.verificationTexts(
                since: now.addingTimeInterval(-settings.window), decidedBefore: self.breakerDecidedBefore(now),
                limit: Self.maximumListedTexts)
            for text in texts {
                for scope in SMSBreakerScope.scopes(of: text.phone, digits: settings.prefixDigits)
                where text.at >= since(scope) {
                    counts[scope, default: SMSBreakerCount(texts: 0, verified: 0)].texts += 1
                    if text.verified { counts[scope]!.verified += 1 }
                }
            }
            var statuses: [SMSBreakerStatus] = []
            for scope in Set(records.keys).union(counts.keys) {
                let record = records[scope]
                let pausedUntil = record?.trippedUntil.flatMap { $0 > now ? $0 : nil }
                let state: SMSBreakerStatus.State =
                    record?.exempt == true ? .exempt : pausedUntil != nil ? .tripped : .watched
                statuses.append(
                    SMSBreakerStatus(
                        scope: scope, state: state, count: counts[scope] ?? SMSBreakerCount(texts: 0, verified: 0),
                        trippedUntil: pausedUntil, trips: record?.trips ?? 0))
            }
            func rank(_ state: SMSBreakerStatus.State) -> Int {
                switch state {
                case .tripped: 0
                case .exempt: 1
                case .watched: 2
                }
            }
            statuses.sort {
                (rank($0.state), -$0.count.texts, $0.scope.prefix) < (rank($1.state), -$1.count.texts, $1.scope.prefix)
            }
            return .success(Array(statuses.prefix(Self.maximumListedBreakers)))
        }
    }

    /// Administrator: resets a scope (ends its pause; texts before now stop counting), exempts
    /// it (never paused) or removes its exemption (watched again, counting afresh). Audited
    /// with who and why, and announced by the notification hook.
    public func updateSMSBreaker(scope text: String, action: SMSBreakerAction, actor: String, reason: String)
        async throws(TwoFactorError) -> SMSBreakerStatus
    {
        let scope = try SMSBreakerScope(parsing: text)
        let now = clock.now()
        let detail = Self.adminDetail(actor: actor, reason: reason)
        return try await transact { tx in
            let old = try tx.smsBreaker(scope: scope)
            var record =
                old
                ?? SMSBreakerRecord(
                    scope: scope, trippedUntil: nil, exempt: false, countingSince: now, trips: 0, updatedAt: now)
            let wasPaused = record.trippedUntil.map { $0 > now } ?? false
            let kind: EventKind
            switch action {
            case .reset:
                record.trippedUntil = nil
                record.countingSince = now
                kind = .smsBreakerReset
            case .exempt:
                record.exempt = true
                record.trippedUntil = nil
                kind = .smsBreakerExempted
            case .removeExemption:
                record.exempt = false
                record.countingSince = now
                kind = .smsBreakerExemptionRemoved
            }
            record.updatedAt = now
            try tx.saveSMSBreaker(record)
            try self.audit(
                kind, .success, account: "", detail: "\(scope) \(detail)" + (wasPaused ? "; its pause ended" : ""),
                at: now, in: tx)
            let count = try self.breakerCount(scope, record: record, now: now, in: tx)
            return .success(
                SMSBreakerStatus(
                    scope: scope, state: record.exempt ? .exempt : .watched, count: count, trippedUntil: nil,
                    trips: record.trips))
        }
    }
}

/// A time in an audit event's detail: ISO 8601 in UTC, to the second.
struct WireTimestamp: CustomStringConvertible {
    var date: Date
    init(_ date: Date) { self.date = date }
    var description: String {
        ISO8601DateFormatter().string(from: date)
    }
}
