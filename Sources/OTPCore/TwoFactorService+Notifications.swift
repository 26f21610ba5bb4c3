import Foundation
import OTPMetrics

/// Where the notification hook hands events: the daemon runs a command, tests record them.
public protocol EventNotifier: Sendable {
    /// Delivers one event. Throwing stops the round; the event (and every one after it) is
    /// offered again on the next round, so delivery is at least once.
    func notify(_ event: EventRecord) async throws
}

extension TwoFactorService {
    /// Every audit event kind the domain records (every ``EventKind``). `[notify] kinds` may
    /// name only these: an unknown name stops otpd, since a typo must not turn a notification
    /// off without a word.
    public static let recordedKinds = Set(EventKind.allCases)

    /// The event kinds that trigger the notification hook unless configured otherwise
    /// (docs/SECURITY.md §15): every factor change, backup-code use and regeneration, lockout, refused
    /// replay, the administrator's unlock and reset, and the SMS pumping breaker's trips and
    /// the administrator's changes to it.
    public static let defaultNotifiedKinds: Set<EventKind> = [
        .phoneVerified, .phoneChangeRequested, .phoneChanged, .totpEnabled, .factorDisabled, .backupCodesGenerated,
        .backupCodesRegenerated, .backupCodeRedeemed, .accountLocked, .totpReplayRefused, .accountUnlocked,
        .accountReset, .smsBreakerTripped, .smsBreakerReset, .smsBreakerExempted, .smsBreakerExemptionRemoved,
    ]

    /// Starts the hook's bookmark at the newest event if it has none yet, so that turning the
    /// hook on does not replay the whole history. Call before serving clients. (A bookmark
    /// left by an earlier run stays: what happened while otpd was stopped or the hook was
    /// failing is still delivered.)
    public func prepareNotifications() async throws(TwoFactorError) {
        // Where several writers commit at once (PostgreSQL), the horizon may lag behind events
        // already committed (a transaction that began before them still runs); wait for it to
        // pass them, up to about 5 s, so that they are not replayed. After that, start at the
        // horizon anyway: a few replayed events beat a skipped one.
        for attempt in 1...100 {
            let settled = try await transact { tx in
                if try tx.notificationCursor() != nil { return .success(true) }
                let horizon = try tx.notificationHorizon()
                let later = try tx.eventsToNotify(
                    after: horizon, through: .end, kinds: Self.recordedKinds, window: 1, limit: 1)
                guard later.events.isEmpty || attempt == 100 else { return .success(false) }
                try tx.setNotificationCursor(horizon)
                return .success(true)
            }
            if settled { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Hands the events recorded since the last round whose kind is in `kinds` to `notifier`,
    /// oldest first, and moves the bookmark (stored in the database) past each one delivered.
    /// One round looks at no more than `window` events and delivers at most `limit`.
    ///
    /// - Returns: how many were delivered, and whether the bookmark reached the newest event
    ///   (when not, call again at once).
    /// - Throws: the notifier's error after saving the bookmark just before the event that
    ///   failed, or `TwoFactorError` when the store fails.
    public func deliverNotifications(
        kinds: Set<EventKind>, to notifier: any EventNotifier, limit: Int = 100, window: Int = 10_000
    ) async throws -> (delivered: Int, caughtUp: Bool) {
        let (start, horizon, newestID, page): (EventPosition, EventPosition, Int64, NotificationPage) =
            try await transact { tx in
                let horizon = try tx.notificationHorizon()
                let newestID = try tx.lastEventID()
                guard let start = try tx.notificationCursor() else {
                    try tx.setNotificationCursor(horizon)
                    return .success(
                        (
                            horizon, horizon, newestID,
                            NotificationPage(events: [], positions: [], lookedThrough: horizon)
                        ))
                }
                let page = try tx.eventsToNotify(
                    after: start, through: horizon, kinds: kinds, window: max(1, window), limit: limit)
                return .success((start, horizon, newestID, page))
            }
        var cursor = start
        var delivered = 0
        var failure: (any Error)?
        for (event, position) in zip(page.events, page.positions) {
            do {
                try await notifier.notify(event)
            } catch {
                failure = error
                break
            }
            delivered += 1
            cursor = position
        }
        // Every event up to `lookedThrough` was looked at, unless the page was full.
        if failure == nil && page.events.count < limit { cursor = max(cursor, page.lookedThrough) }
        if cursor != start {
            let bookmark = cursor
            try await transact { tx in
                try tx.setNotificationCursor(bookmark)
                return .success(())
            }
        }
        // What the hook has still to look at, estimated by ids: every event after the bookmark.
        OTPMetrics.setNotificationBacklog(cursor >= horizon ? 0 : Int(max(0, newestID - cursor.id)))
        if let failure { throw failure }
        // Events recorded since the first transaction are the next round's.
        return (delivered, cursor >= horizon)
    }
}
