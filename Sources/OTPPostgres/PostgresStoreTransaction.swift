import Foundation
import Logging
import OTPCore
import PostgresNIO

/// The operations of one `PostgresTwoFactorStore.transaction` body, on one leased connection
/// inside `BEGIN ISOLATION LEVEL SERIALIZABLE`.
///
/// The transaction begins at the body's first operation. When that operation names an account
/// (nearly every body starts by reading its account), the session first waits for that
/// account's advisory lock, and only then begins, so its snapshot is taken after the previous
/// holder committed. Transactions on one account then queue, on every daemon, instead of
/// running together and all but one failing to serialize and running again (200 guesses at
/// one account over three daemons: a few hundred milliseconds instead of timeouts). The lock is
/// not what makes the outcome correct (SERIALIZABLE does, lock or not); it makes it cheap.
///
/// Valid only while the body runs: afterwards every operation throws. The first storage error
/// is remembered, and the transaction is rolled back even if the body caught it. Not
/// `Sendable`: it lives on one store thread for the length of one body.
final class PostgresStoreTransaction: StoreTransaction {
    private var session: PostgresSession?
    private(set) var failure: (any Error)?
    /// Whether BEGIN was sent (at the first operation).
    private var begun = false
    /// The account whose advisory lock the session holds, released after COMMIT or ROLLBACK.
    private var lockedAccount: String?
    private(set) var afterCommitActions: [@Sendable () -> Void] = []

    private init(session: PostgresSession) {
        self.session = session
    }

    /// BEGIN, the body, COMMIT (or ROLLBACK when anything failed). Returns the body's value and
    /// what it asked to run after the commit. A storage failure inside the body wins over the
    /// body's own error, so a conflict the body caught is still seen (and retried) as one.
    static func run<T>(
        on connection: PostgresConnection, logger: Logger, _ body: (any StoreTransaction) throws -> T
    ) throws -> (T, [@Sendable () -> Void]) {
        let session = PostgresSession(connection: connection, logger: logger)
        let transaction = PostgresStoreTransaction(session: session)
        defer {
            transaction.session = nil
            if let account = transaction.lockedAccount, !connection.isClosed {
                // A session that cannot run this is gone, and its locks with it.
                _ = try? session.run(
                    "SELECT pg_advisory_unlock(\(accountLockClass), hashtext($1))", [.text(account)])
            }
        }
        do {
            let value = try body(transaction)
            if let failure = transaction.failure { throw failure }
            if transaction.begun { try session.run("COMMIT") }
            return (value, transaction.afterCommitActions)
        } catch {
            // A lost session was rolled back by the server (and takes no statement any more).
            if transaction.begun && !connection.isClosed { _ = try? session.run("ROLLBACK") }
            throw transaction.failure ?? error
        }
    }

    /// The first key of the accounts' advisory locks ("otpd" in ASCII); the second is the hash
    /// of the account id. Two-key locks never collide with the one-key locks of the cluster
    /// roles and migrations.
    static let accountLockClass: Int32 = 0x6f74_7064

    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        afterCommitActions.append(action)
    }

    /// Runs `work` on the session, remembering a failure so the transaction cannot commit.
    /// `account` names the account the operation is about: the first such operation takes its
    /// lock before the transaction begins.
    @discardableResult
    func perform<R>(account: String? = nil, _ work: (PostgresSession) throws -> R) throws -> R {
        if let failure { throw failure }
        guard let session else {
            throw PostgresStoreError(message: "a store transaction was used after its body returned")
        }
        do {
            if !begun {
                if let account {
                    try session.run("SELECT pg_advisory_lock(\(Self.accountLockClass), hashtext($1))", [.text(account)])
                    lockedAccount = account
                }
                try session.run("BEGIN ISOLATION LEVEL SERIALIZABLE")
                begun = true
            }
            return try work(session)
        } catch {
            failure = error
            throw error
        }
    }

    // MARK: Binding

    private static func text(_ value: String?) -> PGValue { value.map { .text($0) } ?? .null }
    private static func time(_ date: Date?) throws -> PGValue {
        guard let date else { return .null }
        return .integer(try StoredTime.milliseconds(date))
    }
    private static func bytes(_ value: [UInt8]?, column: String) throws -> PGValue {
        guard let value else { return .null }
        guard !value.isEmpty else {
            throw PostgresStoreError(kind: .constraint, message: "\(column) cannot be an empty blob")
        }
        return .bytes(value)
    }
    private static func integer(_ value: Int?) -> PGValue { value.map { .integer(Int64($0)) } ?? .null }

    // MARK: Accounts

    private static let accountColumns = """
        id, phone, phone_verified, pending_phone, totp_secret, totp_last_step, pending_totp,
        pending_totp_expires_at, preferred, consecutive_failures, lock_count, locked_until, created_at, updated_at
        """

    func account(_ id: String) throws -> AccountRecord? {
        try perform(account: id) { db in
            try db.rows("SELECT \(Self.accountColumns) FROM accounts WHERE id = $1", [.text(id)]).first.map(
                Self.decodeAccount)
        }
    }

    func saveAccount(_ account: AccountRecord) throws {
        try perform(account: account.id) { db in
            var step = PGValue.null
            if let value = account.totpLastStep {
                guard let stored = Int64(exactly: value) else {
                    throw PostgresStoreError(kind: .constraint, message: "accounts.totp_last_step is out of range")
                }
                step = .integer(stored)
            }
            try db.run(
                """
                INSERT INTO accounts (\(Self.accountColumns))
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                ON CONFLICT (id) DO UPDATE SET
                    phone = $2, phone_verified = $3, pending_phone = $4, totp_secret = $5, totp_last_step = $6,
                    pending_totp = $7, pending_totp_expires_at = $8, preferred = $9, consecutive_failures = $10,
                    lock_count = $11, locked_until = $12, created_at = $13, updated_at = $14
                """,
                [
                    .text(account.id), Self.text(account.phone?.e164), .boolean(account.phoneVerified),
                    Self.text(account.pendingPhone?.e164),
                    try Self.bytes(account.totpSecretSealed, column: "accounts.totp_secret"), step,
                    try Self.bytes(account.pendingTotpSealed, column: "accounts.pending_totp"),
                    try Self.time(account.pendingTotpExpiresAt), Self.text(account.preferred?.rawValue),
                    .integer(Int64(account.consecutiveFailures)), .integer(Int64(account.lockCount)),
                    try Self.time(account.lockedUntil), try Self.time(account.createdAt),
                    try Self.time(account.updatedAt),
                ])
        }
    }

    func deleteAccountData(_ id: String) throws {
        try perform(account: id) { db in
            for table in ["challenges", "proofs", "backup_codes"] {
                try db.run("DELETE FROM \(table) WHERE account_id = $1", [.text(id)])
            }
            try db.run("DELETE FROM accounts WHERE id = $1", [.text(id)])
        }
    }

    /// One of 64 counters, picked at random, so that attempts on unknown accounts do not all
    /// conflict on one row.
    func countUnknownAccountAttempt() throws {
        try perform { db in
            try db.run(
                "UPDATE unknown_account_attempts SET attempts = attempts + 1 WHERE shard = $1",
                [.integer(Int64.random(in: 0..<64))])
        }
    }

    private static func decodeAccount(_ row: PostgresRow) throws -> AccountRecord {
        let reader = PGRowReader(row, table: "accounts")
        var account = AccountRecord(id: try reader.text("id"), now: Date(timeIntervalSince1970: 0))
        account.phone = try phone(reader, "phone")
        account.phoneVerified = try reader.bool("phone_verified")
        account.pendingPhone = try phone(reader, "pending_phone")
        account.totpSecretSealed = try reader.optionalBytes("totp_secret")
        account.totpLastStep = try reader.optionalStep("totp_last_step")
        account.pendingTotpSealed = try reader.optionalBytes("pending_totp")
        account.pendingTotpExpiresAt = try reader.optionalDate("pending_totp_expires_at")
        account.preferred = try enumeration(reader, "accounts", "preferred", FactorKind.self)
        account.consecutiveFailures = try reader.count("consecutive_failures")
        account.lockCount = try reader.count("lock_count")
        account.lockedUntil = try reader.optionalDate("locked_until")
        account.createdAt = try reader.date("created_at")
        account.updatedAt = try reader.date("updated_at")
        return account
    }

    // MARK: Challenges and proofs

    private static let challengeColumns =
        "id, account_id, purpose, destination, code_hash, created_at, expires_at, attempts_left, state"

    func insertChallenge(_ challenge: ChallengeRecord) throws {
        try perform(account: challenge.accountID) { db in
            try db.run(
                "INSERT INTO challenges (\(Self.challengeColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [
                    .text(challenge.id), .text(challenge.accountID), .text(challenge.purpose.rawValue),
                    .text(challenge.destination.e164),
                    try Self.bytes(challenge.codeHash, column: "challenges.code_hash"),
                    try Self.time(challenge.createdAt), try Self.time(challenge.expiresAt),
                    .integer(Int64(challenge.attemptsLeft)), .text(challenge.state.rawValue),
                ])
        }
    }

    func challenge(id: String) throws -> ChallengeRecord? {
        try perform { db in
            try db.rows("SELECT \(Self.challengeColumns) FROM challenges WHERE id = $1", [.text(id)]).first.map {
                row in
                let reader = PGRowReader(row, table: "challenges")
                guard
                    let purpose = try Self.enumeration(reader, "challenges", "purpose", CodePurpose.self),
                    let destination = try Self.phone(reader, "destination"),
                    let state = try Self.enumeration(reader, "challenges", "state", ChallengeState.self)
                else { throw PostgresStoreError.corrupt("challenges", "purpose, destination or state", "is NULL") }
                return ChallengeRecord(
                    id: try reader.text("id"), accountID: try reader.text("account_id"), purpose: purpose,
                    destination: destination, codeHash: try reader.bytes("code_hash"),
                    createdAt: try reader.date("created_at"), expiresAt: try reader.date("expires_at"),
                    attemptsLeft: try reader.count("attempts_left"), state: state)
            }
        }
    }

    func updateChallenge(id: String, state: ChallengeState, attemptsLeft: Int) throws {
        try perform { db in
            let changed = try db.run(
                "UPDATE challenges SET state = $1, attempts_left = $2 WHERE id = $3",
                [.text(state.rawValue), .integer(Int64(attemptsLeft)), .text(id)])
            guard changed == 1 else { throw PostgresStoreError(message: "no challenge to update with the given id") }
        }
    }

    func voidActiveChallenges(accountID: String, purpose: CodePurpose?) throws {
        try perform(account: accountID) { db in
            if let purpose {
                try db.run(
                    """
                    UPDATE challenges SET state = 'voided'
                    WHERE account_id = $1 AND purpose = $2 AND state = 'active'
                    """, [.text(accountID), .text(purpose.rawValue)])
            } else {
                try db.run(
                    "UPDATE challenges SET state = 'voided' WHERE account_id = $1 AND state = 'active'",
                    [.text(accountID)])
            }
        }
    }

    func deleteChallenges(expiredBefore: Date, limit: Int) throws -> Int {
        try perform { db in
            try db.run(
                """
                DELETE FROM challenges WHERE id IN
                    (SELECT id FROM challenges WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)
                """, [try Self.time(expiredBefore), .integer(Int64(max(0, limit)))])
        }
    }

    func insertProof(_ proof: ProofRecord) throws {
        try perform(account: proof.accountID) { db in
            try db.run(
                "INSERT INTO proofs (token_hash, account_id, purpose, expires_at) VALUES ($1, $2, $3, $4)",
                [
                    try Self.bytes(proof.tokenHash, column: "proofs.token_hash"), .text(proof.accountID),
                    .text(proof.purpose.rawValue), try Self.time(proof.expiresAt),
                ])
        }
    }

    /// One statement deletes and returns the row: of two transactions taking the same proof,
    /// the second waits for the first and then finds nothing (or conflicts and runs again).
    func takeProof(tokenHash: [UInt8]) throws -> ProofRecord? {
        try perform { db in
            guard !tokenHash.isEmpty else { return nil }
            return try db.rows(
                "DELETE FROM proofs WHERE token_hash = $1 RETURNING token_hash, account_id, purpose, expires_at",
                [.bytes(tokenHash)]
            ).first.map { row in
                let reader = PGRowReader(row, table: "proofs")
                guard let purpose = try Self.enumeration(reader, "proofs", "purpose", CodePurpose.self) else {
                    throw PostgresStoreError.corrupt("proofs", "purpose", "is NULL")
                }
                return ProofRecord(
                    tokenHash: try reader.bytes("token_hash"), accountID: try reader.text("account_id"),
                    purpose: purpose, expiresAt: try reader.date("expires_at"))
            }
        }
    }

    func deleteProofs(expiredBefore: Date, limit: Int) throws -> Int {
        try perform { db in
            try db.run(
                """
                DELETE FROM proofs WHERE token_hash IN
                    (SELECT token_hash FROM proofs WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)
                """, [try Self.time(expiredBefore), .integer(Int64(max(0, limit)))])
        }
    }

    // MARK: Backup codes

    func replaceBackupCodes(accountID: String, hashes: [[UInt8]], at: Date) throws {
        try perform(account: accountID) { db in
            try db.run("DELETE FROM backup_codes WHERE account_id = $1", [.text(accountID)])
            for hash in hashes {
                try db.run(
                    "INSERT INTO backup_codes (account_id, code_hash, created_at, used_at) VALUES ($1, $2, $3, NULL)",
                    [.text(accountID), try Self.bytes(hash, column: "backup_codes.code_hash"), try Self.time(at)])
            }
        }
    }

    /// The conditional update that decides between racing redemptions (docs/SECURITY.md §7): a
    /// second transaction updating the same row waits for the first, then conflicts and runs
    /// again, and then finds the code used.
    func consumeBackupCode(accountID: String, hash: [UInt8], at: Date) throws -> Bool {
        try perform(account: accountID) { db in
            guard !hash.isEmpty else { return false }
            return try db.run(
                """
                UPDATE backup_codes SET used_at = $1
                WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL
                """, [try Self.time(at), .text(accountID), .bytes(hash)]) == 1
        }
    }

    func remainingBackupCodes(accountID: String) throws -> Int {
        try perform(account: accountID) { db in
            try Self.count(
                db, "SELECT count(*) FROM backup_codes WHERE account_id = $1 AND used_at IS NULL", [.text(accountID)])
        }
    }

    // MARK: SMS budgets

    func smsSends(accountID: String, since: Date) throws -> [SMSSendRecord] {
        try perform(account: accountID) { db in
            try db.rows(
                """
                SELECT account_id, phone, purpose, challenge_id, at FROM sms_sends
                WHERE account_id = $1 AND at >= $2 ORDER BY at DESC, id DESC
                """, [.text(accountID), try Self.time(since)]
            ).map { row in
                let reader = PGRowReader(row, table: "sms_sends")
                guard let phone = try Self.phone(reader, "phone"),
                    let purpose = try Self.enumeration(reader, "sms_sends", "purpose", CodePurpose.self)
                else { throw PostgresStoreError.corrupt("sms_sends", "phone or purpose", "is NULL") }
                return SMSSendRecord(
                    accountID: try reader.text("account_id"), phone: phone, purpose: purpose,
                    challengeID: try reader.text("challenge_id"), at: try reader.date("at"))
            }
        }
    }

    func countSMSSends(phone: PhoneNumber, pool: SMSPool, since: Date, limit: Int) throws -> Int {
        try perform { db in
            try Self.count(
                db,
                """
                SELECT count(*) FROM (SELECT 1 FROM sms_sends
                WHERE phone = $1 AND at >= $2 AND (purpose = 'verify_phone') = $3 LIMIT $4) AS s
                """,
                [
                    .text(phone.e164), try Self.time(since), .boolean(pool == .verification),
                    .integer(Int64(max(0, limit))),
                ])
        }
    }

    func countSMSSends(countryCallingCode: String, since: Date, limit: Int) throws -> Int {
        try perform { db in
            try Self.count(
                db, "SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE country_code = $1 AND at >= $2 LIMIT $3) AS s",
                [.text(countryCallingCode), try Self.time(since), .integer(Int64(max(0, limit)))])
        }
    }

    func countAllSMSSends(since: Date, limit: Int) throws -> Int {
        try perform { db in
            try Self.count(
                db, "SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE at >= $1 LIMIT $2) AS s",
                [try Self.time(since), .integer(Int64(max(0, limit)))])
        }
    }

    func recordSMSSend(_ send: SMSSendRecord) throws {
        try perform { db in
            try db.run(
                """
                INSERT INTO sms_sends (account_id, phone, country_code, purpose, challenge_id, at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                [
                    .text(send.accountID), .text(send.phone.e164), .text(send.phone.countryCallingCode),
                    .text(send.purpose.rawValue), .text(send.challengeID), try Self.time(send.at),
                ])
        }
    }

    func pruneSMSSends(before: Date) throws {
        try perform { db in
            try db.run("DELETE FROM sms_sends WHERE at < $1", [try Self.time(before)])
        }
    }

    // MARK: The SMS pumping breaker

    private static let breakerColumns = "scope, country_code, tripped_until, exempt, counting_since, trips, updated_at"

    func smsBreaker(scope: SMSBreakerScope) throws -> SMSBreakerRecord? {
        try perform { db in
            try db.rows("SELECT \(Self.breakerColumns) FROM sms_breakers WHERE scope = $1", [.text(scope.prefix)])
                .first.map(Self.decodeBreaker)
        }
    }

    func saveSMSBreaker(_ record: SMSBreakerRecord) throws {
        try perform { db in
            try db.run(
                """
                INSERT INTO sms_breakers (\(Self.breakerColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (scope) DO UPDATE SET
                    tripped_until = $3, exempt = $4, counting_since = $5, trips = $6, updated_at = $7
                """,
                [
                    .text(record.scope.prefix), .text(record.scope.countryCallingCode),
                    try Self.time(record.trippedUntil), .boolean(record.exempt), try Self.time(record.countingSince),
                    .integer(Int64(max(0, record.trips))), try Self.time(record.updatedAt),
                ])
        }
    }

    func smsBreakers(limit: Int) throws -> [SMSBreakerRecord] {
        try perform { db in
            try db.rows(
                "SELECT \(Self.breakerColumns) FROM sms_breakers ORDER BY scope COLLATE \"C\" LIMIT $1",
                [.integer(Int64(max(0, limit)))]
            ).map(Self.decodeBreaker)
        }
    }

    /// The texts the breaker judges (the SQLite store's `SQL.breakerTexts`): to an account, not
    /// refused by the provider, and verified or older than the decision time (`parameter`).
    private static func breakerTexts(decidedBefore parameter: String) -> String {
        """
        s.account_id <> '' AND s.purpose = 'verify_phone' AND coalesce(c.state, '') <> 'failed'
            AND (c.state = 'used' OR s.at <= \(parameter))
        """
    }

    func countVerificationTexts(scope: SMSBreakerScope, since: Date, decidedBefore: Date) throws -> SMSBreakerCount {
        try perform { db in
            guard
                let row = try db.rows(
                    """
                    SELECT count(*) AS texts, count(*) FILTER (WHERE c.state = 'used') AS verified
                    FROM sms_sends AS s LEFT JOIN challenges AS c ON c.id = s.challenge_id
                    WHERE s.country_code = $1 AND s.at >= $2 AND s.phone COLLATE "C" >= $3
                        AND s.phone COLLATE "C" < $4 AND \(Self.breakerTexts(decidedBefore: "$5"))
                    """,
                    [
                        .text(scope.countryCallingCode), try Self.time(since), .text(scope.prefix),
                        .text(scope.upperBound), try Self.time(decidedBefore),
                    ]
                ).first
            else { return SMSBreakerCount(texts: 0, verified: 0) }
            let reader = PGRowReader(row, table: "sms_sends")
            return SMSBreakerCount(texts: try reader.count("texts"), verified: try reader.count("verified"))
        }
    }

    func verificationTexts(since: Date, decidedBefore: Date, limit: Int) throws -> [SMSBreakerText] {
        try perform { db in
            try db.rows(
                """
                SELECT s.phone AS phone, s.at AS at, coalesce(c.state = 'used', false) AS verified
                FROM sms_sends AS s LEFT JOIN challenges AS c ON c.id = s.challenge_id
                WHERE s.at >= $1 AND \(Self.breakerTexts(decidedBefore: "$2"))
                ORDER BY s.at DESC LIMIT $3
                """, [try Self.time(since), try Self.time(decidedBefore), .integer(Int64(max(0, limit)))]
            ).map { row in
                let reader = PGRowReader(row, table: "sms_sends")
                guard let phone = try Self.phone(reader, "phone") else {
                    throw PostgresStoreError.corrupt("sms_sends", "phone", "is NULL")
                }
                return SMSBreakerText(phone: phone, at: try reader.date("at"), verified: try reader.bool("verified"))
            }
        }
    }

    private static func decodeBreaker(_ row: PostgresRow) throws -> SMSBreakerRecord {
        let reader = PGRowReader(row, table: "sms_breakers")
        return SMSBreakerRecord(
            scope: SMSBreakerScope(
                storedPrefix: try reader.text("scope"), countryCallingCode: try reader.text("country_code")),
            trippedUntil: try reader.optionalDate("tripped_until"), exempt: try reader.bool("exempt"),
            countingSince: try reader.date("counting_since"), trips: try reader.count("trips"),
            updatedAt: try reader.date("updated_at"))
    }

    // MARK: Events

    private static let eventColumns = "id, account_id, kind, outcome, detail, destination_masked, at"

    @discardableResult
    func appendEvent(_ event: EventRecord) throws -> Int64 {
        try perform { db in
            guard
                let row = try db.rows(
                    """
                    INSERT INTO events (account_id, kind, outcome, detail, destination_masked, at)
                    VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
                    """,
                    [
                        .text(event.accountID), .text(event.kind.rawValue), .text(event.outcome.rawValue),
                        .text(event.detail), .text(event.destinationMasked), try Self.time(event.at),
                    ]
                ).first
            else { throw PostgresStoreError(message: "an event was inserted without an id") }
            return try PGRowReader(row, table: "events").integer("id")
        }
    }

    func events(accountID: String?, beforeID: Int64?, limit: Int) throws -> [EventRecord] {
        try perform { db in
            try Self.newestFirst(
                db, "SELECT \(Self.eventColumns) FROM events", accountID: accountID, beforeID: beforeID, limit: limit
            ).map(Self.decodeEvent)
        }
    }

    /// Every transaction with a number below the snapshot's `xmin` has ended, and this
    /// transaction's snapshot sees those that committed; every transaction still running or yet
    /// to start has a number at or above it. So the events of transactions below `xmin` are all
    /// here, and no event can later appear below `(xmin, 0)`.
    func notificationHorizon() throws -> EventPosition {
        try perform { db in
            guard let row = try db.rows("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin").first,
                let xmin = UInt64(try PGRowReader(row, table: "pg_current_snapshot").text("xmin"))
            else { throw PostgresStoreError(message: "PostgreSQL gave no snapshot horizon") }
            return EventPosition(transaction: xmin, id: 0)
        }
    }

    func eventsToNotify(
        after: EventPosition, through: EventPosition, kinds: Set<EventKind>, window: Int, limit: Int
    ) throws -> NotificationPage {
        try perform { db in
            // The window: the next `window` events in (xid, id) order, of any kind.
            let bounds: [PGValue] = [
                .text(String(after.transaction)), .integer(after.id), .text(String(through.transaction)),
                .integer(through.id), .integer(Int64(max(1, window))),
            ]
            let windowSQL = """
                SELECT xid, id FROM events
                WHERE (xid, id) > ($1::text::xid8, $2) AND (xid, id) <= ($3::text::xid8, $4)
                ORDER BY xid, id LIMIT $5
                """
            var lookedThrough = through
            if let last = try db.rows(
                "SELECT xid::text AS xid, id FROM (\(windowSQL)) AS w ORDER BY xid DESC, id DESC LIMIT 1", bounds
            ).first {
                let reader = PGRowReader(last, table: "events")
                let count = try Self.count(db, "SELECT count(*) FROM (\(windowSQL)) AS w", bounds)
                if count >= max(1, window) {
                    lookedThrough = EventPosition(
                        transaction: UInt64(try reader.text("xid")) ?? through.transaction, id: try reader.integer("id")
                    )
                }
            }
            guard !kinds.isEmpty else {
                return NotificationPage(events: [], positions: [], lookedThrough: lookedThrough)
            }
            let rows = try db.rows(
                """
                SELECT e.xid::text AS xid, e.id, e.account_id, e.kind, e.outcome, e.detail, e.destination_masked, e.at
                FROM events AS e JOIN (\(windowSQL)) AS w ON w.id = e.id
                WHERE e.kind = ANY($6::text[]) ORDER BY e.xid, e.id LIMIT $7
                """,
                bounds + [
                    .text("{" + kinds.map(\.rawValue).sorted().joined(separator: ",") + "}"),
                    .integer(Int64(min(max(limit, 1), 1000))),
                ])
            var events: [EventRecord] = []
            var positions: [EventPosition] = []
            for row in rows {
                let event = try Self.decodeEvent(row)
                guard let xid = UInt64(try PGRowReader(row, table: "events").text("xid")) else {
                    throw PostgresStoreError.corrupt("events", "xid", "is not a transaction number")
                }
                events.append(event)
                positions.append(EventPosition(transaction: xid, id: event.id))
            }
            return NotificationPage(events: events, positions: positions, lookedThrough: lookedThrough)
        }
    }

    func countRecentEvents(accountID: String, kind: EventKind, since: Date, window: Int) throws -> Int {
        try perform(account: accountID) { db in
            try Self.count(
                db,
                """
                SELECT count(*) FROM (SELECT kind, at FROM events WHERE account_id = $1 ORDER BY id DESC LIMIT $2) AS newest
                    WHERE kind = $3 AND at >= $4
                """, [.text(accountID), .integer(Int64(max(1, window))), .text(kind.rawValue), try Self.time(since)])
        }
    }

    func lastEventID() throws -> Int64 {
        try perform { db in
            guard let row = try db.rows("SELECT coalesce(max(id), 0)::bigint AS id FROM events").first else { return 0 }
            return try PGRowReader(row, table: "events").integer("id")
        }
    }

    func notificationCursor() throws -> EventPosition? {
        try perform { db in
            guard let text = try Self.meta(db, "notify_cursor") else { return nil }
            guard let position = EventPosition(text) else {
                throw PostgresStoreError.corrupt("daemon_meta", "notify_cursor", "is not an event position")
            }
            return position
        }
    }

    func setNotificationCursor(_ position: EventPosition) throws {
        try perform { db in try Self.setMeta(db, "notify_cursor", position.description) }
    }

    func deleteEvents(before: Date, limit: Int) throws -> Int {
        try perform { db in
            try db.run(
                """
                DELETE FROM events WHERE id IN
                    (SELECT id FROM (SELECT id, at FROM events ORDER BY id LIMIT $1) AS oldest WHERE at < $2)
                """, [.integer(Int64(max(0, limit))), try Self.time(before)])
        }
    }

    private static func decodeEvent(_ row: PostgresRow) throws -> EventRecord {
        let reader = PGRowReader(row, table: "events")
        guard let kind = try enumeration(reader, "events", "kind", EventKind.self),
            let outcome = try enumeration(reader, "events", "outcome", EventOutcome.self)
        else { throw PostgresStoreError.corrupt("events", "kind or outcome", "is NULL") }
        return EventRecord(
            id: try reader.integer("id"), accountID: try reader.text("account_id"), kind: kind, outcome: outcome,
            detail: try reader.text("detail"), destinationMasked: try reader.text("destination_masked"),
            at: try reader.date("at"))
    }

    // MARK: Deliveries

    private static let deliveryColumns = """
        id, account_id, challenge_id, purpose, destination_masked, provider, message_sid, status, error_code,
        attempts, created_at, updated_at
        """

    @discardableResult
    func insertDelivery(_ delivery: DeliveryRecord) throws -> Int64 {
        try perform { db in
            guard
                let row = try db.rows(
                    """
                    INSERT INTO deliveries (account_id, challenge_id, purpose, destination_masked, provider,
                        message_sid, status, error_code, attempts, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id
                    """,
                    [
                        .text(delivery.accountID), .text(delivery.challengeID), .text(delivery.purpose),
                        .text(delivery.destinationMasked), .text(delivery.provider), .text(delivery.messageSID),
                        .text(delivery.status), Self.integer(delivery.errorCode),
                        .integer(Int64(max(0, delivery.attempts))), try Self.time(delivery.createdAt),
                        try Self.time(delivery.updatedAt),
                    ]
                ).first
            else { throw PostgresStoreError(message: "a delivery was inserted without an id") }
            return try PGRowReader(row, table: "deliveries").integer("id")
        }
    }

    func delivery(messageSID: String) throws -> DeliveryRecord? {
        guard !messageSID.isEmpty else { return nil }
        return try perform { db in
            try db.rows(
                """
                SELECT \(Self.deliveryColumns) FROM deliveries
                WHERE message_sid = $1 AND message_sid <> '' ORDER BY id DESC LIMIT 1
                """, [.text(messageSID)]
            ).first.map(Self.decodeDelivery)
        }
    }

    func updateDelivery(id: Int64, status: String, errorCode: Int?, at: Date) throws {
        try perform { db in
            let changed = try db.run(
                "UPDATE deliveries SET status = $1, error_code = $2, updated_at = $3 WHERE id = $4",
                [.text(status), Self.integer(errorCode), try Self.time(at), .integer(id)])
            guard changed == 1 else { throw PostgresStoreError(message: "delivery \(id) does not exist") }
        }
    }

    func deliveries(accountID: String?, beforeID: Int64?, limit: Int) throws -> [DeliveryRecord] {
        try perform { db in
            try Self.newestFirst(
                db, "SELECT \(Self.deliveryColumns) FROM deliveries", accountID: accountID, beforeID: beforeID,
                limit: limit
            ).map(Self.decodeDelivery)
        }
    }

    func markUndeliverable(phone: PhoneNumber, errorCode: Int?, at: Date) throws {
        try perform { db in
            try db.run(
                """
                INSERT INTO undeliverable_numbers (phone, error_code, at) VALUES ($1, $2, $3)
                ON CONFLICT (phone) DO UPDATE SET error_code = excluded.error_code, at = excluded.at
                """, [.text(phone.e164), Self.integer(errorCode), try Self.time(at)])
        }
    }

    func undeliverable(phone: PhoneNumber) throws -> (at: Date, errorCode: Int?)? {
        try perform { db in
            guard
                let row = try db.rows(
                    "SELECT at, error_code FROM undeliverable_numbers WHERE phone = $1", [.text(phone.e164)]
                ).first
            else { return nil }
            let reader = PGRowReader(row, table: "undeliverable_numbers")
            return (try reader.date("at"), try reader.optionalInteger("error_code").map { Int($0) })
        }
    }

    func deleteDeliveries(before: Date, limit: Int) throws -> Int {
        try perform { db in
            try db.run(
                """
                DELETE FROM deliveries WHERE id IN
                    (SELECT id FROM (SELECT id, created_at FROM deliveries ORDER BY id LIMIT $1) AS oldest
                     WHERE created_at < $2)
                """, [.integer(Int64(max(0, limit))), try Self.time(before)])
        }
    }

    private static func decodeDelivery(_ row: PostgresRow) throws -> DeliveryRecord {
        let reader = PGRowReader(row, table: "deliveries")
        return DeliveryRecord(
            id: try reader.integer("id"), accountID: try reader.text("account_id"),
            challengeID: try reader.text("challenge_id"), purpose: try reader.text("purpose"),
            destinationMasked: try reader.text("destination_masked"), provider: try reader.text("provider"),
            messageSID: try reader.text("message_sid"), status: try reader.text("status"),
            errorCode: try reader.optionalInteger("error_code").map { Int($0) }, attempts: try reader.count("attempts"),
            createdAt: try reader.date("created_at"), updatedAt: try reader.date("updated_at"))
    }

    // MARK: Shared helpers

    /// Rows of `select` (a table with `id` and `account_id`) newest first: of one account or
    /// all, with ids below `beforeID`; `limit` is clamped to 1...1000.
    private static func newestFirst(
        _ db: PostgresSession, _ select: String, accountID: String?, beforeID: Int64?, limit: Int
    ) throws -> [PostgresRow] {
        let limit = PGValue.integer(Int64(min(max(limit, 1), 1000)))
        switch (accountID, beforeID) {
        case (let accountID?, let beforeID?):
            return try db.rows(
                select + " WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                [.text(accountID), .integer(beforeID), limit])
        case (let accountID?, nil):
            return try db.rows(select + " WHERE account_id = $1 ORDER BY id DESC LIMIT $2", [.text(accountID), limit])
        case (nil, let beforeID?):
            return try db.rows(select + " WHERE id < $1 ORDER BY id DESC LIMIT $2", [.integer(beforeID), limit])
        case (nil, nil):
            return try db.rows(select + " ORDER BY id DESC LIMIT $1", [limit])
        }
    }

    static func count(_ db: PostgresSession, _ sql: String, _ values: [PGValue]) throws -> Int {
        guard let row = try db.rows(sql, values).first else {
            throw PostgresStoreError(message: "a count query returned no row")
        }
        let reader = row.makeRandomAccess()
        guard reader.count == 1, let value = try? reader[0].decode(Int64.self), let count = Int(exactly: value),
            count >= 0
        else { throw PostgresStoreError(message: "a count query returned no number") }
        return count
    }

    static func meta(_ db: PostgresSession, _ key: String) throws -> String? {
        guard let row = try db.rows("SELECT value FROM daemon_meta WHERE key = $1", [.text(key)]).first else {
            return nil
        }
        return try PGRowReader(row, table: "daemon_meta").text("value")
    }

    static func setMeta(_ db: PostgresSession, _ key: String, _ value: String) throws {
        try db.run(
            """
            INSERT INTO daemon_meta (key, value) VALUES ($1, $2)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """, [.text(key), .text(value)])
    }

    /// A stored number must be canonical E.164: it parses, and parsing does not change it.
    private static func phone(_ reader: PGRowReader, _ column: String) throws -> PhoneNumber? {
        guard let text = try reader.optionalText(column) else { return nil }
        guard let phone = try? PhoneNumber(parsing: text), phone.e164 == text else {
            throw PostgresStoreError.corrupt("", column, "is not an E.164 phone number")
        }
        return phone
    }

    private static func enumeration<E: RawRepresentable>(
        _ reader: PGRowReader, _ table: String, _ column: String, _ type: E.Type
    ) throws -> E? where E.RawValue == String {
        guard let text = try reader.optionalText(column) else { return nil }
        guard let value = E(rawValue: text) else {
            throw PostgresStoreError.corrupt(table, column, "is not a known \(E.self)")
        }
        return value
    }
}
