internal import OTPCore

/// Every SQL statement of the two-factor store (`SQLiteTwoFactorStore` and its transaction) and
/// of the daemon's metadata (`SQLiteStore+DaemonMeta`): fixed texts only, every value is bound.
///
/// One place so that `StatementPlanTests` can check the plan of each statement SQLite will run:
/// ``all`` lists them, ``hotPath`` the ones every `Verify`, `StartChallenge` and proof runs, and
/// ``boundedScans`` the few that may walk a table (in id order, under a `LIMIT`). A statement
/// built at run time (an `IN` list, a `WHERE` shape) is built here, once, for every shape.
enum SQL {
    // MARK: Accounts

    static let accountColumns = """
        id, phone, phone_verified, pending_phone, totp_secret, totp_last_step, pending_totp,
        pending_totp_expires_at, preferred, consecutive_failures, lock_count, locked_until, created_at, updated_at
        """
    static let selectAccount = "SELECT \(accountColumns) FROM accounts WHERE id = ?"
    static let insertAccount = """
        INSERT INTO accounts (\(accountColumns)) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
        """
    static let updateAccount = """
        UPDATE accounts SET
            phone = ?2, phone_verified = ?3, pending_phone = ?4, totp_secret = ?5, totp_last_step = ?6,
            pending_totp = ?7, pending_totp_expires_at = ?8, preferred = ?9, consecutive_failures = ?10,
            lock_count = ?11, locked_until = ?12, created_at = ?13, updated_at = ?14
        WHERE id = ?1
        """
    static let deleteAccount = "DELETE FROM accounts WHERE id = ?"
    static let deleteAccountChallenges = "DELETE FROM challenges WHERE account_id = ?"
    static let deleteAccountProofs = "DELETE FROM proofs WHERE account_id = ?"

    // MARK: Daemon metadata

    static let selectMeta = "SELECT value FROM daemon_meta WHERE key = ?"
    static let updateMeta = "UPDATE daemon_meta SET value = ? WHERE key = ?"
    static let insertMeta = "INSERT INTO daemon_meta (key, value) VALUES (?, ?)"
    static let incrementUnknownAccountAttempts = """
        UPDATE daemon_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'unknown_account_attempts'
        """

    // MARK: Challenges and proofs

    static let insertChallenge = """
        INSERT INTO challenges
            (id, account_id, purpose, destination, code_hash, created_at, expires_at, attempts_left, state)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    static let selectChallenge = """
        SELECT id, account_id, purpose, destination, code_hash, created_at, expires_at, attempts_left, state
        FROM challenges WHERE id = ?
        """
    static let updateChallenge = "UPDATE challenges SET state = ?, attempts_left = ? WHERE id = ?"
    static let voidChallengesOfPurpose =
        "UPDATE challenges SET state = 'voided' WHERE account_id = ? AND purpose = ? AND state = 'active'"
    static let voidChallenges = "UPDATE challenges SET state = 'voided' WHERE account_id = ? AND state = 'active'"
    static let deleteExpiredChallenges = """
        DELETE FROM challenges WHERE rowid IN
            (SELECT rowid FROM challenges WHERE expires_at < ? ORDER BY expires_at LIMIT ?)
        """

    static let insertProof = "INSERT INTO proofs (token_hash, account_id, purpose, expires_at) VALUES (?, ?, ?, ?)"
    static let selectProof = "SELECT token_hash, account_id, purpose, expires_at FROM proofs WHERE token_hash = ?"
    static let deleteProof = "DELETE FROM proofs WHERE token_hash = ?"
    static let deleteExpiredProofs = """
        DELETE FROM proofs WHERE rowid IN (SELECT rowid FROM proofs WHERE expires_at < ? ORDER BY expires_at LIMIT ?)
        """

    // MARK: Backup codes

    static let deleteBackupCodes = "DELETE FROM backup_codes WHERE account_id = ?"
    static let insertBackupCode =
        "INSERT INTO backup_codes (account_id, code_hash, created_at, used_at) VALUES (?, ?, ?, NULL)"
    /// The one conditional update that decides between racing redemptions (docs/SECURITY.md §7).
    static let consumeBackupCode =
        "UPDATE backup_codes SET used_at = ? WHERE account_id = ? AND code_hash = ? AND used_at IS NULL"
    static let countUnusedBackupCodes = "SELECT count(*) FROM backup_codes WHERE account_id = ? AND used_at IS NULL"

    // MARK: SMS budgets

    static let selectSMSSendsOfAccount = """
        SELECT account_id, phone, purpose, challenge_id, at FROM sms_sends
        WHERE account_id = ? AND at >= ? ORDER BY at DESC, id DESC
        """
    /// The index finds the number's sends of the last day; the pool is a filter on those.
    static let countSMSSendsToPhone = """
        SELECT count(*) FROM (SELECT 1 FROM sms_sends
        WHERE phone = ? AND at >= ? AND (purpose = 'verify_phone') = ? LIMIT ?)
        """
    static let countSMSSendsToCountry =
        "SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE country_code = ? AND at >= ? LIMIT ?)"
    static let countAllSMSSends = "SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE at >= ? LIMIT ?)"
    static let insertSMSSend = """
        INSERT INTO sms_sends (account_id, phone, country_code, purpose, challenge_id, at)
        VALUES (?, ?, ?, ?, ?, ?)
        """
    static let deleteOldSMSSends = "DELETE FROM sms_sends WHERE at < ?"

    // MARK: The SMS pumping breaker

    static let breakerColumns = "scope, country_code, tripped_until, exempt, counting_since, trips, updated_at"
    static let selectBreaker = "SELECT \(breakerColumns) FROM sms_breakers WHERE scope = ?"
    static let selectBreakers = "SELECT \(breakerColumns) FROM sms_breakers ORDER BY scope LIMIT ?"
    static let upsertBreaker = """
        INSERT INTO sms_breakers (\(breakerColumns)) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
        ON CONFLICT (scope) DO UPDATE SET
            tripped_until = ?3, exempt = ?4, counting_since = ?5, trips = ?6, updated_at = ?7
        """
    /// The verification texts the breaker judges: to an account (not an administrator's test
    /// text), not refused by the provider (the send voided the challenge as `failed`), and
    /// either verified or older than the decision time (?5). A challenge already pruned counts
    /// as unverified.
    static func breakerTexts(decidedBefore parameter: String) -> String {
        """
        s.account_id != '' AND s.purpose = 'verify_phone' AND coalesce(c.state, '') != 'failed'
            AND (c.state = 'used' OR s.at <= \(parameter))
        """
    }
    /// Parameters: country code, since, lowest number, bound above the numbers, decided before.
    /// The country index finds the country's texts of the window (bounded by the country and
    /// global budgets); the number range is a filter on those.
    static let countBreakerTexts = """
        SELECT count(*) AS texts, coalesce(sum(c.state = 'used'), 0) AS verified
        FROM sms_sends AS s INDEXED BY sms_sends_by_country LEFT JOIN challenges AS c ON c.id = s.challenge_id
        WHERE s.country_code = ?1 AND s.at >= ?2 AND s.phone >= ?3 AND s.phone < ?4
            AND \(breakerTexts(decidedBefore: "?5"))
        """
    /// Every judged text of the window, newest first (the listing groups them by range).
    /// Parameters: since, decided before, limit.
    static let selectBreakerTexts = """
        SELECT s.phone AS phone, s.at AS at, coalesce(c.state = 'used', 0) AS verified
        FROM sms_sends AS s INDEXED BY sms_sends_by_time LEFT JOIN challenges AS c ON c.id = s.challenge_id
        WHERE s.at >= ?1 AND \(breakerTexts(decidedBefore: "?2"))
        ORDER BY s.at DESC LIMIT ?3
        """

    // MARK: Events

    static let insertEvent = """
        INSERT INTO events (account_id, kind, outcome, detail, destination_masked, at) VALUES (?, ?, ?, ?, ?, ?)
        """
    static let selectEvents = "SELECT id, account_id, kind, outcome, detail, destination_masked, at FROM events"
    static let eventsNewestFirst = NewestFirst(selectEvents)
    /// Oldest first, after one id and through another, of `n` kinds: the statement for `n`
    /// kinds is at index `n - 1` (one for every count of ``EventKind``).
    static let eventsOfKinds: [String] = (1...EventKind.allCases.count).map { count in
        let placeholders = Array(repeating: "?", count: count).joined(separator: ", ")
        return selectEvents + " WHERE id > ? AND id <= ? AND kind IN (\(placeholders)) ORDER BY id LIMIT ?"
    }
    static let lastEventID = "SELECT coalesce(max(id), 0) FROM events"
    /// Of one account's newest `?` events (through `events_by_account`, so at most that many
    /// rows), those of one kind at or after a time.
    static let countRecentEventsOfAccount = """
        SELECT count(*) FROM (SELECT kind, at FROM events WHERE account_id = ? ORDER BY id DESC LIMIT ?)
            WHERE kind = ? AND at >= ?
        """
    /// The oldest `limit` events by id, of those the ones before the cutoff: ids grow with
    /// time, so this reads at most `limit` rows however large the table is.
    static let deleteOldEvents = """
        DELETE FROM events WHERE id IN
            (SELECT id FROM (SELECT id, at FROM events ORDER BY id LIMIT ?) WHERE at < ?)
        """

    // MARK: Deliveries

    static let deliveryColumns = """
        id, account_id, challenge_id, purpose, destination_masked, provider, message_sid, status, error_code,
        attempts, created_at, updated_at
        """
    static let insertDelivery = """
        INSERT INTO deliveries (account_id, challenge_id, purpose, destination_masked, provider, message_sid,
            status, error_code, attempts, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    static let selectDeliveries = "SELECT \(deliveryColumns) FROM deliveries"
    static let deliveriesNewestFirst = NewestFirst(selectDeliveries)
    /// `message_sid != ''` repeats the condition of the partial index `deliveries_by_sid`: without
    /// it SQLite cannot use that index for a bound value and reads the whole delivery log.
    static let selectDeliveryBySID =
        selectDeliveries + " WHERE message_sid = ? AND message_sid != '' ORDER BY id DESC LIMIT 1"
    static let updateDelivery = "UPDATE deliveries SET status = ?, error_code = ?, updated_at = ? WHERE id = ?"
    static let deleteOldDeliveries = """
        DELETE FROM deliveries WHERE id IN
            (SELECT id FROM (SELECT id, created_at FROM deliveries ORDER BY id LIMIT ?) WHERE created_at < ?)
        """
    static let upsertUndeliverable = """
        INSERT INTO undeliverable_numbers (phone, error_code, at) VALUES (?, ?, ?)
        ON CONFLICT (phone) DO UPDATE SET error_code = excluded.error_code, at = excluded.at
        """
    static let selectUndeliverable = "SELECT at, error_code FROM undeliverable_numbers WHERE phone = ?"

    // MARK: The shapes of a newest-first page

    /// The rows of a query over a table with `id` and `account_id`, newest first: of one
    /// account or all, with ids below a given one or not, then `LIMIT ?`. Each shape is a fixed
    /// text, so each stays one cached prepared statement.
    struct NewestFirst {
        /// Parameters: limit.
        let all: String
        /// Parameters: account id, limit.
        let ofAccount: String
        /// Parameters: id, limit.
        let beforeID: String
        /// Parameters: account id, id, limit.
        let ofAccountBeforeID: String

        init(_ select: String) {
            all = select + " ORDER BY id DESC LIMIT ?"
            ofAccount = select + " WHERE account_id = ? ORDER BY id DESC LIMIT ?"
            beforeID = select + " WHERE id < ? ORDER BY id DESC LIMIT ?"
            ofAccountBeforeID = select + " WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
        }

        var shapes: [String] { [all, ofAccount, beforeID, ofAccountBeforeID] }
    }

    // MARK: The catalogue the plan test checks

    /// What every `Verify`, `StartChallenge` and proof runs: none of these may need a
    /// temporary table or a sort, and each must find its rows through an index.
    static let hotPath = [
        selectAccount, insertAccount, updateAccount, insertEvent, selectProof, deleteProof, insertChallenge,
        selectChallenge, updateChallenge, voidChallengesOfPurpose, voidChallenges, incrementUnknownAccountAttempts,
    ]

    /// Every statement above. None may sort, and none may read a whole table except the
    /// ``boundedScans``.
    static let all: [String] =
        hotPath + [
            deleteAccount, deleteAccountChallenges, deleteAccountProofs,
            selectMeta, updateMeta, insertMeta,
            deleteExpiredChallenges, insertProof, deleteExpiredProofs,
            deleteBackupCodes, insertBackupCode, consumeBackupCode, countUnusedBackupCodes,
            selectSMSSendsOfAccount, countSMSSendsToPhone, countSMSSendsToCountry, countAllSMSSends, insertSMSSend,
            deleteOldSMSSends,
            lastEventID, deleteOldEvents, countRecentEventsOfAccount,
            insertDelivery, selectDeliveryBySID, updateDelivery, deleteOldDeliveries, upsertUndeliverable,
            selectUndeliverable,
            selectBreaker, selectBreakers, upsertBreaker, countBreakerTexts, selectBreakerTexts,
        ] + eventsNewestFirst.shapes + deliveriesNewestFirst.shapes + eventsOfKinds

    /// The statements that may walk a table, and the table: each walks it in id order and stops
    /// at its `LIMIT`, so it reads at most that many rows however large the table is.
    static let boundedScans: [String: String] = [
        eventsNewestFirst.all: "events",
        deliveriesNewestFirst.all: "deliveries",
        deleteOldEvents: "events",
        deleteOldDeliveries: "deliveries",
        selectBreakers: "sms_breakers",
    ]
}
