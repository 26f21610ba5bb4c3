/// The daemon's own facts in `daemon_meta`: which key the database belongs to, the
/// notification cursor, the count of attempts on unknown accounts.
extension SQLiteStore {
    /// The fingerprint of the daemon key this database was first opened with. On the first
    /// start (none recorded yet) `fingerprint` is recorded and returned.
    ///
    /// Stored codes and authenticator secrets are readable only with that key, so a caller whose
    /// key has another fingerprint must refuse to start.
    public func keyFingerprint(recordingIfAbsent fingerprint: String) async throws -> String {
        try await write { db in
            if let recorded = try db.metaValue(forKey: "key_fingerprint") { return recorded }
            try db.setMetaValue(fingerprint, forKey: "key_fingerprint")
            return fingerprint
        }
    }
}

extension SQLiteConnection {
    /// The value stored under `key` in `daemon_meta`, or nil when there is none.
    func metaValue(forKey key: String) throws(StoreError) -> String? {
        try query(SQL.selectMeta, [.text(key)]).first?.first?.text
    }

    /// Stores `value` under `key` in `daemon_meta`, replacing what was there.
    func setMetaValue(_ value: String, forKey key: String) throws(StoreError) {
        if try run(SQL.updateMeta, [.text(value), .text(key)]) == 0 {
            try run(SQL.insertMeta, [.text(key), .text(value)])
        }
    }
}
