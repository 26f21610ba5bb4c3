import Foundation
import Logging
import OTPTestSupport
import Synchronization
import Testing

@testable import OTPStore

#if canImport(Glibc)
    import Glibc
#endif

/// The commit pipeline (`WALSyncer`): with `synchronous = "full"` the writer commits without
/// waiting for the disk and goes on with the next batch, and no caller hears an answer before
/// an `fdatasync` of the WAL that began after its batch's COMMIT.
@Suite("SQLite commit pipeline", .timeLimit(.minutes(1)))
struct CommitPipelineTests {
    let logger = Logger(label: "test")

    /// The syncs the test lets through: each `beforeWALSync` call waits for its own release.
    private final class SyncGate: Sendable {
        private let entered = Mutex(0)
        private let releases = (0..<8).map { _ in DispatchSemaphore(value: 0) }
        private let failing: Bool

        init(failing: Bool = false) { self.failing = failing }

        /// Runs on the syncer thread before each fdatasync.
        func beforeSync() throws {
            let number = entered.withLock { count in
                count += 1
                return count
            }
            releases[min(number, releases.count) - 1].wait()
            if failing { throw StoreError(kind: .other, message: "injected fdatasync failure") }
        }

        /// How many syncs have begun.
        var syncsBegun: Int { entered.withLock { $0 } }
        /// Lets sync number `number` (from 1) go on.
        func release(_ number: Int) { releases[number - 1].signal() }
    }

    /// What `onWALSyncFailure` was told.
    private final class Failures: Sendable {
        private let messages = Mutex<[String]>([])
        func append(_ message: String) { messages.withLock { $0.append(message) } }
        var count: Int { messages.withLock { $0.count } }
    }

    private final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    private func open(
        _ directory: String, gate: SyncGate, failures: Failures? = nil
    ) throws -> SQLiteStore {
        let migrations =
            Migration.all + [
                Migration(
                    version: Migration.all.count + 1, summary: "test table",
                    sql: "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;")
            ]
        return try SQLiteStore(
            path: directory + "/test.sqlite", synchronous: .full, migrations: migrations,
            walLimitBytes: SQLiteStore.defaultWALLimitBytes, logger: logger,
            beforeWALSync: { try gate.beforeSync() },
            onWALSyncFailure: { error in failures?.append("\(error)") })
    }

    /// Polls `condition` every millisecond for up to five seconds.
    private func waitUntil(_ comment: Comment, _ condition: () -> Bool) async throws {
        for _ in 0..<5000 where !condition() { try await Task.sleep(for: .milliseconds(1)) }
        try #require(condition(), comment)
    }

    /// A first write's sync is held: the writer still runs and commits a second write (which
    /// sees the first's row), but neither caller hears anything. Released, the first sync
    /// answers the first caller only: the second batch committed after that sync began, so it
    /// waits for the next one.
    @Test func anAnswerWaitsForASyncThatBeganAfterItsCommit() async throws {
        let directory = try TemporaryDirectory(prefix: "otpd-pipeline").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let gate = SyncGate()
        let store = try open(directory, gate: gate)

        let firstAnswered = Flag()
        let first = Task {
            _ = try await store.write { db in try db.run("INSERT INTO items (name) VALUES ('first')") }
            firstAnswered.set()
        }
        try await waitUntil("the first batch's sync never began") { gate.syncsBegun == 1 }

        let secondRan = Flag()
        let secondAnswered = Flag()
        let second = Task {
            let seen = try await store.write { db in
                defer { secondRan.set() }
                try db.run("INSERT INTO items (name) VALUES ('second')")
                return try db.scalar("SELECT count(*) FROM items")
            }
            secondAnswered.set()
            return seen
        }
        try await waitUntil("the writer waited for the first sync instead of running the second batch") {
            secondRan.isSet && store.commitStatistics.jobs == 2
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(!firstAnswered.isSet, "answered before its commit was synced")
        #expect(!secondAnswered.isSet, "answered before its commit was synced")

        gate.release(1)
        try await first.value
        try await waitUntil("the second batch's sync never began") { gate.syncsBegun == 2 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(!secondAnswered.isSet, "answered by a sync that began before its commit")

        gate.release(2)
        #expect(try await second.value == 2)
        for number in 3...8 { gate.release(number) }
        store.close()
    }

    /// A failed fdatasync answers nobody "done": the callers it covered and every later one get
    /// an error, and the failure is reported once (otpd stops there).
    @Test func aFailedSyncReportsNothingAsDone() async throws {
        let directory = try TemporaryDirectory(prefix: "otpd-pipeline").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let gate = SyncGate(failing: true)
        let failures = Failures()
        let store = try open(directory, gate: gate, failures: failures)
        for number in 1...8 { gate.release(number) }

        await #expect(throws: StoreError.self) {
            try await store.write { db in try db.run("INSERT INTO items (name) VALUES ('lost')") }
        }
        await #expect(throws: StoreError.self) {
            try await store.write { db in try db.scalar("SELECT count(*) FROM items") }
        }
        #expect(failures.count == 1)
        #expect(gate.syncsBegun == 1, "synced again after a failure")
        store.close()
    }

    /// The syncer syncs the WAL file SQLite writes, once per batch at most, and
    /// `synchronous = "normal"` has no syncer: its COMMIT answers at once.
    @Test func theSyncerSyncsTheWALThatSQLiteWrites() async throws {
        let directory = try TemporaryDirectory(prefix: "otpd-pipeline").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/test.sqlite"
        let store = try SQLiteStore(path: path, logger: logger)
        let syncer = try #require(store.walSyncer)
        let before = syncer.completedSyncs
        for i in 0..<3 {
            _ = try await store.write { db in
                try db.run("INSERT INTO daemon_meta (key, value) VALUES (?, 'x')", [.text("k\(i)")])
            }
        }
        #expect(syncer.completedSyncs - before == 3)
        var status = stat()
        #expect(stat(path + "-wal", &status) == 0)
        #expect(syncer.syncedInode == UInt64(status.st_ino))
        #expect(try await store.write { db in try db.scalar("PRAGMA synchronous") } == 1)  // NORMAL + the syncer
        store.close()

        let normal = try SQLiteStore(path: path, synchronous: .normal, logger: logger)
        #expect(normal.walSyncer == nil)
        #expect(try await normal.write { db in try db.scalar("PRAGMA synchronous") } == 1)
        normal.close()
    }
}
