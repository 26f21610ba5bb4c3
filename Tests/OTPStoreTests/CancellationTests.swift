import Foundation
import Logging
import OTPTestSupport
import Synchronization
import Testing

@testable import OTPStore

/// A value set from one thread and read from another.
private final class Box<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func set(_ newValue: Value) { value.withLock { $0 = newValue } }
    var get: Value { value.withLock { $0 } }
}

/// Cancelling a caller of `SQLiteStore.write`: a job the writer has not started never runs,
/// one it has started commits.
@Suite("SQLite store cancellation", .timeLimit(.minutes(1)))
struct CancellationTests {
    let logger = Logger(label: "test")

    private func openTable() throws -> (store: SQLiteStore, directory: String) {
        let directory = try TemporaryDirectory(prefix: "otpd-cancel").path
        let migrations =
            Migration.all + [
                Migration(
                    version: Migration.all.count + 1, summary: "test table",
                    sql: "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;")
            ]
        return (try SQLiteStore(path: directory + "/test.sqlite", migrations: migrations, logger: logger), directory)
    }

    private func names(_ store: SQLiteStore) async throws -> [String] {
        try await store.write { db in
            try db.query("SELECT name FROM items ORDER BY name").compactMap { $0.first?.text }
        }
    }

    /// Polls `condition` every millisecond for up to five seconds.
    private func waitUntil(_ condition: () -> Bool) async throws {
        for _ in 0..<5000 where !condition() { try await Task.sleep(for: .milliseconds(1)) }
        try #require(condition())
    }

    /// While the writer is busy with a first job, a second caller is cancelled: it hears
    /// `CancellationError` at once (before the writer is free), and its body never runs.
    @Test func aQueuedJobWhoseCallerIsCancelledNeverRuns() async throws {
        let (store, directory) = try openTable()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let firstStarted = Box(false)
        let release = DispatchSemaphore(value: 0)
        let secondRan = Box(false)

        let first = Task {
            try await store.write { db in
                firstStarted.set(true)
                release.wait()
                try db.run("INSERT INTO items (name) VALUES ('first')")
            }
        }
        try await waitUntil { firstStarted.get }
        let second = Task {
            try await store.write { db in
                secondRan.set(true)
                try db.run("INSERT INTO items (name) VALUES ('second')")
            }
        }
        try await waitUntil { store.queuedWrites == 1 }
        second.cancel()
        // Answered while the writer is still blocked in the first body (else this would hang).
        let outcome = await second.result
        #expect(throws: CancellationError.self) { try outcome.get() }

        release.signal()
        try await first.value
        #expect(try await names(store) == ["first"])
        #expect(!secondRan.get, "the cancelled job's body ran")
        #expect(store.commitStatistics.jobs == 2, "first and the read; the cancelled job got no savepoint")
        store.close()
    }

    /// A caller already cancelled when it calls `write` is refused without queueing anything.
    @Test func anAlreadyCancelledCallerIsNotQueued() async throws {
        let (store, directory) = try openTable()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ran = Box(false)
        let task = Task {
            try? await Task.sleep(for: .seconds(30))  // returns early when cancelled
            try await store.write { db in
                ran.set(true)
                try db.run("INSERT INTO items (name) VALUES ('late')")
            }
        }
        task.cancel()
        let outcome = await task.result
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(try await names(store).isEmpty)
        #expect(!ran.get)
        #expect(store.commitStatistics.jobs == 1)
        store.close()
    }

    /// A body the writer has started when its caller is cancelled commits, and the caller gets
    /// its result: a change that is stored is never reported as not done.
    @Test func aStartedJobCommitsAndAnswersDespiteCancellation() async throws {
        let (store, directory) = try openTable()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let started = Box(false)
        let release = DispatchSemaphore(value: 0)
        let task = Task {
            try await store.write { db in
                started.set(true)
                release.wait()
                try db.run("INSERT INTO items (name) VALUES ('kept')")
                return 42
            }
        }
        try await waitUntil { started.get }
        task.cancel()
        release.signal()
        #expect(try await task.value == 42)
        #expect(try await names(store) == ["kept"])
        store.close()
    }

    /// Many writers, half of them cancelled at assorted moments: every caller is answered once,
    /// and the rows stored are exactly those of the callers told "done".
    @Test func underRacingCancellationsEveryCallerHearsTheTruth() async throws {
        let (store, directory) = try openTable()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let count = 1000
        let outcomes = await withTaskGroup(of: (Int, Bool?).self) { group in
            var tasks: [Task<Void, any Error>] = []
            for i in 0..<count {
                let task = Task {
                    _ = try await store.write { db in
                        try db.run("INSERT INTO items (name) VALUES (?)", [.text("n\(i)")])
                    }
                }
                tasks.append(task)
                group.addTask {
                    switch await task.result {
                    case .success: return (i, true)
                    case .failure(let error): return (i, error is CancellationError ? false : nil)
                    }
                }
                if i % 2 == 1 {
                    if i % 3 == 0 { await Task.yield() }
                    tasks[i - (i % 7 == 1 ? 0 : 1)].cancel()
                }
            }
            var outcomes: [Int: Bool?] = [:]
            for await (i, outcome) in group { outcomes[i] = outcome }
            return outcomes
        }
        #expect(outcomes.count == count)
        #expect(outcomes.values.allSatisfy { $0 != nil }, "only CancellationError may refuse a write here")
        let done = Set(outcomes.filter { $0.value == true }.map { "n\($0.key)" })
        #expect(done.count >= count / 2 && done.count < count, "\(done.count) of \(count) done: no race was run")
        let stored = Set(try await names(store))
        #expect(stored == done)
        #expect(store.commitStatistics.jobs == done.count + 1)
        store.close()
    }
}
