import Foundation
import Logging
import NIOCore
import OTPCore
import PostgresNIO

/// Copying a whole store into an empty PostgreSQL database (`otpd migrate-store`).
///
/// The tables mirror the SQLite store's column for column (`PostgresSchema`), so a source hands
/// over its rows as they are stored: SQLite's storage classes (`StoreImportValue`), in the
/// column order of `StoreImportTable.columns`. The import converts each value to the column's
/// PostgreSQL type (an INTEGER 0 or 1 to BOOLEAN, a BLOB to BYTEA) and refuses any other.
///
/// Everything is one transaction: the tables are locked against writers, found empty, filled in
/// multi-row INSERTs (ids kept), the identity sequences moved past the highest id, the daemon's
/// metadata written, and every table's rows counted; any failure or a count that differs rolls
/// all of it back.
extension PostgresTwoFactorStore {
    /// Rows per INSERT statement (one array per column, a few hundred KiB). 1.1 M rows (100,000
    /// accounts, 1 M events), release build, PostgreSQL on the same host: 500 rows a statement
    /// 16-18 s, 2,000 rows 12-15 s; one parameter per value instead of arrays, 500 rows: 58 s.
    public static let importBatchRows = 2000

    /// What the target holds that an import would collide with: the tables with rows, and
    /// `daemon_meta.key_fingerprint` when a daemon has already claimed the database. Empty when
    /// the database may be imported into.
    public func importTargetContents() async throws -> [String] {
        try await withSession { session in try Self.nonEmptyParts(session) }
    }

    /// Copies every table of `source` into this database in one transaction and returns the
    /// counts. Refuses (`StoreImportError.targetNotEmpty`, nothing written) a database that
    /// holds any row of the domain's tables or a key fingerprint.
    ///
    /// - Parameters:
    ///   - source: the rows; read table by table, `importBatchRows` at a time, on a store thread.
    ///   - metadata: the daemon's facts to carry over.
    ///   - progress: called after each batch with the table and the rows copied of it so far.
    public func importTables(
        from source: any StoreImportSource, metadata: StoreImportMetadata,
        progress: @escaping @Sendable (StoreImportTable, Int) -> Void = { _, _ in }
    ) async throws -> StoreImportReport {
        try await withSession { session in
            try session.run("BEGIN ISOLATION LEVEL READ COMMITTED")
            do {
                let report = try Self.importInTransaction(
                    session, source: source, metadata: metadata, progress: progress)
                try session.run("COMMIT")
                return report
            } catch {
                // A session that cannot roll back is gone; the server then rolls back itself.
                _ = try? session.run("ROLLBACK")
                throw error
            }
        }
    }

    private static func importInTransaction(
        _ session: PostgresSession, source: any StoreImportSource, metadata: StoreImportMetadata,
        progress: @Sendable (StoreImportTable, Int) -> Void
    ) throws -> StoreImportReport {
        // The session's limits stay those of a daemon: a statement ends within 10 s, a lock wait
        // within 5 s (a database in use fails fast). Every statement here is one batch of rows,
        // a count or a lookup, well within them.
        // No daemon writes while the import runs, and none between the check and the copy.
        let lockedTables = StoreImportTable.allCases.map(\.rawValue) + ["daemon_meta", "unknown_account_attempts"]
        try session.run("LOCK TABLE \(lockedTables.joined(separator: ", ")) IN EXCLUSIVE MODE")
        let occupied = try nonEmptyParts(session)
        guard occupied.isEmpty else { throw StoreImportError.targetNotEmpty(occupied) }

        var tables: [StoreImportReport.Table] = []
        for table in StoreImportTable.allCases {
            let expected = try source.count(of: table)
            var read = 0
            var inserted = 0
            while true {
                let rows = try source.nextRows(of: table, limit: importBatchRows)
                if rows.isEmpty { break }
                read += rows.count
                inserted += try insert(session, table, rows)
                progress(table, read)
            }
            let counted = try PostgresStoreTransaction.count(session, "SELECT count(*) FROM \(table.rawValue)", [])
            tables.append(
                StoreImportReport.Table(table: table, source: expected, read: read, written: inserted, counted: counted)
            )
        }

        var nextIDs: [StoreImportTable: Int64] = [:]
        for table in StoreImportTable.allCases where table.identityColumn != nil {
            nextIDs[table] = try advanceIdentity(session, table, floor: metadata.identityFloors[table] ?? 0)
        }

        guard let xidRow = try session.rows("SELECT pg_current_xact_id()::text AS xid").first,
            let transaction = UInt64(try PGRowReader(xidRow, table: "pg_current_xact_id").text("xid"))
        else { throw PostgresStoreError(message: "PostgreSQL gave no transaction number") }
        let notifyCursor = try writeMetadata(session, metadata, transaction: transaction)

        let report = StoreImportReport(
            tables: tables, transaction: transaction, notifyCursor: notifyCursor, nextIDs: nextIDs)
        guard report.countsMatch else { throw StoreImportError.countsDiffer(report) }
        return report
    }

    /// The tables with rows, and the key fingerprint if one is recorded.
    static func nonEmptyParts(_ session: PostgresSession) throws -> [String] {
        var parts: [String] = []
        for table in StoreImportTable.allCases {
            let rows = try session.rows("SELECT EXISTS (SELECT 1 FROM \(table.rawValue)) AS occupied")
            if let row = rows.first, try PGRowReader(row, table: table.rawValue).bool("occupied") {
                parts.append(table.rawValue)
            }
        }
        if try PostgresStoreTransaction.meta(session, "key_fingerprint") != nil {
            parts.append("daemon_meta.key_fingerprint")
        }
        return parts
    }

    /// One multi-row INSERT of `rows`; returns the rows it inserted.
    ///
    /// Each column goes as one array parameter (`INSERT ... SELECT * FROM unnest($1, $2, ...)`):
    /// a handful of parameters per statement however many rows, where one parameter per value
    /// made the server parse thousands of placeholders and the client encode each one.
    private static func insert(_ session: PostgresSession, _ table: StoreImportTable, _ rows: [[StoreImportValue]])
        throws -> Int
    {
        let columns = table.columnTypes
        var arrays = columns.map { ImportColumnArray(type: $0.type, count: rows.count) }
        for (index, row) in rows.enumerated() {
            guard row.count == columns.count else {
                throw StoreImportError.badValue(
                    "\(table.rawValue): row \(index + 1) of a batch has \(row.count) values, not \(columns.count)")
            }
            for position in columns.indices {
                try arrays[position].append(row[position], column: "\(table.rawValue).\(columns[position].name)")
            }
        }
        var bindings = PostgresBindings(capacity: arrays.count)
        for array in arrays { bindings.append(array) }
        // Integers go as bigint[]; INSERT casts them to an INTEGER column, refusing what does not fit.
        let parameters = columns.indices.map { "$\($0 + 1)::\(columns[$0].type.arrayType)" }
        let sql =
            "INSERT INTO \(table.rawValue) (\(columns.map(\.name).joined(separator: ", "))) "
            + "SELECT * FROM unnest(\(parameters.joined(separator: ", ")))"
        return try session.run(sql, bindings: bindings)
    }

    /// Moves the identity sequence of `table` past its highest id (and past `floor`, the highest
    /// id the source ever handed out); returns the id the next row will get.
    private static func advanceIdentity(_ session: PostgresSession, _ table: StoreImportTable, floor: Int64) throws
        -> Int64
    {
        guard let column = table.identityColumn else { return 1 }
        let highestRow = try session.rows(
            "SELECT coalesce(max(\(column)), 0)::bigint AS highest FROM \(table.rawValue)"
        ).first
        let highest = try highestRow.map { try PGRowReader($0, table: table.rawValue).integer("highest") } ?? 0
        let last = max(highest, floor)
        guard last >= 1 else { return 1 }
        try session.run(
            "SELECT setval(pg_get_serial_sequence($1, $2), $3)",
            [.text(table.rawValue), .text(column), .integer(last)])
        return last + 1
    }

    /// Writes the daemon's facts; returns the notification cursor written, if any.
    private static func writeMetadata(_ session: PostgresSession, _ metadata: StoreImportMetadata, transaction: UInt64)
        throws -> String?
    {
        if let fingerprint = metadata.keyFingerprint {
            try session.run(
                "INSERT INTO daemon_meta (key, value) VALUES ('key_fingerprint', $1)", [.text(fingerprint)])
        }
        // Every copied event carries this transaction's number, and every later one a larger
        // number: the source's "delivered through event N" is (this transaction, N) here.
        var cursor: String?
        if let id = metadata.notifiedThroughEventID {
            cursor = EventPosition(transaction: transaction, id: id).description
            try PostgresStoreTransaction.setMeta(session, "notify_cursor", cursor!)
        }
        if metadata.unknownAccountAttempts > 0 {
            // The total is the sum of the 64 counters; one of them takes the whole count.
            try session.run(
                "UPDATE unknown_account_attempts SET attempts = attempts + $1 WHERE shard = 0",
                [.integer(metadata.unknownAccountAttempts)])
        }
        for (key, value) in metadata.extra.sorted(by: { $0.key < $1.key }) {
            guard !["key_fingerprint", "notify_cursor"].contains(key) else {
                throw StoreImportError.badValue("daemon_meta.\(key) is set by the import itself")
            }
            try PostgresStoreTransaction.setMeta(session, key, value)
        }
        return cursor
    }
}

/// Where `importTables` reads the rows. Called on one store thread, one call at a time.
public protocol StoreImportSource: Sendable {
    /// How many rows `table` holds (for the report and the check).
    func count(of table: StoreImportTable) throws -> Int
    /// The next at most `limit` rows of `table`, each with the values of `table.columns` in
    /// that order; empty once every row was given. Each table is read once, from its start.
    func nextRows(of table: StoreImportTable, limit: Int) throws -> [[StoreImportValue]]
}

/// A stored value, as SQLite's storage classes.
public enum StoreImportValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case text(String)
    case bytes([UInt8])
}

/// The domain's tables, in the order they are copied.
public enum StoreImportTable: String, CaseIterable, Sendable {
    case accounts
    case challenges
    case proofs
    case events
    case smsSends = "sms_sends"
    case backupCodes = "backup_codes"
    case deliveries
    case undeliverableNumbers = "undeliverable_numbers"
    case smsBreakers = "sms_breakers"

    /// A column's PostgreSQL type, as spelled in a cast.
    public enum ColumnType: String, Sendable {
        case text
        case bigint
        case integer
        case boolean
        case bytea
    }

    /// The columns a source gives, in order, with their PostgreSQL types (the SQLite store's
    /// columns have the same names; `events.xid` is left to its default).
    public var columnTypes: [(name: String, type: ColumnType)] {
        switch self {
        case .accounts:
            [
                ("id", .text), ("phone", .text), ("phone_verified", .boolean), ("pending_phone", .text),
                ("totp_secret", .bytea), ("totp_last_step", .bigint), ("pending_totp", .bytea),
                ("pending_totp_expires_at", .bigint), ("preferred", .text), ("consecutive_failures", .integer),
                ("lock_count", .integer), ("locked_until", .bigint), ("created_at", .bigint), ("updated_at", .bigint),
            ]
        case .challenges:
            [
                ("id", .text), ("account_id", .text), ("purpose", .text), ("destination", .text),
                ("code_hash", .bytea), ("created_at", .bigint), ("expires_at", .bigint), ("attempts_left", .integer),
                ("state", .text),
            ]
        case .proofs:
            [("token_hash", .bytea), ("account_id", .text), ("purpose", .text), ("expires_at", .bigint)]
        case .events:
            [
                ("id", .bigint), ("account_id", .text), ("kind", .text), ("outcome", .text), ("detail", .text),
                ("destination_masked", .text), ("at", .bigint),
            ]
        case .smsSends:
            [
                ("id", .bigint), ("account_id", .text), ("phone", .text), ("country_code", .text), ("purpose", .text),
                ("challenge_id", .text), ("at", .bigint),
            ]
        case .backupCodes:
            [("account_id", .text), ("code_hash", .bytea), ("created_at", .bigint), ("used_at", .bigint)]
        case .deliveries:
            [
                ("id", .bigint), ("account_id", .text), ("challenge_id", .text), ("purpose", .text),
                ("destination_masked", .text), ("provider", .text), ("message_sid", .text), ("status", .text),
                ("error_code", .bigint), ("attempts", .integer), ("created_at", .bigint), ("updated_at", .bigint),
            ]
        case .undeliverableNumbers:
            [("phone", .text), ("error_code", .bigint), ("at", .bigint)]
        case .smsBreakers:
            [
                ("scope", .text), ("country_code", .text), ("tripped_until", .bigint), ("exempt", .boolean),
                ("counting_since", .bigint), ("trips", .integer), ("updated_at", .bigint),
            ]
        }
    }

    /// The column names, in the order a source gives the values.
    public var columns: [String] { columnTypes.map(\.name) }

    /// The primary key's columns (a source may page by them).
    public var key: [String] {
        switch self {
        case .proofs: ["token_hash"]
        case .backupCodes: ["account_id", "code_hash"]
        case .undeliverableNumbers: ["phone"]
        case .smsBreakers: ["scope"]
        default: ["id"]
        }
    }

    /// The identity column whose sequence the import moves past the copied ids.
    public var identityColumn: String? {
        switch self {
        case .events, .smsSends, .deliveries: "id"
        default: nil
        }
    }
}

/// The daemon's own facts an import carries over (`daemon_meta` and the counters).
public struct StoreImportMetadata: Sendable {
    /// The fingerprint of the daemon key the source belongs to; a daemon with another key
    /// refuses the database.
    public var keyFingerprint: String?
    /// The last event the notification hook handled, by id; written as the position (the
    /// import's transaction, that id).
    public var notifiedThroughEventID: Int64?
    /// Attempts on unknown accounts counted so far.
    public var unknownAccountAttempts: Int64 = 0
    /// Per identity table, the highest id the source ever handed out (SQLite's
    /// `sqlite_sequence`), which may exceed the highest id left after pruning.
    public var identityFloors: [StoreImportTable: Int64] = [:]
    /// Other `daemon_meta` rows to write as they are (where the data came from, for one).
    public var extra: [String: String] = [:]

    public init() {}
}

/// What an import did.
public struct StoreImportReport: Sendable {
    public struct Table: Sendable {
        public let table: StoreImportTable
        /// The rows the source said it holds.
        public let source: Int
        /// The rows read from the source.
        public let read: Int
        /// The rows the INSERTs reported inserted.
        public let written: Int
        /// The rows counted in the table afterwards, inside the transaction.
        public let counted: Int

        public var matches: Bool { source == read && read == written && written == counted }
    }

    public let tables: [Table]
    /// The import's transaction number (every copied event's `xid`).
    public let transaction: UInt64
    /// The notification cursor written, if any (`transaction:id`).
    public let notifyCursor: String?
    /// Per identity table, the id the next row will get.
    public let nextIDs: [StoreImportTable: Int64]

    public var countsMatch: Bool { tables.allSatisfy(\.matches) }
}

/// Why an import wrote nothing.
public enum StoreImportError: Error, CustomStringConvertible {
    /// The target holds data already (the names of what it holds).
    case targetNotEmpty([String])
    /// A row of the source does not fit the target's column.
    case badValue(String)
    /// The rows read, inserted and counted differ for some table: rolled back.
    case countsDiffer(StoreImportReport)

    public var description: String {
        switch self {
        case .targetNotEmpty(let parts):
            "the PostgreSQL database is not empty (it holds \(parts.joined(separator: ", ")))"
        case .badValue(let problem):
            problem
        case .countsDiffer(let report):
            "the row counts differ ("
                + report.tables.filter { !$0.matches }.map {
                    "\($0.table.rawValue): \($0.source) in the source, \($0.read) read, \($0.written) written, "
                        + "\($0.counted) counted"
                }.joined(separator: "; ") + ")"
        }
    }
}

extension StoreImportTable.ColumnType {
    /// The array type a column's values are sent as.
    fileprivate var arrayType: String {
        switch self {
        case .text: "text[]"
        case .bigint, .integer: "bigint[]"
        case .boolean: "boolean[]"
        case .bytea: "bytea[]"
        }
    }
}

/// One column of a batch as a one-dimensional PostgreSQL array in the binary format (what
/// `array_recv` reads): a header, then each element as its length (-1: NULL) and its bytes.
/// PostgresNIO's own arrays hold no NULLs, hence this.
struct ImportColumnArray: PostgresDynamicTypeEncodable {
    let type: StoreImportTable.ColumnType
    private let count: Int
    private var elements = ByteBuffer()
    private var hasNull = false

    init(type: StoreImportTable.ColumnType, count: Int) {
        self.type = type
        self.count = count
    }

    var psqlType: PostgresDataType {
        switch type {
        case .text: .textArray
        case .bigint, .integer: .int8Array
        case .boolean: .boolArray
        case .bytea: .byteaArray
        }
    }

    var psqlFormat: PostgresFormat { .binary }

    private var elementType: PostgresDataType {
        switch type {
        case .text: .text
        case .bigint, .integer: .int8
        case .boolean: .bool
        case .bytea: .bytea
        }
    }

    /// Appends `value`, refusing one of another storage class (an INTEGER 0 or 1 is a BOOLEAN).
    mutating func append(_ value: StoreImportValue, column: String) throws {
        switch (value, type) {
        case (.null, _):
            elements.writeInteger(Int32(-1))
            hasNull = true
        case (.text(let text), .text):
            let bytes = Array(text.utf8)
            elements.writeInteger(Int32(bytes.count))
            elements.writeBytes(bytes)
        case (.integer(let number), .bigint), (.integer(let number), .integer):
            elements.writeInteger(Int32(8))
            elements.writeInteger(number)
        case (.integer(let number), .boolean) where number == 0 || number == 1:
            elements.writeInteger(Int32(1))
            elements.writeInteger(UInt8(number))
        case (.bytes(let bytes), .bytea):
            elements.writeInteger(Int32(bytes.count))
            elements.writeBytes(bytes)
        default:
            throw StoreImportError.badValue("\(column) holds a value that is not \(type.rawValue)")
        }
    }

    func encode<JSONEncoder: PostgresJSONEncoder>(
        into byteBuffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>
    ) {
        byteBuffer.writeInteger(Int32(1))  // dimensions
        byteBuffer.writeInteger(Int32(hasNull ? 1 : 0))
        byteBuffer.writeInteger(elementType.rawValue)
        byteBuffer.writeInteger(Int32(count))  // the dimension's length
        byteBuffer.writeInteger(Int32(1))  // its lower bound
        var elements = elements
        byteBuffer.writeBuffer(&elements)
    }
}

extension PostgresSession {
    /// Runs `sql` with `bindings` already encoded and returns the count of rows it changed,
    /// waiting for the answer as `execute` does (at most `answerTimeout`).
    func run(_ sql: String, bindings: PostgresBindings) throws -> Int {
        try execute(sql, bindings: bindings).changed
    }
}
