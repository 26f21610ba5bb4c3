internal import CSQLite
internal import Foundation
public import Logging

/// How the previous run of otpd on a database ended, from the `shutdown` row of `daemon_meta`
/// (written `running` when a store opens and `clean` by ``SQLiteStore/recordCleanShutdown()``).
public enum PreviousShutdown: String, Sendable {
    /// The previous otpd recorded a clean stop.
    case clean
    /// The previous otpd was running and recorded no clean stop: it was killed, crashed, or the
    /// machine lost power.
    case unclean
    /// Nothing recorded: a new database, or one last used by an otpd that kept no record.
    case unknown
}

/// The cheap checks every start runs (docs/OPERATIONS.md, "What is checked at start"), and the
/// full check (`PRAGMA integrity_check` or `quick_check`) that `otpd --check-database` and the
/// background check run.
///
/// The start-up checks read a bounded number of pages whatever the size of the file: the header
/// (page 1), the schema (the pages of `sqlite_master`) and one row of `daemon_meta`. They refuse
/// a file that is not a SQLite database, whose header or schema is damaged, that was truncated
/// below the size its header records, whose schema lacks a table or index the migrations make,
/// or whose objects start beyond the end of the file. Damage inside the data pages is not looked
/// for at start: a statement that meets it fails with `SQLITE_CORRUPT`, which the store turns
/// into a refused request (fail closed, docs/SECURITY.md §19), and the full check finds it.
enum StartupCheck {
    /// Reads the header and the whole schema; throws `.corrupt` when SQLite cannot.
    static func checkReadable(_ connection: SQLiteConnection) throws(StoreError) {
        // `PRAGMA schema_version` makes SQLite read page 1 (it checks the header: the magic
        // string, the page size, the format numbers, and that the file is not shorter than the
        // page count the header records) and parse every row of sqlite_master.
        _ = try connection.scalar("PRAGMA schema_version")
        _ = try connection.query("SELECT type, name, tbl_name, rootpage FROM sqlite_master")
    }

    /// Compares the file's schema with what `migrations` make (applied to an empty in-memory
    /// database): every table and index they make must be there, and every b-tree's root page
    /// must lie inside the file. Tables or indexes the file has beyond those are allowed.
    static func checkSchema(
        _ connection: SQLiteConnection, migrations: [Migration], path: String
    ) throws(StoreError) {
        let expected = try referenceSchema(migrations)
        let rows = try connection.query("SELECT type, name, tbl_name, rootpage FROM sqlite_master")
        let pageCount = try connection.scalar("PRAGMA page_count") ?? 0
        var found = Set<SchemaObject>()
        for row in rows {
            guard row.count == 4, let type = row[0].text, let name = row[1].text, let table = row[2].text else {
                throw StoreError(kind: .corrupt, message: "\(path): a schema row is not readable")
            }
            let root = row[3].integer ?? 0
            if root < 0 || root > pageCount {
                throw StoreError(
                    kind: .corrupt,
                    message: "\(path): \(type) \(name) starts at page \(root), beyond the file's \(pageCount) pages")
            }
            found.insert(SchemaObject(type: type, name: name, table: table))
        }
        let missing = expected.subtracting(found)
        guard missing.isEmpty else {
            let names = missing.map { "\($0.type) \($0.name)" }.sorted().joined(separator: ", ")
            throw StoreError(
                kind: .corrupt, message: "\(path): the schema lacks \(names) (damaged, or changed by hand)")
        }
    }

    /// Reads how the previous run ended and records that this one is running (one small commit).
    /// `.unknown` without a `daemon_meta` table (a store opened with other migrations).
    static func markRunning(_ connection: SQLiteConnection) throws(StoreError) -> PreviousShutdown {
        let hasMeta =
            try connection.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'daemon_meta'")
            == 1
        guard hasMeta else { return .unknown }
        let recorded = try connection.query("SELECT value FROM daemon_meta WHERE key = 'shutdown'").first?.first?.text
        try connection.run(
            """
            INSERT INTO daemon_meta (key, value) VALUES ('shutdown', 'running')
                ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """)
        switch recorded {
        case "clean": return .clean
        case nil: return .unknown
        default: return .unclean
        }
    }

    /// Records a clean stop (see `markRunning`); nothing without a `daemon_meta` table.
    static func markStopped(_ connection: SQLiteConnection) throws(StoreError) {
        let hasMeta =
            try connection.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'daemon_meta'")
            == 1
        guard hasMeta else { return }
        try connection.run("UPDATE daemon_meta SET value = 'clean' WHERE key = 'shutdown'")
    }

    /// The tables and indexes `migrations` make, from an empty in-memory database.
    static func referenceSchema(_ migrations: [Migration]) throws(StoreError) -> Set<SchemaObject> {
        let memory = try SQLiteConnection(path: ":memory:")
        let quiet = Logger(label: "otpd.schema-reference") { _ in SwiftLogNoOpLogHandler() }
        _ = try Migration.apply(migrations, to: memory, logger: quiet)
        var objects = Set<SchemaObject>()
        for row in try memory.query("SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')") {
            if let type = row[0].text, let name = row[1].text, let table = row[2].text {
                objects.insert(SchemaObject(type: type, name: name, table: table))
            }
        }
        return objects
    }

    struct SchemaObject: Hashable {
        var type: String
        var name: String
        var table: String
    }
}

/// The full check of a database file: every page of every table and index.
public enum DatabaseCheck {
    /// Runs `PRAGMA integrity_check` (or, with `quick`, `PRAGMA quick_check`, which skips
    /// comparing each index with its table) on `path` without changing it, and returns the
    /// problems found: empty when the file is sound. Safe while otpd runs (a WAL reader).
    ///
    /// - Throws: `StoreError` when the file cannot be opened or read for a reason that is not
    ///   damage (missing, no permission, I/O error).
    public static func problems(path: String, quick: Bool = false) throws(StoreError) -> [String] {
        let connection = try SQLiteConnection(path: path, create: false)
        try connection.execute("PRAGMA query_only=ON")
        // integrity_check looks up every index entry in its table: with SQLite's default 2 MiB
        // of cache that re-reads most pages many times (3.5 minutes at 1 GB, mostly in read
        // calls). A one-off command may use 256 MiB.
        try connection.execute("PRAGMA cache_size=-262144")
        return try problems(connection, quick: quick)
    }

    static func problems(_ connection: SQLiteConnection, quick: Bool) throws(StoreError) -> [String] {
        // Up to 100 problems: enough to judge the damage, bounded however bad it is. Damage the
        // check cannot step over (a root page that is no b-tree page, a file that is no
        // database) stops it with SQLITE_CORRUPT or SQLITE_NOTADB: that is a finding too.
        do {
            let rows = try connection.query(quick ? "PRAGMA quick_check(100)" : "PRAGMA integrity_check(100)")
            let lines = rows.compactMap { $0.first?.text }
            return lines == ["ok"] ? [] : lines
        } catch  where error.kind == .corrupt {
            return [error.message]
        }
    }
}

extension SQLiteConnection {
    /// Pages this connection has read into its page cache (from the database file or the WAL)
    /// since it was opened: SQLite's `SQLITE_DBSTATUS_CACHE_MISS`.
    var pagesRead: Int {
        var current: Int32 = 0
        var highwater: Int32 = 0
        sqlite3_db_status(handle, SQLITE_DBSTATUS_CACHE_MISS, &current, &highwater, 0)
        return Int(current)
    }

    /// Heap bytes held by this connection's page cache: SQLite's `SQLITE_DBSTATUS_CACHE_USED`.
    var cacheBytes: Int {
        var current: Int32 = 0
        var highwater: Int32 = 0
        sqlite3_db_status(handle, SQLITE_DBSTATUS_CACHE_USED, &current, &highwater, 0)
        return Int(current)
    }

    /// Frees every page of this connection's cache that is not in use (`sqlite3_db_release_memory`).
    func releaseCacheMemory() {
        sqlite3_db_release_memory(handle)
    }

    /// Makes the statement running on this connection (on another thread) stop soon with
    /// `SQLITE_INTERRUPT`. SQLite allows this call from any thread while the connection is open.
    func interrupt() {
        sqlite3_interrupt(handle)
    }
}

/// The outcome of the background integrity check.
public enum IntegrityVerdict: Sendable, Equatable {
    /// Not started (the configuration or the previous clean shutdown did not ask for it).
    case notRun
    /// Reading the file.
    case running
    /// Every page was read and found sound.
    case passed
    /// The check found damage (up to 100 lines of SQLite's report).
    case failed([String])
    /// The check could not finish (stopped at shutdown, or an error that is not damage).
    case incomplete(String)
}

/// `PRAGMA quick_check` of the whole file, on its own read-only connection and thread, after
/// the daemon is ready: it reads every page (seconds for a large file), so it must not delay the
/// start, and it does not stop the writer (a WAL reader sees one snapshot and blocks no one;
/// the WAL can only start over once it has finished).
public final class BackgroundIntegrityCheck: @unchecked Sendable {
    // @unchecked Sendable: `verdictValue`, `connection` and `stopped` are only touched while
    // holding `condition`; the connection is used by the check's thread, and from other threads
    // only for `interrupt()` (which SQLite allows from any thread) while it is open.
    private let condition = NSCondition()
    private var verdictValue = IntegrityVerdict.notRun
    private var connection: SQLiteConnection?
    private var stopped = false
    private var finished = true
    private let path: String
    private let logger: Logger

    /// A check of the database at `path`; `start()` runs it.
    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    /// The check's outcome so far.
    public var verdict: IntegrityVerdict {
        condition.lock()
        defer { condition.unlock() }
        return verdictValue
    }

    /// Starts the check on its own thread (once); `completion` gets the verdict when it ends.
    public func start(completion: @escaping @Sendable (IntegrityVerdict) -> Void = { _ in }) {
        condition.lock()
        guard verdictValue == .notRun, !stopped else {
            condition.unlock()
            return
        }
        verdictValue = .running
        finished = false
        condition.unlock()
        let thread = Thread { [self] in
            let verdict = run()
            condition.lock()
            verdictValue = verdict
            finished = true
            condition.broadcast()
            condition.unlock()
            completion(verdict)
        }
        thread.name = "otpd-integrity-check"
        thread.start()
    }

    /// Interrupts a running check and waits until its thread has let go of the database.
    public func stop() {
        condition.lock()
        stopped = true
        connection?.interrupt()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func run() -> IntegrityVerdict {
        let started = ContinuousClock.now
        logger.info("database check started (PRAGMA quick_check, in the background)", metadata: ["database": "\(path)"])
        let verdict: IntegrityVerdict
        do {
            let connection = try SQLiteConnection(path: path, create: false)
            try connection.execute("PRAGMA query_only=ON")
            condition.lock()
            if stopped {
                condition.unlock()
                return .incomplete("stopped before it began")
            }
            self.connection = connection
            condition.unlock()
            defer {
                condition.lock()
                self.connection = nil
                condition.unlock()
            }
            let problems = try DatabaseCheck.problems(connection, quick: true)
            verdict = problems.isEmpty ? .passed : .failed(problems)
        } catch let error where error.kind == .corrupt {
            verdict = .failed([error.message])
        } catch {
            verdict = .incomplete(error.message)
        }
        let duration = "\(ContinuousClock.now - started)"
        switch verdict {
        case .passed:
            logger.info("database check passed", metadata: ["database": "\(path)", "duration": "\(duration)"])
        case .failed(let problems):
            logger.critical(
                """
                database check found damage; otpd refuses what it cannot read, and Health answers \
                DATABASE_DAMAGED. Stop otpd, run otpd --check-database, restore the last backup
                """,
                metadata: [
                    "database": "\(path)", "problems": "\(problems.prefix(5).joined(separator: "; "))",
                    "duration": "\(duration)",
                ])
        case .incomplete(let reason):
            logger.warning(
                "database check did not finish", metadata: ["database": "\(path)", "reason": "\(reason)"])
        case .notRun, .running:
            break
        }
        return verdict
    }
}
