extension Migration {
    /// The otpd schema, oldest first. Never edit a released step; add a new one.
    public static let all: [Migration] = [
        Migration(
            version: 1, summary: "daemon metadata",
            sql: """
                CREATE TABLE daemon_meta (
                    key   TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                ) STRICT;
                INSERT INTO daemon_meta (key, value) VALUES ('created_at', strftime('%s', 'now'));
                """),
        // Version 2: the two-factor domain (`SQLiteTwoFactorStore`). Every time is INTEGER Unix
        // milliseconds. Phone numbers are E.164 text; the CHECKs mirror `PhoneNumber`'s rules so a
        // bad value is refused on the way in, and the reader still refuses what does not parse.
        // The purpose and state lists mirror `CodePurpose` and `ChallengeState`: a new case needs
        // a new migration (the store tests store every case, so a forgotten one fails them).
        // There are no foreign keys: events outlive a reset account, and `deleteAccountData`
        // removes an account's challenges, proofs and backup codes itself.
        Migration(
            version: 2, summary: "two-factor accounts, challenges, proofs, events, SMS sends, backup codes",
            sql: """
                CREATE TABLE accounts (
                    id                      TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
                    phone                   TEXT CHECK (phone IS NULL OR (
                                                length(phone) BETWEEN 9 AND 16 AND phone GLOB '+[1-9]*'
                                                AND substr(phone, 2) NOT GLOB '*[^0-9]*')),
                    phone_verified          INTEGER NOT NULL CHECK (phone_verified IN (0, 1)),
                    pending_phone           TEXT CHECK (pending_phone IS NULL OR (
                                                length(pending_phone) BETWEEN 9 AND 16
                                                AND pending_phone GLOB '+[1-9]*'
                                                AND substr(pending_phone, 2) NOT GLOB '*[^0-9]*')),
                    totp_secret             BLOB CHECK (totp_secret IS NULL OR length(totp_secret) > 0),
                    totp_last_step          INTEGER CHECK (totp_last_step IS NULL OR totp_last_step >= 0),
                    pending_totp            BLOB CHECK (pending_totp IS NULL OR length(pending_totp) > 0),
                    pending_totp_expires_at INTEGER,
                    preferred               TEXT CHECK (preferred IS NULL OR preferred IN ('sms', 'totp', 'backup')),
                    consecutive_failures    INTEGER NOT NULL CHECK (consecutive_failures >= 0),
                    lock_count              INTEGER NOT NULL CHECK (lock_count >= 0),
                    locked_until            INTEGER,
                    created_at              INTEGER NOT NULL,
                    updated_at              INTEGER NOT NULL
                ) STRICT;

                CREATE TABLE challenges (
                    id            TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
                    account_id    TEXT NOT NULL,
                    purpose       TEXT NOT NULL CHECK (purpose IN (
                                      'verify_phone', 'login', 'change_phone', 'disable_factor', 'manage_factors')),
                    destination   TEXT NOT NULL CHECK (
                                      length(destination) BETWEEN 9 AND 16 AND destination GLOB '+[1-9]*'
                                      AND substr(destination, 2) NOT GLOB '*[^0-9]*'),
                    code_hash     BLOB NOT NULL CHECK (length(code_hash) = 32),
                    created_at    INTEGER NOT NULL,
                    expires_at    INTEGER NOT NULL,
                    attempts_left INTEGER NOT NULL CHECK (attempts_left >= 0),
                    state         TEXT NOT NULL CHECK (state IN ('active', 'used', 'voided', 'failed'))
                ) STRICT;
                CREATE INDEX challenges_by_account_purpose_state ON challenges (account_id, purpose, state);

                CREATE TABLE proofs (
                    token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
                    account_id TEXT NOT NULL,
                    purpose    TEXT NOT NULL CHECK (purpose IN (
                                   'verify_phone', 'login', 'change_phone', 'disable_factor', 'manage_factors')),
                    expires_at INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX proofs_by_account ON proofs (account_id);

                CREATE TABLE events (
                    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
                    account_id         TEXT NOT NULL,
                    kind               TEXT NOT NULL,
                    outcome            TEXT NOT NULL,
                    detail             TEXT NOT NULL DEFAULT '',
                    destination_masked TEXT NOT NULL DEFAULT '',
                    at                 INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX events_by_account ON events (account_id, id);

                CREATE TABLE sms_sends (
                    id           INTEGER PRIMARY KEY,
                    account_id   TEXT NOT NULL,
                    phone        TEXT NOT NULL CHECK (
                                     length(phone) BETWEEN 9 AND 16 AND phone GLOB '+[1-9]*'
                                     AND substr(phone, 2) NOT GLOB '*[^0-9]*'),
                    country_code TEXT NOT NULL CHECK (
                                     length(country_code) BETWEEN 1 AND 3 AND country_code GLOB '[1-9]*'
                                     AND country_code NOT GLOB '*[^0-9]*'),
                    purpose      TEXT NOT NULL CHECK (purpose IN (
                                     'verify_phone', 'login', 'change_phone', 'disable_factor', 'manage_factors')),
                    challenge_id TEXT NOT NULL,
                    at           INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX sms_sends_by_account ON sms_sends (account_id, at);
                CREATE INDEX sms_sends_by_phone ON sms_sends (phone, at);
                CREATE INDEX sms_sends_by_country ON sms_sends (country_code, at);
                CREATE INDEX sms_sends_by_time ON sms_sends (at);

                CREATE TABLE backup_codes (
                    account_id TEXT NOT NULL,
                    code_hash  BLOB NOT NULL CHECK (length(code_hash) = 32),
                    created_at INTEGER NOT NULL,
                    used_at    INTEGER,
                    PRIMARY KEY (account_id, code_hash)
                ) STRICT, WITHOUT ROWID;
                """),
        Migration(
            version: 3, summary: "SMS delivery log and undeliverable numbers",
            sql: """
                CREATE TABLE deliveries (
                    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
                    account_id         TEXT NOT NULL,
                    challenge_id       TEXT NOT NULL,
                    purpose            TEXT NOT NULL,
                    destination_masked TEXT NOT NULL,
                    provider           TEXT NOT NULL,
                    message_sid        TEXT NOT NULL,
                    status             TEXT NOT NULL CHECK (length(status) BETWEEN 1 AND 32),
                    error_code         INTEGER,
                    attempts           INTEGER NOT NULL CHECK (attempts >= 0),
                    created_at         INTEGER NOT NULL,
                    updated_at         INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX deliveries_by_account ON deliveries (account_id, id);
                CREATE INDEX deliveries_by_sid ON deliveries (message_sid) WHERE message_sid != '';
                CREATE TABLE undeliverable_numbers (
                    phone      TEXT PRIMARY KEY NOT NULL,
                    error_code INTEGER,
                    at         INTEGER NOT NULL
                ) STRICT;
                """),
        // Version 4: the same tables, rebuilt for speed (no data changes).
        // - A CHECK of the form `x IN ('a', 'b', 'c')` makes SQLite build and drop a temporary
        //   index on every INSERT or UPDATE that touches `x` (lists of three or more constants);
        //   under load that was a third of the writer's time. The same rules are now spelled
        //   with `=` and `OR`, which cost nothing.
        // - The challenge index leaves out `state`: a verified or voided challenge changed its
        //   state, and with `state` in the index each change also rewrote an index page at a
        //   random place. An account's challenges of one purpose are few (the pruner removes
        //   old ones), so the voiding queries filter `state` after the index seek.
        // - Expiry indexes for the pruner.
        Migration(
            version: 4, summary: "CHECKs without IN lists, challenge index without state, expiry indexes",
            sql: """
                CREATE TABLE accounts_v4 (
                    id                      TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
                    phone                   TEXT CHECK (phone IS NULL OR (
                                                length(phone) BETWEEN 9 AND 16 AND phone GLOB '+[1-9]*'
                                                AND substr(phone, 2) NOT GLOB '*[^0-9]*')),
                    phone_verified          INTEGER NOT NULL CHECK (phone_verified = 0 OR phone_verified = 1),
                    pending_phone           TEXT CHECK (pending_phone IS NULL OR (
                                                length(pending_phone) BETWEEN 9 AND 16
                                                AND pending_phone GLOB '+[1-9]*'
                                                AND substr(pending_phone, 2) NOT GLOB '*[^0-9]*')),
                    totp_secret             BLOB CHECK (totp_secret IS NULL OR length(totp_secret) > 0),
                    totp_last_step          INTEGER CHECK (totp_last_step IS NULL OR totp_last_step >= 0),
                    pending_totp            BLOB CHECK (pending_totp IS NULL OR length(pending_totp) > 0),
                    pending_totp_expires_at INTEGER,
                    preferred               TEXT CHECK (preferred IS NULL OR preferred = 'sms' OR preferred = 'totp'
                                                OR preferred = 'backup'),
                    consecutive_failures    INTEGER NOT NULL CHECK (consecutive_failures >= 0),
                    lock_count              INTEGER NOT NULL CHECK (lock_count >= 0),
                    locked_until            INTEGER,
                    created_at              INTEGER NOT NULL,
                    updated_at              INTEGER NOT NULL
                ) STRICT;
                INSERT INTO accounts_v4 SELECT * FROM accounts;
                DROP TABLE accounts;
                ALTER TABLE accounts_v4 RENAME TO accounts;

                CREATE TABLE challenges_v4 (
                    id            TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
                    account_id    TEXT NOT NULL,
                    purpose       TEXT NOT NULL CHECK \(purposeCheck("purpose")),
                    destination   TEXT NOT NULL CHECK (
                                      length(destination) BETWEEN 9 AND 16 AND destination GLOB '+[1-9]*'
                                      AND substr(destination, 2) NOT GLOB '*[^0-9]*'),
                    code_hash     BLOB NOT NULL CHECK (length(code_hash) = 32),
                    created_at    INTEGER NOT NULL,
                    expires_at    INTEGER NOT NULL,
                    attempts_left INTEGER NOT NULL CHECK (attempts_left >= 0),
                    state         TEXT NOT NULL CHECK (state = 'active' OR state = 'used' OR state = 'voided'
                                      OR state = 'failed')
                ) STRICT;
                INSERT INTO challenges_v4 SELECT * FROM challenges;
                DROP TABLE challenges;
                ALTER TABLE challenges_v4 RENAME TO challenges;
                CREATE INDEX challenges_by_account_purpose ON challenges (account_id, purpose);
                CREATE INDEX challenges_by_expiry ON challenges (expires_at);

                CREATE TABLE proofs_v4 (
                    token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
                    account_id TEXT NOT NULL,
                    purpose    TEXT NOT NULL CHECK \(purposeCheck("purpose")),
                    expires_at INTEGER NOT NULL
                ) STRICT;
                INSERT INTO proofs_v4 SELECT * FROM proofs;
                DROP TABLE proofs;
                ALTER TABLE proofs_v4 RENAME TO proofs;
                CREATE INDEX proofs_by_account ON proofs (account_id);
                CREATE INDEX proofs_by_expiry ON proofs (expires_at);

                CREATE TABLE sms_sends_v4 (
                    id           INTEGER PRIMARY KEY,
                    account_id   TEXT NOT NULL,
                    phone        TEXT NOT NULL CHECK (
                                     length(phone) BETWEEN 9 AND 16 AND phone GLOB '+[1-9]*'
                                     AND substr(phone, 2) NOT GLOB '*[^0-9]*'),
                    country_code TEXT NOT NULL CHECK (
                                     length(country_code) BETWEEN 1 AND 3 AND country_code GLOB '[1-9]*'
                                     AND country_code NOT GLOB '*[^0-9]*'),
                    purpose      TEXT NOT NULL CHECK \(purposeCheck("purpose")),
                    challenge_id TEXT NOT NULL,
                    at           INTEGER NOT NULL
                ) STRICT;
                INSERT INTO sms_sends_v4 SELECT * FROM sms_sends;
                DROP TABLE sms_sends;
                ALTER TABLE sms_sends_v4 RENAME TO sms_sends;
                CREATE INDEX sms_sends_by_account ON sms_sends (account_id, at);
                CREATE INDEX sms_sends_by_phone ON sms_sends (phone, at);
                CREATE INDEX sms_sends_by_country ON sms_sends (country_code, at);
                CREATE INDEX sms_sends_by_time ON sms_sends (at);
                """),
        // Version 5: the SMS pumping breaker's records (`SMSBreakerRecord`): the number ranges
        // and countries it paused, reset or an administrator exempted. Its counts are read from
        // `sms_sends` and `challenges`, so sending a text writes nothing more than before.
        Migration(
            version: 5, summary: "SMS pumping breaker",
            sql: """
                CREATE TABLE sms_breakers (
                    scope          TEXT PRIMARY KEY NOT NULL CHECK (
                                       length(scope) BETWEEN 2 AND 13 AND scope GLOB '+[1-9]*'
                                       AND substr(scope, 2) NOT GLOB '*[^0-9]*'),
                    country_code   TEXT NOT NULL CHECK (
                                       length(country_code) BETWEEN 1 AND 3 AND country_code GLOB '[1-9]*'
                                       AND country_code NOT GLOB '*[^0-9]*'),
                    tripped_until  INTEGER,
                    exempt         INTEGER NOT NULL CHECK (exempt = 0 OR exempt = 1),
                    counting_since INTEGER NOT NULL,
                    trips          INTEGER NOT NULL CHECK (trips >= 0),
                    updated_at     INTEGER NOT NULL
                ) STRICT, WITHOUT ROWID;
                """),
    ]
}

/// The CHECK that a purpose column holds one of `CodePurpose`'s raw values, spelled with `=`
/// and `OR` (see migration 4). A new purpose needs a new migration.
private func purposeCheck(_ column: String) -> String {
    "("
        + ["verify_phone", "login", "change_phone", "disable_factor", "manage_factors"]
        .map { "\(column) = '\($0)'" }.joined(separator: " OR ") + ")"
}
