internal import CSQLite

/// A storage failure, sorted so callers can fail closed with a clear status (docs/SECURITY.md §19).
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The database is locked by another process for longer than the busy timeout.
        case busy
        /// The file is damaged or not a database.
        case corrupt
        /// The disk is full.
        case full
        /// The file or directory cannot be written.
        case readOnly
        /// A constraint (unique key, foreign key, check) refused the write.
        case constraint
        /// The schema is newer than this build understands.
        case schemaTooNew
        /// Anything else SQLite reported.
        case other
    }

    public var kind: Kind
    public var message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "storage error (\(kind)): \(message)" }

    init(code: Int32, message: String) {
        let kind: Kind =
            switch code & 0xFF {
            case SQLITE_BUSY, SQLITE_LOCKED: .busy
            case SQLITE_CORRUPT, SQLITE_NOTADB: .corrupt
            case SQLITE_FULL: .full
            case SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM: .readOnly
            case SQLITE_CONSTRAINT: .constraint
            default: .other
            }
        self.init(kind: kind, message: message)
    }
}

/// A value bound to or read from a statement.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case text(String)
    case blob([UInt8])
}

/// One SQLite connection. Not thread-safe: it is owned and used by exactly one thread (the
/// store's writer thread, or the thread that opened it during start-up).
public final class SQLiteConnection {
    let handle: OpaquePointer
    private var statements: [String: Statement] = [:]
    /// The file this connection opened.
    public let path: String

    /// Opens (and creates, when `create` is true) the database at `path`.
    public init(path: String, create: Bool = true) throws(StoreError) {
        _ = Self.processSettings
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw StoreError(code: rc, message: "cannot open \(path): \(message)")
        }
        self.handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, 5000)
    }

    /// SQLite's process-wide settings, made once, before the first connection opens: memory
    /// statistics off, so SQLite's allocations take no global mutex (`perf` of the writer under
    /// `Verify` load: `pthread_mutex_lock` 2 % of its samples, most of it SQLite's allocator).
    private static let processSettings: Void = { _ = cotp_sqlite_disable_memory_statistics() }()

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs one or more SQL statements that return no rows.
    public func execute(_ sql: String) throws(StoreError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(errorMessage)
            throw StoreError(code: rc, message: message)
        }
    }

    /// Runs a statement with parameters and returns every row.
    @discardableResult
    public func query(_ sql: String, _ parameters: [SQLValue] = []) throws(StoreError) -> [[SQLValue]] {
        let statement = try prepare(sql)
        defer { statement.reset() }
        try statement.bind(parameters)
        var rows: [[SQLValue]] = []
        while try statement.step() {
            rows.append(statement.row())
        }
        return rows
    }

    /// Runs a statement with parameters and returns every row, its values read by column name.
    func rows(_ sql: String, _ parameters: [SQLValue] = []) throws(StoreError) -> [SQLRow] {
        let statement = try prepare(sql)
        defer { statement.reset() }
        try statement.bind(parameters)
        let columns = statement.columns
        var rows: [SQLRow] = []
        while try statement.step() {
            rows.append(SQLRow(values: statement.row(), columns: columns))
        }
        return rows
    }

    /// Runs a statement and returns the number of rows it changed.
    @discardableResult
    public func run(_ sql: String, _ parameters: [SQLValue] = []) throws(StoreError) -> Int {
        let statement = try prepare(sql)
        defer { statement.reset() }
        try statement.bind(parameters)
        while try statement.step() {}
        return Int(sqlite3_changes(handle))
    }

    /// Runs an INSERT and returns the rowid of the row it made. (Cheaper than `RETURNING`,
    /// which makes SQLite build and tear down a temporary table on every call.)
    public func insert(_ sql: String, _ parameters: [SQLValue] = []) throws(StoreError) -> Int64 {
        try run(sql, parameters)
        return sqlite3_last_insert_rowid(handle)
    }

    /// Whether a transaction is open (SQLite may roll one back by itself after a disk-full or
    /// I/O error).
    public var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// The rowid of the last inserted row.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// A single integer (first column of the first row), or nil.
    public func scalar(_ sql: String, _ parameters: [SQLValue] = []) throws(StoreError) -> Int64? {
        guard case .integer(let value)? = try query(sql, parameters).first?.first else { return nil }
        return value
    }

    private func prepare(_ sql: String) throws(StoreError) -> Statement {
        if let cached = statements[sql] { return cached }
        var raw: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard rc == SQLITE_OK, let raw else {
            throw StoreError(code: rc, message: "\(String(cString: sqlite3_errmsg(handle))) in: \(sql)")
        }
        let statement = Statement(raw, connection: handle)
        statements[sql] = statement
        return statement
    }
}

/// A prepared statement, cached by its SQL text on its connection.
final class Statement {
    private let raw: OpaquePointer
    private let connection: OpaquePointer
    /// SQLITE_TRANSIENT: SQLite copies bound text and blobs.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(_ raw: OpaquePointer, connection: OpaquePointer) {
        self.raw = raw
        self.connection = connection
    }

    deinit { sqlite3_finalize(raw) }

    /// The names of the result columns, looked up once for the life of the prepared statement.
    private(set) lazy var columns = SQLColumns(
        names: (0..<sqlite3_column_count(raw)).map { String(cString: sqlite3_column_name(raw, $0)) })

    func bind(_ values: [SQLValue]) throws(StoreError) {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(raw, index)
            case .integer(let v): rc = sqlite3_bind_int64(raw, index, v)
            case .text(let v):
                // The byte count, not -1: a NUL inside the text must not cut it short.
                var utf8 = Array(v.utf8)
                let count = utf8.count
                utf8.append(0)  // never an empty buffer, so the pointer is never nil
                rc = utf8.withUnsafeBytes { buffer in
                    sqlite3_bind_text64(
                        raw, index, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt64(count),
                        Self.transient, UInt8(SQLITE_UTF8))
                }
            case .blob(let v):
                if v.isEmpty {
                    rc = sqlite3_bind_zeroblob(raw, index, 0)  // empty, not NULL
                } else {
                    rc = v.withUnsafeBytes {
                        sqlite3_bind_blob64(raw, index, $0.baseAddress, UInt64($0.count), Self.transient)
                    }
                }
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
    }

    /// Advances; true when a row is available.
    func step() throws(StoreError) -> Bool {
        let rc = sqlite3_step(raw)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw error(rc)
        }
    }

    func row() -> [SQLValue] {
        (0..<sqlite3_column_count(raw)).map { column in
            switch sqlite3_column_type(raw, column) {
            case SQLITE_INTEGER: .integer(sqlite3_column_int64(raw, column))
            case SQLITE_TEXT: .text(String(cString: sqlite3_column_text(raw, column)))
            case SQLITE_BLOB:
                if let bytes = sqlite3_column_blob(raw, column) {
                    .blob(Array(UnsafeRawBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(raw, column)))))
                } else {
                    .blob([])
                }
            default: .null
            }
        }
    }

    func reset() {
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    private func error(_ rc: Int32) -> StoreError {
        StoreError(code: rc, message: String(cString: sqlite3_errmsg(connection)))
    }
}

/// The result columns of one prepared statement: their names, resolved to positions once.
final class SQLColumns: Sendable {
    /// The names, in the order of the SELECT.
    let names: [String]
    private let positions: [String: Int]

    init(names: [String]) {
        self.names = names
        // The first column of a name wins, as in SQLite's own lookups.
        self.positions = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The position of the column `name`, or nil when the result has none. `hint` is where the
    /// caller expects it (reading in SELECT order): a match there costs one comparison of
    /// names, and only a column elsewhere is looked up.
    func position(of name: String, hint: Int) -> Int? {
        if hint >= 0, hint < names.count, names[hint] == name { return hint }
        return positions[name]
    }
}

/// One result row whose values are read by column name, so a column added to a SELECT (or
/// the columns reordered) cannot shift another column's value into a field.
struct SQLRow: Sendable {
    /// The values, in the order of the SELECT.
    let values: [SQLValue]
    /// The statement's columns, shared by all its rows.
    let columns: SQLColumns

    /// The value of the column `name`, or nil when the result has no such column.
    subscript(name: String) -> SQLValue? {
        columns.position(of: name, hint: 0).map { values[$0] }
    }
}

extension SQLValue {
    /// The integer, or nil for any other value.
    public var integer: Int64? { if case .integer(let v) = self { v } else { nil } }
    /// The text, or nil for any other value.
    public var text: String? { if case .text(let v) = self { v } else { nil } }
    /// The blob, or nil for any other value.
    public var blob: [UInt8]? { if case .blob(let v) = self { v } else { nil } }
}
