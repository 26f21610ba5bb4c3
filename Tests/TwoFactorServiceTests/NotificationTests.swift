import Foundation
import OTPCore
import OTPStore
import OTPTestSupport
import Synchronization
import Testing

/// Records what the hook is given; can be told to fail a number of times.
final class RecordingNotifier: EventNotifier {
    struct HookFailed: Error {}
    private let state = Mutex<(events: [EventRecord], failuresLeft: Int)>(([], 0))

    func notify(_ event: EventRecord) async throws {
        try state.withLock { state in
            if state.failuresLeft > 0 {
                state.failuresLeft -= 1
                throw HookFailed()
            }
            state.events.append(event)
        }
    }

    var kinds: [EventKind] { state.withLock { $0.events.map(\.kind) } }
    func fail(times: Int) { state.withLock { $0.failuresLeft = times } }
}

@Suite("notification hook")
struct NotificationTests {
    let kinds = TwoFactorService.defaultNotifiedKinds

    @Test func historyIsNotReplayedAndNewSecurityEventsAreDeliveredOnce() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        try await fixture.enrollPhone("old")  // before the hook: not replayed
        try await fixture.service.prepareNotifications()
        let notifier = RecordingNotifier()

        let enrolled = try await fixture.enrollPhone("alice")
        _ = try await fixture.service.generateBackupCodes(accountID: "alice", proof: .token(enrolled.proofToken!))
        try await fixture.settleEvents()
        #expect(try await fixture.service.deliverNotifications(kinds: kinds, to: notifier).delivered == 2)
        #expect(notifier.kinds == [.phoneVerified, .backupCodesGenerated])  // not code_sent, verify, ...
        #expect(try await fixture.service.deliverNotifications(kinds: kinds, to: notifier).delivered == 0)
        #expect(notifier.kinds.count == 2)
    }

    @Test func aFailingHookGetsTheSameEventsAgainInOrder() async throws {
        let fixture = try await Fixture { $0.liftSMSBudgets() }
        defer { fixture.tearDown() }
        try await fixture.service.prepareNotifications()
        let notifier = RecordingNotifier()
        try await fixture.enrollPhone("bob")
        for _ in 0..<10 {
            let challenge = try await fixture.challenge("bob", .login)
            _ = try await fixture.service.verify(
                accountID: "bob", purpose: .login, code: fixture.wrongCode(than: challenge.code),
                challengeID: challenge.id)
        }
        try await fixture.settleEvents()
        notifier.fail(times: 2)
        await #expect(throws: RecordingNotifier.HookFailed.self) {
            _ = try await fixture.service.deliverNotifications(kinds: kinds, to: notifier)
        }
        await #expect(throws: RecordingNotifier.HookFailed.self) {
            _ = try await fixture.service.deliverNotifications(kinds: kinds, to: notifier)
        }
        #expect(notifier.kinds.isEmpty)
        #expect(try await fixture.service.deliverNotifications(kinds: kinds, to: notifier).delivered == 2)
        #expect(notifier.kinds == [.phoneVerified, .accountLocked])
    }

    @Test func theBookmarkSurvivesARestartOfTheService() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        try await fixture.service.prepareNotifications()
        try await fixture.enrollPhone("carol")
        // A second service on the same database, as after a restart: it continues from the
        // stored bookmark (prepare does not move an existing one).
        let restarted = try TwoFactorService(
            store: fixture.store, sender: fixture.sender, keys: fixture.keys,
            policy: TwoFactorPolicy(), clock: fixture.clock, random: SeededRandom(seed: 9))
        try await restarted.prepareNotifications()
        try await fixture.settleEvents()
        let notifier = RecordingNotifier()
        #expect(try await restarted.deliverNotifications(kinds: kinds, to: notifier).delivered == 1)
        #expect(notifier.kinds == [.phoneVerified])
    }

    @Test func aSmallWindowTakesSeveralRoundsAndMissesNothing() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        try await fixture.service.prepareNotifications()
        for account in ["a", "b", "c"] { try await fixture.enrollPhone(account) }  // ~5 events each
        try await fixture.settleEvents()
        let notifier = RecordingNotifier()
        var rounds = 0
        var delivered = 0
        while true {
            let round = try await fixture.service.deliverNotifications(kinds: kinds, to: notifier, limit: 1, window: 2)
            delivered += round.delivered
            rounds += 1
            if round.caughtUp { break }
            try #require(rounds < 100)
        }
        #expect(rounds > 3)
        #expect(delivered == 3)
        #expect(notifier.kinds == [.phoneVerified, .phoneVerified, .phoneVerified])
    }
}
