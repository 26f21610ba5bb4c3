internal import Logging

/// One step of the schema, applied in order; `PRAGMA user_version` records how many ran.
public struct Migration: Sendable {
    /// The `user_version` after this step.
    public let version: Int
    /// What it does, for the log.
    public let summary: String
    /// The SQL it runs, inside the same transaction as the version bump.
    public let sql: String

    public init(version: Int, summary: String, sql: String) {
        self.version = version
        self.summary = summary
        self.sql = sql
    }

    /// Applies every migration newer than the file's `user_version`, each in its own
    /// transaction, and returns the resulting version.
    static func apply(_ migrations: [Migration], to connection: SQLiteConnection, logger: Logger) throws(StoreError)
        -> Int
    {
        let current = Int(try connection.scalar("PRAGMA user_version") ?? 0)
        let latest = migrations.last?.version ?? 0
        guard current <= latest else {
            throw StoreError(
                kind: .schemaTooNew,
                message: "\(connection.path) has schema version \(current); this otpd knows up to \(latest)")
        }
        for migration in migrations where migration.version > current {
            precondition(migration.version > 0)
            do {
                try connection.execute("BEGIN IMMEDIATE")
                try connection.execute(migration.sql)
                try connection.execute("PRAGMA user_version = \(migration.version)")
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
            logger.info(
                "applied schema migration",
                metadata: [
                    "schema.version": "\(migration.version)", "schema.summary": "\(migration.summary)",
                ])
        }
        return Int(try connection.scalar("PRAGMA user_version") ?? 0)
    }
}
