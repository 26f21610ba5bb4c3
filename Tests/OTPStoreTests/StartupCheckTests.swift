import Foundation
import Logging
import OTPStore
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Start-up reads a bounded number of pages whatever the size of the file (issue 15, bound 4),
/// still refuses a file whose header or schema is damaged, and leaves damage inside the data to
/// the full check (`DatabaseCheck`, `BackgroundIntegrityCheck`).
@Suite("Database checks at start-up")
struct StartupCheckTests {
    let logger = Logger(label: "test")

    /// A database of `accounts` accounts and `events` audit events, made with plain SQL in one
    /// transaction, then closed (the WAL copied into the file).
    private func makeDatabase(accounts: Int, events: Int) async throws -> (TemporaryDirectory, String) {
        let directory = try TemporaryDirectory(prefix: "otpd-startup")
        let path = directory.file("otpd.sqlite")
        let store = try SQLiteStore(path: path, logger: logger)
        try await store.write { db in
            try db.run(
                """
                INSERT INTO accounts (id, phone, phone_verified, preferred, consecutive_failures, lock_count,
                                      created_at, updated_at)
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                SELECT printf('acct-%07d', i), printf('+1555%07d', i), 1, 'sms', 0, 0, i, i FROM n
                """, [.integer(Int64(accounts))])
            try db.run(
                """
                INSERT INTO events (account_id, kind, outcome, detail, destination_masked, at)
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                SELECT printf('acct-%07d', (i * 7919) % ? + 1), 'verify', 'success', '', '+1******0100', i FROM n
                """, [.integer(Int64(events)), .integer(Int64(accounts))])
        }
        store.close()
        return (directory, path)
    }

    private func fileSize(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Overwrites page `page` (1-based) of the file with a pattern that is no b-tree page.
    private func damage(page: Int, of path: String, pageSize: Int = 4096) throws {
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64((page - 1) * pageSize))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: pageSize))
    }

    /// The page where `name`'s b-tree starts.
    private func rootPage(of name: String, in path: String) throws -> Int {
        let connection = try SQLiteConnection(path: path, create: false)
        return Int(
            try #require(try connection.scalar("SELECT rootpage FROM sqlite_master WHERE name = ?", [.text(name)])))
    }

    @Test func startUpReadsTheSameFewPagesForADatabaseTwiceAsLarge() async throws {
        let (smallDirectory, small) = try await makeDatabase(accounts: 20_000, events: 250_000)
        defer { smallDirectory.remove() }
        let (largeDirectory, large) = try await makeDatabase(accounts: 40_000, events: 500_000)
        defer { largeDirectory.remove() }
        let smallBytes = try fileSize(small)
        let largeBytes = try fileSize(large)
        #expect(smallBytes > 20_000_000)
        #expect(largeBytes > smallBytes * 19 / 10)

        let smallStore = try SQLiteStore(path: small, logger: logger)
        let smallPages = smallStore.startupPagesRead
        smallStore.close()
        let largeStore = try SQLiteStore(path: large, logger: logger)
        let largePages = largeStore.startupPagesRead
        largeStore.close()

        // The header, the schema and one row of daemon_meta: a handful of pages, where
        // `PRAGMA quick_check` read every one of the file's thousands.
        #expect(smallPages > 0)
        #expect(smallPages <= 32, "start-up read \(smallPages) pages")
        #expect(largePages == smallPages, "\(largePages) pages at \(largeBytes) bytes, \(smallPages) at \(smallBytes)")
        #expect(smallBytes / 4096 > 100 * smallPages)
    }

    @Test func aDamagedHeaderIsRefused() async throws {
        let (directory, path) = try await makeDatabase(accounts: 10, events: 10)
        defer { directory.remove() }
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.write(contentsOf: Data(repeating: 0, count: 100))
        try handle.close()
        #expect {
            _ = try SQLiteStore(path: path, logger: logger)
        } throws: { error in
            (error as? StoreError)?.kind == .corrupt
        }
    }

    @Test func aTruncatedFileIsRefused() async throws {
        let (directory, path) = try await makeDatabase(accounts: 1_000, events: 20_000)
        defer { directory.remove() }
        #expect(truncate(path, off_t(try fileSize(path) / 2)) == 0)
        #expect {
            _ = try SQLiteStore(path: path, logger: logger)
        } throws: { error in
            (error as? StoreError)?.kind == .corrupt
        }
    }

    @Test func aDamagedSchemaIsRefused() async throws {
        let (directory, path) = try await makeDatabase(accounts: 10, events: 10)
        defer { directory.remove() }
        // sqlite_master's own pages after the first (the schema does not fit in page 1).
        try damage(page: 2, of: path)
        #expect {
            _ = try SQLiteStore(path: path, logger: logger)
        } throws: { error in
            (error as? StoreError)?.kind == .corrupt
        }
    }

    @Test func aMissingIndexIsRefused() async throws {
        let (directory, path) = try await makeDatabase(accounts: 10, events: 10)
        defer { directory.remove() }
        do {
            let connection = try SQLiteConnection(path: path, create: false)
            try connection.execute("DROP INDEX events_by_account")
        }
        #expect {
            _ = try SQLiteStore(path: path, logger: logger)
        } throws: { error in
            (error as? StoreError)?.kind == .corrupt
                && (error as? StoreError)?.message.contains("events_by_account") == true
        }
    }

    /// Damage inside a table's pages does not stop the start (that would need reading every
    /// page); the full check and the background check find it.
    @Test func damageInTheDataIsFoundByTheFullAndTheBackgroundCheck() async throws {
        let (directory, path) = try await makeDatabase(accounts: 1_000, events: 20_000)
        defer { directory.remove() }
        #expect(try DatabaseCheck.problems(path: path) == [])
        try damage(page: try rootPage(of: "events_by_account", in: path), of: path)

        let store = try SQLiteStore(path: path, logger: logger)
        defer { store.close() }
        #expect(try DatabaseCheck.problems(path: path, quick: true) != [])
        #expect(try DatabaseCheck.problems(path: path) != [])

        let check = BackgroundIntegrityCheck(path: path, logger: logger)
        #expect(check.verdict == .notRun)
        let verdict = await withCheckedContinuation { continuation in
            check.start { continuation.resume(returning: $0) }
        }
        guard case .failed(let problems) = verdict else {
            Issue.record("the background check said \(verdict)")
            return
        }
        #expect(!problems.isEmpty)
        #expect(check.verdict == verdict)
        check.stop()
    }

    @Test func theBackgroundCheckPassesASoundDatabase() async throws {
        let (directory, path) = try await makeDatabase(accounts: 1_000, events: 20_000)
        defer { directory.remove() }
        let store = try SQLiteStore(path: path, logger: logger)
        defer { store.close() }
        let check = BackgroundIntegrityCheck(path: path, logger: logger)
        let verdict = await withCheckedContinuation { continuation in
            check.start { continuation.resume(returning: $0) }
        }
        #expect(verdict == .passed)
        check.stop()
    }

    @Test func theStoreKnowsWhetherThePreviousShutdownWasClean() async throws {
        let directory = try TemporaryDirectory(prefix: "otpd-startup")
        defer { directory.remove() }
        let path = directory.file("otpd.sqlite")
        let first = try SQLiteStore(path: path, logger: logger)
        #expect(first.previousShutdown == .unknown)
        try await first.recordCleanShutdown()
        first.close()

        let second = try SQLiteStore(path: path, logger: logger)
        #expect(second.previousShutdown == .clean)
        second.close()  // without recordCleanShutdown: as if killed

        let third = try SQLiteStore(path: path, logger: logger)
        #expect(third.previousShutdown == .unclean)
        third.close()
    }
}
