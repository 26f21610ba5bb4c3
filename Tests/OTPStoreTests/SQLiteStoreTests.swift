import Foundation
import Logging
import OTPStore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("SQLite store")
struct SQLiteStoreTests {
    let logger = Logger(label: "test")

    private func temporaryPath() -> (directory: String, database: String) {
        var template = Array("/tmp/otpd-store-XXXXXX".utf8CString)
        let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        return (directory, directory + "/test.sqlite")
    }

    private func openTable(_ path: String) throws -> SQLiteStore {
        let migrations = Migration.all + [
            Migration(
                version: Migration.all.count + 1, summary: "test table",
                sql: "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;")
        ]
        return try SQLiteStore(path: path, migrations: migrations, logger: logger)
    }

    @Test func pragmasAndSchemaVersion() async throws {
        let (directory, path) = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteStore(path: path, logger: logger)
        #expect(store.schemaVersion == Migration.all.last!.version)
        let (journal, synchronous, foreignKeys) = try await store.write { db in
            (
                try db.query("PRAGMA journal_mode").first?.first?.text,
                try db.scalar("PRAGMA synchronous"),
                try db.scalar("PRAGMA foreign_keys")
            )
        }
        #expect(journal == "wal")
        #expect(synchronous == 2)  // FULL
        #expect(foreignKeys == 1)
        store.close()
    }

    /// Many concurrent writers share commits: every write is there afterwards, and there were
    /// fewer commits than writes.
    @Test func concurrentWritesShareCommits() async throws {
        let (directory, path) = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openTable(path)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<2000 {
                group.addTask {
                    _ = try await store.write { db in try db.run("INSERT INTO items (name) VALUES (?)", [.text("item \(i)")]) }
                }
            }
            try await group.waitForAll()
        }
        let count = try await store.write { db in try db.scalar("SELECT count(*) FROM items") }
        #expect(count == 2000)
        let statistics = store.commitStatistics
        #expect(statistics.jobs == 2001)
        #expect(statistics.batches < statistics.jobs, "group commit batched nothing")
        store.close()

        // Durable: a fresh connection sees every row.
        let reopened = try openTable(path)
        #expect(try await reopened.write { db in try db.scalar("SELECT count(*) FROM items") } == 2000)
        reopened.close()
    }

    /// A body that throws is rolled back alone; the others of its batch commit.
    @Test func aFailingWriteDoesNotTouchItsBatch() async throws {
        let (directory, path) = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openTable(path)
        struct Refused: Error {}
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    do {
                        try await store.write { db in
                            try db.run("INSERT INTO items (name) VALUES (?)", [.text("n\(i)")])
                            if i % 2 == 0 { throw Refused() }
                        }
                        return true
                    } catch {
                        return false
                    }
                }
            }
            var results: [Bool] = []
            for await outcome in group { results.append(outcome) }
            return results
        }
        #expect(outcomes.filter { $0 }.count == 100)
        let names = try await store.write { db in try db.query("SELECT name FROM items").compactMap { $0.first?.text } }
        #expect(names.count == 100)
        #expect(names.allSatisfy { Int($0.dropFirst())! % 2 == 1 })
        store.close()
    }

    @Test func constraintViolationsAreReportedAsSuch() async throws {
        let (directory, path) = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openTable(path)
        _ = try await store.write { db in try db.run("INSERT INTO items (name) VALUES ('a')") }
        await #expect {
            _ = try await store.write { db in try db.run("INSERT INTO items (name) VALUES ('a')") }
        } throws: { error in
            (error as? StoreError)?.kind == .constraint
        }
        store.close()
    }

    @Test func aCorruptFileIsRefused() throws {
        let (directory, path) = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A valid database whose pages are then overwritten in the middle.
        do {
            let store = try openTable(path)
            store.close()
        }
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.count >= 8192)
        for i in 4096..<bytes.count { bytes[i] = 0xA5 }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try openTable(path)
        } throws: { error in
            (error as? StoreError)?.kind == .corrupt
        }
    }

    @Test func aNewerSchemaIsRefused() throws {
        let (directory, path) = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openTable(path)
        store.close()
        #expect {
            _ = try SQLiteStore(path: path, migrations: Array(Migration.all), logger: logger)
        } throws: { error in
            (error as? StoreError)?.kind == .schemaTooNew
        }
    }

    @Test func migrationsAreAppliedOnceAndInOrder() async throws {
        let (directory, path) = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try openTable(path)
        _ = try await first.write { db in try db.run("INSERT INTO items (name) VALUES ('kept')") }
        first.close()
        let second = try openTable(path)  // the test migration must not run again
        #expect(try await second.write { db in try db.scalar("SELECT count(*) FROM items") } == 1)
        second.close()
    }
}
