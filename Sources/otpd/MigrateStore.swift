import ArgumentParser
import Foundation
import Logging
import OTPCore
import OTPPostgres
import OTPStore

#if canImport(Glibc)
    import Glibc
#endif

/// `otpd migrate-store`: moves a single-host install from its SQLite file to an empty
/// PostgreSQL database, every row of every table, in one PostgreSQL transaction.
///
/// The source must be at rest. The copy reads the file under SQLite's exclusive lock
/// (`locking_mode=EXCLUSIVE`), which it can only get when no other process has the file open:
/// an otpd serving it (or starting while the copy runs) is refused that way, and the copy is
/// refused in turn. A file whose last otpd recorded no clean stop (`daemon_meta.shutdown` is
/// `running`: killed, crashed, power loss) is refused too, unless `--allow-unclean-shutdown`
/// says it was looked at (`otpd --check-database`). The file is never written: its statements
/// run with `query_only`. (Closing the connection folds the WAL into the file, as any last
/// connection to it does; the rows do not change.)
struct MigrateStore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otpd migrate-store",
        abstract: "Copy an otpd SQLite database into an empty PostgreSQL database.",
        discussion: """
            Copies every account, factor, challenge, proof, set of backup codes, event, SMS send, \
            delivery record, undeliverable number and SMS breaker, with their ids, and the daemon's \
            key fingerprint and notification bookmark, in one PostgreSQL transaction: all or nothing. \
            Stop otpd first: a database another process has open is refused. A PostgreSQL database \
            that holds any row (or a key fingerprint) is refused and left as it was.
            The PostgreSQL password never goes on the command line or in the URL: --password-file \
            (mode 0600), else $CREDENTIALS_DIRECTORY/postgresql-password, else none (peer or trust \
            authentication on a Unix socket).
            Then start otpd with [storage] backend = "postgresql", the same URL, and the same key \
            file. Exit status: 0 copied, 1 refused or failed (nothing written), 2 usage error.
            """)

    @Option(name: .long, help: ArgumentHelp("The SQLite database to copy.", valueName: "sqlite:PATH"))
    var from: String

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The empty PostgreSQL database: a postgresql:// URL without a password.",
            discussion: "postgresql://USER@HOST:PORT/DATABASE?sslmode=verify-full or "
                + "postgresql://USER@/DATABASE?host=/run/postgresql",
            valueName: "postgresql-url"))
    var to: String

    @Option(
        name: .customLong("password-file"),
        help: "File holding the PostgreSQL password (mode 0600; default $CREDENTIALS_DIRECTORY/postgresql-password).")
    var passwordFile: String?

    @Flag(
        name: .customLong("allow-unclean-shutdown"),
        help: "Copy a file whose last otpd did not stop cleanly (after otpd --check-database found it sound).")
    var allowUncleanShutdown = false

    @Option(name: .customLong("connect-timeout"), help: "Seconds to keep trying to reach PostgreSQL.")
    var connectTimeout = 30

    @Option(name: .customLong("log-level"), help: "Level of the log lines on stderr (trace ... critical).")
    var logLevel = "warning"

    /// Parses `arguments` (what follows `otpd migrate-store`), runs, and exits with the
    /// documented status.
    static func runSubcommand(_ arguments: [String]) async -> Never {
        let command: MigrateStore
        do {
            command = try parse(arguments)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
        do {
            try await command.migrate()
            Foundation.exit(0)
        } catch let error as MigrateStoreFailure {
            FileHandle.standardError.write(Data("otpd migrate-store: \(error.message)\n".utf8))
            Foundation.exit(error.status)
        } catch {
            FileHandle.standardError.write(
                Data("otpd migrate-store: failed: \(error); the PostgreSQL transaction was rolled back\n".utf8))
            Foundation.exit(1)
        }
    }

    func run() async throws {
        try await migrate()
    }

    func migrate() async throws {
        let started = ContinuousClock.now
        let path = try sourcePath()
        let settings = try targetSettings()
        let password = try readPassword(environment: ProcessInfo.processInfo.environment)
        guard connectTimeout >= 1 else { throw MigrateStoreFailure.usage("--connect-timeout must be at least 1") }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw MigrateStoreFailure.usage(
                "--log-level must be trace, debug, info, notice, warning, error or critical")
        }
        // Files SQLite may make beside the database (the WAL) stay private, as the daemon's.
        umask(0o077)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "otpd.migrate-store")

        let source = try SQLiteImportSource(path: path, allowUncleanShutdown: allowUncleanShutdown)
        let metadata = try source.metadata()
        print("from: sqlite:\(source.path) (schema version \(source.schemaVersion))")

        let store: PostgresTwoFactorStore
        do {
            store = try await PostgresTwoFactorStore(
                settings: settings, password: password, logger: logger, connectDeadline: .seconds(connectTimeout))
        } catch {
            throw MigrateStoreFailure.refused("cannot use \(settings.redactedURL): \(error)")
        }
        print("to:   \(settings.redactedURL) (schema version \(store.schemaVersion))")
        let report: StoreImportReport
        do {
            // Checked before reading anything, for a clear refusal; the import checks again
            // under its table locks.
            let occupied = try await store.importTargetContents()
            guard occupied.isEmpty else { throw StoreImportError.targetNotEmpty(occupied) }
            report = try await store.importTables(from: source, metadata: metadata.imported) { table, copied in
                guard copied % 100_000 == 0 else { return }
                FileHandle.standardError.write(Data("  \(table.rawValue): \(copied) rows so far\n".utf8))
            }
        } catch let error as StoreImportError {
            store.close()
            switch error {
            case .targetNotEmpty:
                throw MigrateStoreFailure.refused(
                    "refused: \(error); migrate-store copies only into a database no otpd has used. "
                        + "Nothing was written.")
            default:
                throw MigrateStoreFailure.refused("failed: \(error); the PostgreSQL transaction was rolled back")
            }
        } catch {
            store.close()
            throw MigrateStoreFailure.refused("failed: \(error); the PostgreSQL transaction was rolled back")
        }
        store.close()
        source.finish()

        print(Self.table(report))
        for line in metadata.notes(cursor: report.notifyCursor) { print(line) }
        let sequences = StoreImportTable.allCases.compactMap { table in
            report.nextIDs[table].map { "\(table.rawValue) \($0)" }
        }
        print("next ids: " + sequences.joined(separator: ", "))
        let total = report.tables.reduce(0) { $0 + $1.counted }
        let elapsed = (ContinuousClock.now - started).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        print(
            "copied \(total) rows in \(String(format: "%.1f", seconds)) s, committed "
                + "(PostgreSQL transaction \(report.transaction)).")
        print(
            "Next: start otpd with [storage] backend = \"postgresql\", url = \"\(settings.redactedURL)\" "
                + "and the same key file.")
    }

    /// The counts, one line per table.
    static func table(_ report: StoreImportReport) -> String {
        func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
            let padding = String(repeating: " ", count: max(0, width - text.count))
            return left ? text + padding : padding + text
        }
        var lines = [pad("table", 22, left: true) + pad("in SQLite", 12) + pad("read", 12) + pad("written", 12)]
        for row in report.tables {
            lines.append(
                pad(row.table.rawValue, 22, left: true) + pad("\(row.source)", 12) + pad("\(row.read)", 12)
                    + pad("\(row.counted)", 12) + (row.matches ? "" : "  DIFFERS"))
        }
        return lines.joined(separator: "\n")
    }

    private func sourcePath() throws(MigrateStoreFailure) -> String {
        guard from.hasPrefix("sqlite:") else {
            throw .usage("--from must be sqlite:PATH (the otpd SQLite database), not \(from)")
        }
        var path = String(from.dropFirst("sqlite:".count))
        if path.hasPrefix("//") { path.removeFirst(2) }  // sqlite:///var/lib/otpd/otpd.sqlite
        guard !path.isEmpty else { throw .usage("--from sqlite:PATH names no file") }
        return path
    }

    private func targetSettings() throws(MigrateStoreFailure) -> PostgresSettings {
        // Said here rather than by the settings' message, which speaks of the configuration file.
        if let components = URLComponents(string: to), components.password != nil {
            throw .usage(
                "--to must not hold a password (it would show in ps and the shell's history); "
                    + "use --password-file (mode 0600) or $CREDENTIALS_DIRECTORY/postgresql-password")
        }
        do {
            var settings = try PostgresSettings(url: to)
            settings.poolSize = 1
            settings.connectTimeout = .seconds(max(5, connectTimeout))
            return settings
        } catch {
            throw .usage("--to: " + error.description.replacingOccurrences(of: "storage.url", with: "the URL"))
        }
    }

    /// `--password-file`, else the systemd credential `postgresql-password`, else none (as the
    /// daemon does with `[storage] password_file`).
    private func readPassword(environment: [String: String]) throws(MigrateStoreFailure) -> String? {
        do {
            return try PostgresSettings.password(file: passwordFile, environment: environment)
        } catch {
            throw .usage(error.description)
        }
    }
}

/// Why `otpd migrate-store` stopped: a usage error (status 2) or a refusal or failure
/// (status 1, nothing written).
struct MigrateStoreFailure: Error {
    let status: Int32
    let message: String

    static func usage(_ message: String) -> MigrateStoreFailure {
        MigrateStoreFailure(status: 2, message: message)
    }

    static func refused(_ message: String) -> MigrateStoreFailure {
        MigrateStoreFailure(status: 1, message: message)
    }
}

/// The SQLite file as an import source: its rows table by table, in pages, inside one read
/// transaction under SQLite's exclusive lock.
final class SQLiteImportSource: StoreImportSource, @unchecked Sendable {
    // @unchecked Sendable: the connection and the paging state are used by one thread at a
    // time: the command's task opens and checks the file, then hands the source to
    // `importTables`, whose one store thread makes every call in turn until it returns
    // (`await`), and only then does the command's task touch it again (`finish`).
    private let connection: SQLiteConnection
    /// The database's absolute path.
    let path: String
    let schemaVersion: Int
    /// Per table, the paging key of the last row given (nil before the first page), and
    /// whether every row was given.
    private var lastKey: [StoreImportTable: [SQLValue]] = [:]
    private var finished: Set<StoreImportTable> = []

    /// Tables without a rowid, paged by their primary key; the others by rowid.
    private static let withoutRowID: Set<StoreImportTable> = [.backupCodes, .smsBreakers]

    /// Opens `path` and takes its exclusive lock; refuses a missing file, one another process
    /// has open, one of another schema version, and (unless `allowUncleanShutdown`) one whose
    /// last otpd did not stop cleanly.
    init(path rawPath: String, allowUncleanShutdown: Bool) throws(MigrateStoreFailure) {
        let path = rawPath.hasPrefix("/") ? rawPath : FileManager.default.currentDirectoryPath + "/" + rawPath
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw .refused("refused: there is no SQLite database at \(path)")
        }
        self.path = path
        let connection: SQLiteConnection
        do {
            connection = try SQLiteConnection(path: path, create: false)
            try connection.execute("PRAGMA busy_timeout=2000")
            try connection.execute("PRAGMA locking_mode=EXCLUSIVE")
            try connection.execute("PRAGMA query_only=ON")
            try connection.execute("BEGIN")
            // The first read takes the exclusive lock, which waits for no one: a process with
            // the file open (an otpd serving it) keeps it from us.
            _ = try connection.query("SELECT count(*) FROM sqlite_master")
        } catch  where error.kind == .busy {
            throw .refused(
                "refused: \(path) is open in another process (an otpd serving it?); stop otpd first "
                    + "(systemctl stop otpd) and run migrate-store again")
        } catch {
            throw .refused("refused: cannot read \(path): \(error.message)")
        }
        self.connection = connection
        do {
            schemaVersion = Int(try connection.scalar("PRAGMA user_version") ?? 0)
            let latest = Migration.all.last?.version ?? 0
            let hasMeta =
                try connection.scalar(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'daemon_meta'")
                == 1
            guard hasMeta, schemaVersion > 0 else {
                throw MigrateStoreFailure.refused("refused: \(path) is not an otpd database")
            }
            guard schemaVersion == latest else {
                throw MigrateStoreFailure.refused(
                    schemaVersion < latest
                        ? "refused: \(path) has schema version \(schemaVersion), from an older otpd; start this otpd "
                            + "on it once (it brings the schema to version \(latest)), stop it, then migrate"
                        : "refused: \(path) has schema version \(schemaVersion), newer than this otpd knows "
                            + "(\(latest)); use a newer otpd")
            }
            let shutdown = try connection.query("SELECT value FROM daemon_meta WHERE key = 'shutdown'").first?.first?
                .text
            if shutdown == "running" && !allowUncleanShutdown {
                throw MigrateStoreFailure.refused(
                    "refused: the last otpd on \(path) did not stop cleanly (killed, crashed or power loss); "
                        + "check the file with otpd --check-database and run again with --allow-unclean-shutdown, "
                        + "or start otpd on it once and stop it (SIGTERM) first")
            }
        } catch let error as MigrateStoreFailure {
            throw error
        } catch {
            throw .refused("refused: cannot read \(path): \(error)")
        }
    }

    /// Ends the read transaction (the connection closes with the source).
    func finish() {
        try? connection.execute("ROLLBACK")
    }

    func count(of table: StoreImportTable) throws -> Int {
        Int(try connection.scalar("SELECT count(*) FROM \(table.rawValue)") ?? 0)
    }

    func nextRows(of table: StoreImportTable, limit: Int) throws -> [[StoreImportValue]] {
        guard !finished.contains(table) else { return [] }
        let columns = table.columns.joined(separator: ", ")
        let keyColumns = Self.withoutRowID.contains(table) ? table.key : ["rowid"]
        let keyList = keyColumns.joined(separator: ", ")
        var sql = "SELECT \(keyList), \(columns) FROM \(table.rawValue)"
        var parameters: [SQLValue] = []
        if let last = lastKey[table] {
            // Row values compare column by column: the rows after the last one given.
            let placeholders = Array(repeating: "?", count: keyColumns.count).joined(separator: ", ")
            sql += " WHERE (\(keyList)) > (\(placeholders))"
            parameters = last
        }
        sql += " ORDER BY \(keyList) LIMIT ?"
        parameters.append(.integer(Int64(limit)))
        let rows = try connection.query(sql, parameters)
        if rows.count < limit { finished.insert(table) }
        if let last = rows.last { lastKey[table] = Array(last.prefix(keyColumns.count)) }
        return rows.map { row in
            row.dropFirst(keyColumns.count).map { value in
                switch value {
                case .null: .null
                case .integer(let number): .integer(number)
                case .text(let text): .text(text)
                case .blob(let bytes): .bytes(bytes)
                }
            }
        }
    }

    /// What `daemon_meta` and `sqlite_sequence` hold, sorted into what is carried over.
    ///
    /// `daemon_meta` keys:
    /// - `key_fingerprint`: copied (a daemon refuses a database whose fingerprint is not its
    ///   key's).
    /// - `notify_cursor`: the id N of the last event the notification hook handled becomes the
    ///   position "X:N", X the import's transaction, which every copied event carries.
    /// - `unknown_account_attempts`: the count goes to one of PostgreSQL's 64 counters.
    /// - `created_at`: not copied; PostgreSQL keeps its own (when its schema was made, in
    ///   milliseconds; SQLite's is in seconds, and nothing reads either). `migrated_from` and
    ///   `migrated_at` record where the data came from and when.
    /// - `shutdown`: not copied; SQLite's start-up check only (a PostgreSQL store keeps none).
    /// - any other key (none is written by this otpd): not copied, named in the output.
    func metadata() throws(MigrateStoreFailure) -> SourceMetadata {
        do {
            var result = SourceMetadata()
            for row in try connection.query("SELECT key, value FROM daemon_meta ORDER BY key") {
                guard let key = row.first?.text, let value = row.dropFirst().first?.text else { continue }
                switch key {
                case "key_fingerprint":
                    result.imported.keyFingerprint = value
                case "notify_cursor":
                    guard let position = EventPosition(value), position.transaction == 0 else {
                        throw MigrateStoreFailure.refused(
                            "refused: daemon_meta.notify_cursor of \(path) is not an event id")
                    }
                    result.sourceCursor = value
                    result.imported.notifiedThroughEventID = position.id
                case "unknown_account_attempts":
                    guard let count = Int64(value), count >= 0 else {
                        throw MigrateStoreFailure.refused(
                            "refused: daemon_meta.unknown_account_attempts of \(path) is not a count")
                    }
                    result.imported.unknownAccountAttempts = count
                case "created_at", "shutdown":
                    result.skipped.append(key)
                default:
                    result.unknown.append(key)
                }
            }
            for row in try connection.query("SELECT name, seq FROM sqlite_sequence") {
                guard let name = row.first?.text, let table = StoreImportTable(rawValue: name),
                    let seq = row.dropFirst().first?.integer
                else { continue }
                result.imported.identityFloors[table] = seq
            }
            result.imported.extra = [
                "migrated_from": "sqlite:\(path)",
                "migrated_at": "\(Int64((Date().timeIntervalSince1970 * 1000).rounded()))",
            ]
            return result
        } catch let error as MigrateStoreFailure {
            throw error
        } catch {
            throw .refused("refused: cannot read daemon_meta of \(path): \(error)")
        }
    }
}

/// The source's `daemon_meta`, sorted (see `SQLiteImportSource.metadata()`).
struct SourceMetadata {
    var imported = StoreImportMetadata()
    /// The SQLite notification cursor as stored.
    var sourceCursor: String?
    /// SQLite-only keys, not copied.
    var skipped: [String] = []
    /// Keys this otpd does not know, not copied.
    var unknown: [String] = []

    /// What happened to each key, for the output.
    func notes(cursor: String?) -> [String] {
        var notes: [String] = []
        notes.append(
            "daemon_meta: key_fingerprint "
                + (imported.keyFingerprint.map { "\($0) copied" } ?? "absent (the first daemon records its key's)"))
        if let sourceCursor, let cursor {
            notes.append("daemon_meta: notify_cursor \(sourceCursor) copied as \(cursor)")
        }
        if imported.unknownAccountAttempts > 0 {
            notes.append("daemon_meta: unknown_account_attempts \(imported.unknownAccountAttempts) copied")
        }
        if !skipped.isEmpty {
            notes.append("daemon_meta: \(skipped.joined(separator: ", ")) not copied (SQLite's own)")
        }
        notes.append("daemon_meta: " + imported.extra.keys.sorted().joined(separator: ", ") + " recorded")
        if !unknown.isEmpty {
            notes.append("daemon_meta: \(unknown.joined(separator: ", ")) not copied (unknown to this otpd)")
        }
        return notes
    }
}
