/// The otpd schema on PostgreSQL, oldest step first. Never edit a released step; add one.
///
/// The tables mirror the SQLite schema (Sources/OTPStore/Schema.swift) column for column, so
/// `otpd migrate-store` copies rows as they are: every time is BIGINT Unix milliseconds, every
/// hash and sealed secret BYTEA, every flag BOOLEAN. The CHECKs are those of SQLite's schema.
/// What differs, and why:
/// - `events.xid`: the number of the transaction that wrote the event. The notification hook
///   reads events in (xid, id) order up to the oldest transaction still running, so an event
///   whose id was handed out before a larger one but committed after it is never skipped (see
///   `PostgresStoreTransaction.notificationHorizon`).
/// - `unknown_account_attempts` is 64 counters, one picked at random per attempt: one counter
///   row would make every attempt on an unknown account conflict with every other one.
enum PostgresSchema {
    struct Step {
        let version: Int
        let summary: String
        let sql: [String]
    }

    /// The phone number CHECK: E.164, `+`, then 8 to 15 digits, the first not 0.
    private static func phone(_ column: String) -> String {
        "\(column) ~ '^\\+[1-9][0-9]{7,14}$'"
    }

    private static let purposes = "('verify_phone', 'login', 'change_phone', 'disable_factor', 'manage_factors')"

    static let steps: [Step] = [
        Step(
            version: 1, summary: "the two-factor domain (as SQLite schema version 5)",
            sql: [
                """
                CREATE TABLE daemon_meta (
                    key   TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                )
                """,
                """
                INSERT INTO daemon_meta (key, value)
                VALUES ('created_at', (extract(epoch FROM now()) * 1000)::bigint::text)
                """,
                """
                CREATE TABLE unknown_account_attempts (
                    shard    SMALLINT PRIMARY KEY CHECK (shard BETWEEN 0 AND 63),
                    attempts BIGINT NOT NULL CHECK (attempts >= 0)
                )
                """,
                "INSERT INTO unknown_account_attempts (shard, attempts) SELECT s, 0 FROM generate_series(0, 63) AS s",
                """
                CREATE TABLE accounts (
                    id                      TEXT PRIMARY KEY CHECK (id <> ''),
                    phone                   TEXT CHECK (phone IS NULL OR \(phone("phone"))),
                    phone_verified          BOOLEAN NOT NULL,
                    pending_phone           TEXT CHECK (pending_phone IS NULL OR \(phone("pending_phone"))),
                    totp_secret             BYTEA CHECK (totp_secret IS NULL OR length(totp_secret) > 0),
                    totp_last_step          BIGINT CHECK (totp_last_step IS NULL OR totp_last_step >= 0),
                    pending_totp            BYTEA CHECK (pending_totp IS NULL OR length(pending_totp) > 0),
                    pending_totp_expires_at BIGINT,
                    preferred               TEXT CHECK (preferred IS NULL OR preferred IN ('sms', 'totp', 'backup')),
                    consecutive_failures    INTEGER NOT NULL CHECK (consecutive_failures >= 0),
                    lock_count              INTEGER NOT NULL CHECK (lock_count >= 0),
                    locked_until            BIGINT,
                    created_at              BIGINT NOT NULL,
                    updated_at              BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE challenges (
                    id            TEXT PRIMARY KEY CHECK (id <> ''),
                    account_id    TEXT NOT NULL,
                    purpose       TEXT NOT NULL CHECK (purpose IN \(purposes)),
                    destination   TEXT NOT NULL CHECK (\(phone("destination"))),
                    code_hash     BYTEA NOT NULL CHECK (length(code_hash) = 32),
                    created_at    BIGINT NOT NULL,
                    expires_at    BIGINT NOT NULL,
                    attempts_left INTEGER NOT NULL CHECK (attempts_left >= 0),
                    state         TEXT NOT NULL CHECK (state IN ('active', 'used', 'voided', 'failed'))
                )
                """,
                "CREATE INDEX challenges_by_account_purpose ON challenges (account_id, purpose)",
                "CREATE INDEX challenges_by_expiry ON challenges (expires_at)",
                """
                CREATE TABLE proofs (
                    token_hash BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
                    account_id TEXT NOT NULL,
                    purpose    TEXT NOT NULL CHECK (purpose IN \(purposes)),
                    expires_at BIGINT NOT NULL
                )
                """,
                "CREATE INDEX proofs_by_account ON proofs (account_id)",
                "CREATE INDEX proofs_by_expiry ON proofs (expires_at)",
                """
                CREATE TABLE events (
                    id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                    xid                XID8 NOT NULL DEFAULT pg_current_xact_id(),
                    account_id         TEXT NOT NULL,
                    kind               TEXT NOT NULL,
                    outcome            TEXT NOT NULL,
                    detail             TEXT NOT NULL DEFAULT '',
                    destination_masked TEXT NOT NULL DEFAULT '',
                    at                 BIGINT NOT NULL
                )
                """,
                "CREATE INDEX events_by_account ON events (account_id, id)",
                "CREATE INDEX events_by_transaction ON events (xid, id)",
                """
                CREATE TABLE sms_sends (
                    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                    account_id   TEXT NOT NULL,
                    phone        TEXT NOT NULL CHECK (\(phone("phone"))),
                    country_code TEXT NOT NULL CHECK (country_code ~ '^[1-9][0-9]{0,2}$'),
                    purpose      TEXT NOT NULL CHECK (purpose IN \(purposes)),
                    challenge_id TEXT NOT NULL,
                    at           BIGINT NOT NULL
                )
                """,
                "CREATE INDEX sms_sends_by_account ON sms_sends (account_id, at)",
                "CREATE INDEX sms_sends_by_phone ON sms_sends (phone, at)",
                "CREATE INDEX sms_sends_by_country ON sms_sends (country_code, at)",
                "CREATE INDEX sms_sends_by_time ON sms_sends (at)",
                """
                CREATE TABLE backup_codes (
                    account_id TEXT NOT NULL,
                    code_hash  BYTEA NOT NULL CHECK (length(code_hash) = 32),
                    created_at BIGINT NOT NULL,
                    used_at    BIGINT,
                    PRIMARY KEY (account_id, code_hash)
                )
                """,
                """
                CREATE TABLE deliveries (
                    id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                    account_id         TEXT NOT NULL,
                    challenge_id       TEXT NOT NULL,
                    purpose            TEXT NOT NULL,
                    destination_masked TEXT NOT NULL,
                    provider           TEXT NOT NULL,
                    message_sid        TEXT NOT NULL,
                    status             TEXT NOT NULL CHECK (length(status) BETWEEN 1 AND 32),
                    error_code         BIGINT,
                    attempts           INTEGER NOT NULL CHECK (attempts >= 0),
                    created_at         BIGINT NOT NULL,
                    updated_at         BIGINT NOT NULL
                )
                """,
                "CREATE INDEX deliveries_by_account ON deliveries (account_id, id)",
                "CREATE INDEX deliveries_by_sid ON deliveries (message_sid) WHERE message_sid <> ''",
                """
                CREATE TABLE undeliverable_numbers (
                    phone      TEXT PRIMARY KEY,
                    error_code BIGINT,
                    at         BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE sms_breakers (
                    scope          TEXT PRIMARY KEY CHECK (scope ~ '^\\+[1-9][0-9]{0,11}$'),
                    country_code   TEXT NOT NULL CHECK (country_code ~ '^[1-9][0-9]{0,2}$'),
                    tripped_until  BIGINT,
                    exempt         BOOLEAN NOT NULL,
                    counting_since BIGINT NOT NULL,
                    trips          INTEGER NOT NULL CHECK (trips >= 0),
                    updated_at     BIGINT NOT NULL
                )
                """,
            ])
    ]

    /// The newest version this otpd knows.
    static var latestVersion: Int { steps.last?.version ?? 0 }

    /// The advisory lock key of migrations ("otpdmigr" in ASCII): daemons starting at the same
    /// moment take it in turn, and each applies only what the one before left to do.
    static let migrationLock: Int64 = 0x6f74_7064_6d69_6772
}
