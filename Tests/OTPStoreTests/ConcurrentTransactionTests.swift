import Dispatch
import Foundation
import Logging
import OTPCore
import OTPPostgres
import OTPStore
import OTPTestSupport
import Synchronization
import Testing

/// What holds when transactions run at the same time: on SQLite they never overlap; on
/// PostgreSQL they do, and SERIALIZABLE with retries must give the same outcome.
@Suite("Concurrent transactions (SQLite and PostgreSQL)")
struct ConcurrentTransactionTests {
    /// 64 read-modify-write transactions on one account row: every increment is kept (a lost
    /// update would be a failed attempt that was never counted).
    @Test(arguments: StoreBackend.allCases) func noIncrementOfOneRowIsLost(_ backend: StoreBackend) async throws {
        try await withConformanceStore(backend) { store in
            try await store.transaction { tx in try tx.saveAccount(AccountRecord(id: "alice", now: .now)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        try await store.transaction { tx in
                            guard var account = try tx.account("alice") else { throw Missing() }
                            account.consecutiveFailures += 1
                            try tx.saveAccount(account)
                            try tx.appendEvent(
                                EventRecord(accountID: "alice", kind: .verify, outcome: .failure, at: .now))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let (failures, events) = try await store.transaction { tx in
                (
                    try tx.account("alice")?.consecutiveFailures,
                    try tx.events(accountID: "alice", beforeID: nil, limit: 1000).count
                )
            }
            #expect(failures == 64)
            #expect(events == 64)
        }
    }

    /// A budget read by many at once: 40 transactions each count the sends of the last hour and
    /// add one only while fewer than 10 exist. Exactly 10 are recorded (write skew would let
    /// more through: each saw 9 and added its own).
    @Test(arguments: StoreBackend.allCases) func aCountedBudgetIsNeverOverspent(_ backend: StoreBackend) async throws {
        try await withConformanceStore(backend) { store in
            let phone = try PhoneNumber(parsing: "+14155552671")
            let now = Date(timeIntervalSince1970: 1_700_000_000)
            let sent = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        try await store.transaction { tx in
                            let count = try tx.countSMSSends(
                                phone: phone, pool: .verified, since: now.addingTimeInterval(-3600), limit: 100)
                            guard count < 10 else { return false }
                            try tx.recordSMSSend(
                                SMSSendRecord(
                                    accountID: "a\(i)", phone: phone, purpose: .login, challengeID: "c\(i)", at: now))
                            return true
                        }
                    }
                }
                var sent = 0
                for try await ok in group where ok { sent += 1 }
                return sent
            }
            #expect(sent == 10)
            let stored = try await store.transaction { tx in
                try tx.countSMSSends(phone: phone, pool: .verified, since: now.addingTimeInterval(-3600), limit: 100)
            }
            #expect(stored == 10)
        }
    }

    /// The notification hook's reading order on PostgreSQL: an event whose id was handed out
    /// first but whose transaction commits last is still read, and in (transaction, id) order;
    /// reading by id alone would have moved the bookmark past it while it was uncommitted.
    @Test func anEventCommittedLateIsNotSkippedByTheHook() async throws {
        let database = try PostgresTestCluster.shared().createDatabase()
        let store = try await PostgresTwoFactorStore(
            settings: try PostgresSettings(url: database.url), password: database.password,
            logger: Logger(label: "test"), connectDeadline: .seconds(30))
        defer { store.close() }
        let kinds: Set<EventKind> = [.verify]
        let event: @Sendable (String) -> EventRecord = { account in
            EventRecord(accountID: account, kind: .verify, outcome: .success, at: .now)
        }

        let inside = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        // The slow transaction takes its event id first, then waits before committing.
        let slow = Task {
            try await store.transaction { tx in
                let id = try tx.appendEvent(event("slow"))
                inside.signal()
                release.wait()
                return id
            }
        }
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                inside.wait()
                continuation.resume()
            }
        }
        let fastID = try await store.transaction { tx in try tx.appendEvent(event("fast")) }

        // While the slow one runs: the fast event, committed, is not deliverable yet.
        let first = try await store.transaction { tx in
            let horizon = try tx.notificationHorizon()
            return try tx.eventsToNotify(
                after: EventPosition(id: 0), through: horizon, kinds: kinds, window: 1000, limit: 100)
        }
        #expect(first.events.isEmpty)
        let bookmark = first.lookedThrough

        release.signal()
        let slowID = try await slow.value
        #expect(slowID < fastID, "the slow transaction took the smaller id")

        // The horizon is the oldest transaction still running in the whole cluster (the other
        // tests' databases included), so wait for it to pass both.
        var second = NotificationPage(events: [], positions: [], lookedThrough: bookmark)
        for _ in 0..<200 where second.events.count < 2 {
            second = try await store.transaction { tx in
                try tx.eventsToNotify(
                    after: bookmark, through: try tx.notificationHorizon(), kinds: kinds, window: 1000, limit: 100)
            }
            if second.events.count < 2 { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(second.events.map(\.accountID) == ["slow", "fast"])
        #expect(second.positions == second.positions.sorted())
    }
}

private struct Missing: Error {}
