import Dispatch
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// A value bound to a statement parameter.
enum PGValue {
    case text(String)
    case integer(Int64)
    case bytes([UInt8])
    case boolean(Bool)
    case null
}

/// Statements on one leased connection, run from a store thread: each call sends the statement
/// and waits for its answer. Not `Sendable`: it lives on one thread for the length of one body.
struct PostgresSession {
    let connection: PostgresConnection
    let logger: Logger

    /// The longest wait for one statement's answer, in seconds: beyond the server's own
    /// `statement_timeout` (10 s) and `lock_timeout` (5 s), so it fires only when the
    /// connection itself is stuck; the connection is then closed.
    static let answerTimeout = 15

    /// One statement's answer, handed from the event loop to the waiting store thread.
    private final class Answer: Sendable {
        private let result = Mutex<Result<PostgresQueryResult, any Error>?>(nil)
        private let ready = DispatchSemaphore(value: 0)

        func set(_ value: Result<PostgresQueryResult, any Error>) {
            result.withLock { $0 = value }
            ready.signal()
        }

        func wait(timeout seconds: Int) -> Result<PostgresQueryResult, any Error>? {
            guard ready.wait(timeout: .now() + .seconds(seconds)) == .success else { return nil }
            return result.withLock { $0 }
        }
    }

    /// Runs `sql` with `values` bound to `$1`, `$2`, ... and returns its rows and the count of
    /// rows it changed.
    func execute(_ sql: String, _ values: [PGValue] = []) throws -> (rows: [PostgresRow], changed: Int) {
        var bindings = PostgresBindings(capacity: values.count)
        for value in values {
            switch value {
            case .text(let text): bindings.append(text)
            case .integer(let integer): bindings.append(integer)
            case .bytes(let bytes): bindings.append(ByteBuffer(bytes: bytes))
            case .boolean(let flag): bindings.append(flag)
            case .null: bindings.appendNull()
            }
        }
        return try execute(sql, bindings: bindings)
    }

    /// Runs `sql` with `bindings` already encoded (the importer's arrays).
    func execute(_ sql: String, bindings: PostgresBindings) throws -> (rows: [PostgresRow], changed: Int) {
        // A closed connection may never answer a statement sent on it (seen with PostgresNIO
        // 1.33 after the server restarted: a ROLLBACK on the dead session waited forever), so
        // none is sent, and no answer is waited for longer than `answerTimeout`.
        guard !connection.isClosed else {
            throw PostgresStoreError(kind: .unavailable, message: "the connection to PostgreSQL is closed")
        }
        let answer = Answer()
        connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger).whenComplete {
            answer.set($0)
        }
        guard let result = answer.wait(timeout: Self.answerTimeout) else {
            connection.close().whenComplete { _ in }
            throw PostgresStoreError(
                kind: .unavailable, message: "PostgreSQL did not answer within \(Self.answerTimeout) s")
        }
        switch result {
        case .success(let result): return (result.rows, result.metadata.rows ?? 0)
        case .failure(let error): throw PostgresStoreError(error)
        }
    }

    func rows(_ sql: String, _ values: [PGValue] = []) throws -> [PostgresRow] {
        try execute(sql, values).rows
    }

    @discardableResult
    func run(_ sql: String, _ values: [PGValue] = []) throws -> Int {
        try execute(sql, values).changed
    }
}

/// Reads one row's columns by name, refusing what does not decode. Messages name the table and
/// column, never the stored value (it may be a phone number).
struct PGRowReader {
    private let row: PostgresRandomAccessRow
    private let table: String

    init(_ row: PostgresRow, table: String) {
        self.row = row.makeRandomAccess()
        self.table = table
    }

    private func corrupt(_ column: String, _ problem: String) -> PostgresStoreError {
        .corrupt(table, column, problem)
    }

    private func decode<V: PostgresDecodable>(_ column: String, _ type: V.Type) throws -> V {
        guard row.contains(column) else { throw corrupt(column, "is missing from the row") }
        do {
            return try row[column].decode(V.self)
        } catch {
            throw corrupt(column, "cannot be read as \(V.self)")
        }
    }

    func text(_ column: String) throws -> String {
        guard let text = try optionalText(column) else { throw corrupt(column, "is NULL") }
        return text
    }

    func optionalText(_ column: String) throws -> String? { try decode(column, String?.self) }

    func integer(_ column: String) throws -> Int64 {
        guard let value = try optionalInteger(column) else { throw corrupt(column, "is NULL") }
        return value
    }

    func optionalInteger(_ column: String) throws -> Int64? { try decode(column, Int64?.self) }

    /// A non-negative count.
    func count(_ column: String) throws -> Int {
        guard let value = Int(exactly: try integer(column)), value >= 0 else { throw corrupt(column, "is not a count") }
        return value
    }

    func bool(_ column: String) throws -> Bool {
        guard let value = try decode(column, Bool?.self) else { throw corrupt(column, "is NULL") }
        return value
    }

    func optionalBytes(_ column: String) throws -> [UInt8]? {
        guard let buffer = try decode(column, ByteBuffer?.self) else { return nil }
        guard buffer.readableBytes > 0 else { throw corrupt(column, "is an empty blob") }
        return Array(buffer.readableBytesView)
    }

    func bytes(_ column: String) throws -> [UInt8] {
        guard let bytes = try optionalBytes(column) else { throw corrupt(column, "is NULL") }
        return bytes
    }

    func date(_ column: String) throws -> Date {
        guard let date = try optionalDate(column) else { throw corrupt(column, "is NULL") }
        return date
    }

    func optionalDate(_ column: String) throws -> Date? {
        guard let milliseconds = try optionalInteger(column) else { return nil }
        guard abs(milliseconds) <= StoredTime.limit else { throw corrupt(column, "is not a storable time") }
        return StoredTime.date(milliseconds)
    }

    func optionalStep(_ column: String) throws -> UInt64? {
        guard let value = try optionalInteger(column) else { return nil }
        guard let step = UInt64(exactly: value) else { throw corrupt(column, "is negative") }
        return step
    }
}

/// The one conversion between `Date` and the stored BIGINT Unix milliseconds (the same as the
/// SQLite store's, so a row copied between them means the same time).
enum StoredTime {
    /// 2^53 ms, where every millisecond is still exact in a Double.
    static let limit: Int64 = 1 << 53

    static func milliseconds(_ date: Date) throws -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded(.toNearestOrAwayFromZero)
        guard value.isFinite, let milliseconds = Int64(exactly: value), abs(milliseconds) <= limit else {
            throw PostgresStoreError(kind: .constraint, message: "a time outside the storable range was given")
        }
        return milliseconds
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}
