internal import Foundation
public import OTPCore

/// The domain's storage (`TwoFactorStore`) on SQLite, in the tables of schema version 2.
///
/// Promises:
/// - Every `transaction` body runs alone on the store's single writer, inside its own savepoint,
///   and the call returns only after the commit that holds its changes is durable.
/// - If the body throws, or if any storage operation inside it failed (even one the body caught
///   and ignored), none of the body's changes are kept and the call throws (fail closed,
///   docs/SECURITY.md §19).
/// - A stored row that cannot be turned back into a record (a phone number that no longer
///   parses, an unknown purpose, a value out of range) throws `StoreError` of kind `.corrupt`;
///   it is never skipped or guessed at. So does an event whose kind or outcome is not an
///   ``EventKind`` or ``EventOutcome`` spelling (a row written by a newer otpd, or edited by
///   hand): reading a page that holds it fails, naming the column but not the value, like every
///   other undecodable column.
/// - Times are kept as whole Unix milliseconds: a `Date` comes back rounded to the nearest
///   millisecond.
public final class SQLiteTwoFactorStore: TwoFactorStore {
    /// The lowest schema version (`PRAGMA user_version`) that has this store's tables.
    public static let minimumSchemaVersion = 3

    /// The SQLite store underneath: its `path` and `schemaVersion`, and `close()` at shutdown.
    public let store: SQLiteStore

    /// Uses `store`, which must have been opened with ``Migration/all`` (or a list that starts
    /// with it).
    ///
    /// - Throws: `StoreError` of kind `.other` when the store's schema is older than
    ///   ``minimumSchemaVersion``.
    public init(store: SQLiteStore) throws(StoreError) {
        guard store.schemaVersion >= Self.minimumSchemaVersion else {
            throw StoreError(
                kind: .other,
                message: "\(store.path) has schema version \(store.schemaVersion); the two-factor tables need "
                    + "\(Self.minimumSchemaVersion) or later")
        }
        self.store = store
    }

    /// Runs `body` in a transaction and returns its result once the transaction is durably
    /// committed. The transaction object is valid only while `body` runs; used later, every
    /// operation throws. If `body` throws, or any operation inside it threw, nothing of `body`
    /// is kept and the error is thrown here.
    ///
    /// A caller cancelled before the writer starts `body` gets `CancellationError` and `body`
    /// never runs; once `body` has started, it commits (or fails) as if nobody had cancelled
    /// (see `SQLiteStore.write`): a code used in a committed transaction stays used.
    public func transaction<T: Sendable>(
        _ body: @escaping @Sendable (any StoreTransaction) throws -> T
    ) async throws -> T {
        let (value, afterCommit) = try await store.write { connection in
            let transaction = SQLiteStoreTransaction(connection: connection)
            defer { transaction.end() }
            let value = try body(transaction)
            // A storage failure the body caught must still refuse the whole transaction.
            if let failure = transaction.failure { throw failure }
            return (value, transaction.afterCommitActions)
        }
        // `write` returned: the batch that holds this body's changes is committed.
        for action in afterCommit { action() }
        return value
    }
}

// MARK: - The transaction

/// The operations of one `SQLiteTwoFactorStore.transaction` body, on the writer's connection.
///
/// Valid only while the body runs: `end()` drops the connection, after which every operation
/// throws. Not `Sendable`: it lives on the writer thread for the length of one body.
final class SQLiteStoreTransaction: StoreTransaction {
    private var connection: SQLiteConnection?
    /// The first storage error raised by an operation of this transaction, if any. Once set,
    /// every later operation throws it again.
    private(set) var failure: StoreError?
    /// What `afterCommit` asked for, run by `SQLiteTwoFactorStore.transaction` after the commit.
    private(set) var afterCommitActions: [@Sendable () -> Void] = []

    init(connection: SQLiteConnection) {
        self.connection = connection
    }

    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        afterCommitActions.append(action)
    }

    /// Ends the transaction object's life; later operations throw.
    func end() {
        connection = nil
    }

    /// Runs `work` on the connection, remembering a failure so the transaction cannot commit.
    @discardableResult
    func perform<R>(_ work: (SQLiteConnection) throws(StoreError) -> R) throws(StoreError) -> R {
        if let failure { throw failure }
        guard let connection else {
            throw StoreError(kind: .other, message: "a store transaction was used after its body returned")
        }
        switch Result(catching: { () throws(StoreError) -> R in try work(connection) }) {
        case .success(let value):
            return value
        case .failure(let error):
            failure = error
            throw error
        }
    }

    // The operations, by role: SQLiteTwoFactorStore+Accounts, +Challenges, +BackupCodes,
    // +Budgets, +Events, +Deliveries.

    // MARK: Decoding

    static func decodeAccount(_ row: SQLRow) throws(StoreError) -> AccountRecord {
        var reader = RowReader(row, table: "accounts")
        var account = AccountRecord(id: try reader.text("id"), now: Date(timeIntervalSince1970: 0))
        account.phone = try reader.optionalPhone("phone")
        account.phoneVerified = try reader.bool("phone_verified")
        account.pendingPhone = try reader.optionalPhone("pending_phone")
        account.totpSecretSealed = try reader.optionalBlob("totp_secret")
        account.totpLastStep = try reader.optionalStep("totp_last_step")
        account.pendingTotpSealed = try reader.optionalBlob("pending_totp")
        account.pendingTotpExpiresAt = try reader.optionalDate("pending_totp_expires_at")
        account.preferred = try reader.optionalEnumeration("preferred", FactorKind.self)
        account.consecutiveFailures = try reader.count("consecutive_failures")
        account.lockCount = try reader.count("lock_count")
        account.lockedUntil = try reader.optionalDate("locked_until")
        account.createdAt = try reader.date("created_at")
        account.updatedAt = try reader.date("updated_at")
        return account
    }

    static func decodeEvent(_ row: SQLRow) throws(StoreError) -> EventRecord {
        var reader = RowReader(row, table: "events")
        return EventRecord(
            id: try reader.integer("id"),
            accountID: try reader.text("account_id"),
            kind: try reader.enumeration("kind", EventKind.self),
            outcome: try reader.enumeration("outcome", EventOutcome.self),
            detail: try reader.text("detail"),
            destinationMasked: try reader.text("destination_masked"),
            at: try reader.date("at"))
    }

    static func decodeSMSSend(_ row: SQLRow) throws(StoreError) -> SMSSendRecord {
        var reader = RowReader(row, table: "sms_sends")
        return SMSSendRecord(
            accountID: try reader.text("account_id"),
            phone: try reader.phone("phone"),
            purpose: try reader.enumeration("purpose", CodePurpose.self),
            challengeID: try reader.text("challenge_id"),
            at: try reader.date("at"))
    }

    static func decodeChallenge(_ row: SQLRow) throws(StoreError) -> ChallengeRecord {
        var reader = RowReader(row, table: "challenges")
        return ChallengeRecord(
            id: try reader.text("id"),
            accountID: try reader.text("account_id"),
            purpose: try reader.enumeration("purpose", CodePurpose.self),
            destination: try reader.phone("destination"),
            codeHash: try reader.blob("code_hash"),
            createdAt: try reader.date("created_at"),
            expiresAt: try reader.date("expires_at"),
            attemptsLeft: try reader.count("attempts_left"),
            state: try reader.enumeration("state", ChallengeState.self))
    }

    static func count(_ db: SQLiteConnection, _ sql: String, _ parameters: [SQLValue]) throws(StoreError)
        -> Int
    {
        guard let value = try db.scalar(sql, parameters), let count = Int(exactly: value), count >= 0 else {
            throw StoreError(kind: .other, message: "a count query returned no number")
        }
        return count
    }
}

// MARK: - Binding values

/// Text to bind. Refuses a NUL byte: SQLite would cut the text there, so "a\0b" would be stored
/// (and found) as "a".
func bind(_ text: String) throws(StoreError) -> SQLValue {
    guard !text.utf8.contains(0) else {
        throw StoreError(kind: .constraint, message: "text containing a NUL byte cannot be stored")
    }
    return .text(text)
}

func bind(_ text: String?) throws(StoreError) -> SQLValue {
    guard let text else { return .null }
    return try bind(text)
}

/// A blob to bind. Refuses an empty one: SQLite would store it as NULL, turning "set" into "not
/// set" on the way back.
func bind(_ bytes: [UInt8]?, column: String) throws(StoreError) -> SQLValue {
    guard let bytes else { return .null }
    guard !bytes.isEmpty else {
        throw StoreError(kind: .constraint, message: "\(column) cannot be an empty blob")
    }
    return .blob(bytes)
}

func bind(_ date: Date?) throws(StoreError) -> SQLValue {
    guard let date else { return .null }
    return .integer(try StoredTime.milliseconds(date))
}

/// The one conversion between `Date` and the stored INTEGER Unix milliseconds.
private enum StoredTime {
    /// The largest magnitude stored: 2^53 ms, where every millisecond is still exact in a Double
    /// (about 285 000 years; `Date.distantFuture` and `.distantPast` fit).
    static let limit: Int64 = 1 << 53

    /// `date` rounded to the nearest millisecond.
    static func milliseconds(_ date: Date) throws(StoreError) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded(.toNearestOrAwayFromZero)
        guard value.isFinite, let milliseconds = Int64(exactly: value), abs(milliseconds) <= limit else {
            throw StoreError(kind: .constraint, message: "a time outside the storable range was given")
        }
        return milliseconds
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}

// MARK: - Reading rows

/// Reads one row's columns by name, refusing (kind `.corrupt`) whatever does not decode or is
/// missing. Messages name the column, never the stored value (it may be a phone number).
///
/// Reading in the SELECT's order costs one comparison of names per column (the names are
/// resolved once per prepared statement; see `SQLColumns`), so the hot path pays next to
/// nothing for it.
struct RowReader {
    private let row: SQLRow
    private let table: String
    /// Where the next column is expected: just after the last one read.
    private var hint = 0

    init(_ row: SQLRow, table: String) {
        self.row = row
        self.table = table
    }

    private func corrupt(_ column: String, _ problem: String) -> StoreError {
        StoreError(kind: .corrupt, message: "\(table).\(column) \(problem)")
    }

    private mutating func next(_ column: String) throws(StoreError) -> SQLValue {
        guard let position = row.columns.position(of: column, hint: hint) else {
            throw corrupt(column, "is missing from the row")
        }
        hint = position + 1
        return row.values[position]
    }

    mutating func text(_ column: String) throws(StoreError) -> String {
        guard let text = try optionalText(column) else { throw corrupt(column, "is NULL") }
        return text
    }

    mutating func optionalText(_ column: String) throws(StoreError) -> String? {
        switch try next(column) {
        case .null: return nil
        case .text(let text): return text
        case .integer, .blob: throw corrupt(column, "is not text")
        }
    }

    mutating func integer(_ column: String) throws(StoreError) -> Int64 {
        guard let value = try optionalInteger(column) else { throw corrupt(column, "is NULL") }
        return value
    }

    mutating func optionalInteger(_ column: String) throws(StoreError) -> Int64? {
        switch try next(column) {
        case .null: return nil
        case .integer(let value): return value
        case .text, .blob: throw corrupt(column, "is not an integer")
        }
    }

    /// A non-negative count.
    mutating func count(_ column: String) throws(StoreError) -> Int {
        guard let value = Int(exactly: try integer(column)), value >= 0 else {
            throw corrupt(column, "is not a count")
        }
        return value
    }

    mutating func bool(_ column: String) throws(StoreError) -> Bool {
        switch try integer(column) {
        case 0: return false
        case 1: return true
        default: throw corrupt(column, "is not 0 or 1")
        }
    }

    /// A TOTP step: non-negative.
    mutating func optionalStep(_ column: String) throws(StoreError) -> UInt64? {
        guard let value = try optionalInteger(column) else { return nil }
        guard let step = UInt64(exactly: value) else { throw corrupt(column, "is negative") }
        return step
    }

    mutating func blob(_ column: String) throws(StoreError) -> [UInt8] {
        guard let bytes = try optionalBlob(column) else { throw corrupt(column, "is NULL") }
        return bytes
    }

    mutating func optionalBlob(_ column: String) throws(StoreError) -> [UInt8]? {
        switch try next(column) {
        case .null: return nil
        case .blob(let bytes) where !bytes.isEmpty: return bytes
        case .blob: throw corrupt(column, "is an empty blob")
        case .text, .integer: throw corrupt(column, "is not a blob")
        }
    }

    mutating func date(_ column: String) throws(StoreError) -> Date {
        guard let date = try optionalDate(column) else { throw corrupt(column, "is NULL") }
        return date
    }

    mutating func optionalDate(_ column: String) throws(StoreError) -> Date? {
        guard let milliseconds = try optionalInteger(column) else { return nil }
        guard abs(milliseconds) <= StoredTime.limit else { throw corrupt(column, "is not a storable time") }
        return StoredTime.date(milliseconds)
    }

    mutating func phone(_ column: String) throws(StoreError) -> PhoneNumber {
        guard let phone = try optionalPhone(column) else { throw corrupt(column, "is NULL") }
        return phone
    }

    /// A stored number must be in canonical E.164 form: it parses, and parsing does not change it.
    mutating func optionalPhone(_ column: String) throws(StoreError) -> PhoneNumber? {
        guard let text = try optionalText(column) else { return nil }
        guard let phone = try? PhoneNumber(parsing: text), phone.e164 == text else {
            throw corrupt(column, "is not an E.164 phone number")
        }
        return phone
    }

    mutating func enumeration<E: RawRepresentable>(_ column: String, _ type: E.Type) throws(StoreError) -> E
    where E.RawValue == String {
        guard let value = try optionalEnumeration(column, type) else { throw corrupt(column, "is NULL") }
        return value
    }

    mutating func optionalEnumeration<E: RawRepresentable>(_ column: String, _ type: E.Type) throws(StoreError) -> E?
    where E.RawValue == String {
        guard let text = try optionalText(column) else { return nil }
        guard let value = E(rawValue: text) else { throw corrupt(column, "holds an unknown value") }
        return value
    }
}
