import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// The daemon's own facts in `daemon_meta`, and what several daemons on one database must do
/// once between them.
extension PostgresTwoFactorStore {
    /// The fingerprint of the daemon key this database was first used with; on the first start
    /// `fingerprint` is recorded and returned. Every daemon on the database must use that key:
    /// one with another key could check no stored code, so it refuses to start.
    public func keyFingerprint(recordingIfAbsent fingerprint: String) async throws -> String {
        try await transaction { tx in
            guard let transaction = tx as? PostgresStoreTransaction else {
                throw PostgresStoreError(message: "not a PostgreSQL transaction")
            }
            return try transaction.metaValue(key: "key_fingerprint", recordingIfAbsent: fingerprint)
        }
    }

    /// Whether the server answers now (`SELECT 1` on a pooled connection): nil when it does,
    /// else why not. For `ServerInfo` and `otpctl doctor`.
    public func probe() async -> String? {
        do {
            try await withSession { session in _ = try session.rows("SELECT 1") }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Runs `body` only while this daemon holds the cluster-wide role `role`, and returns when
    /// the calling task is cancelled.
    ///
    /// The role is a PostgreSQL session advisory lock held on a connection of its own (not one
    /// of the pool's). The server releases it when that session ends, also when the daemon
    /// dies with kill -9 or its host vanishes, so another daemon takes over within its next
    /// try (every `retry`). The holder checks its session every `retry` as well; when the
    /// check fails it cancels `body` at once, so two daemons hold the role at once for at most
    /// about one `retry` after a partition (the roles given to it, the notification hook and
    /// the pruner, tolerate that: at least once, and deletes that are idempotent).
    public func whileLeader(
        _ role: LeaderRole, retry: Duration = .seconds(2), _ body: @escaping @Sendable () async -> Void
    ) async {
        var announcedWaiting = false
        while !Task.isCancelled {
            let connection: PostgresConnection
            do {
                connection = try await PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.any(),
                    configuration: try settings.connectionConfiguration(password: password), id: 0, logger: logger)
            } catch {
                try? await Task.sleep(for: retry)
                continue
            }
            defer { Task { try? await connection.close() } }
            do {
                // Wait for the role.
                while !Task.isCancelled {
                    let rows = try await connection.query(
                        "SELECT pg_try_advisory_lock(\(role.key)) AS held", logger: logger)
                    var held = false
                    for try await value in rows.decode(Bool.self) { held = value }
                    if held { break }
                    if !announcedWaiting {
                        logger.info("another otpd holds a cluster role; standing by", metadata: ["role": "\(role)"])
                        announcedWaiting = true
                    }
                    try await Task.sleep(for: retry)
                }
                guard !Task.isCancelled else { return }
                logger.info("this otpd now holds a cluster role", metadata: ["role": "\(role)"])
                announcedWaiting = false
                // Hold it: run the body while the session answers.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        await body()
                    }
                    group.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(for: retry)
                            try await connection.query("SELECT 1", logger: self.logger)
                        }
                    }
                    // Whichever ends first (the body at shutdown, or a failed check) ends both.
                    _ = try await group.next()
                    group.cancelAll()
                }
            } catch {
                if !Task.isCancelled {
                    logger.warning(
                        "lost the session that held a cluster role; trying to take it again",
                        metadata: ["role": "\(role)", "error": "\(PostgresStoreError.describe(error))"])
                }
            }
        }
    }
}

/// A job that one daemon of a cluster does for all of them.
public enum LeaderRole: String, Sendable, CustomStringConvertible {
    /// The notification hook: each event delivered once by the cluster, not once per daemon.
    case notificationHook = "notification_hook"
    /// The pruner: deleting what the retention policy no longer keeps.
    case pruner

    /// The advisory lock key: "otpd" in ASCII, then a number per role.
    var key: Int64 {
        switch self {
        case .notificationHook: 0x6f74_7064_0000_0001
        case .pruner: 0x6f74_7064_0000_0002
        }
    }

    public var description: String { rawValue }
}

extension PostgresStoreTransaction {
    /// The value under `key` in `daemon_meta`; `value` is stored first when there is none.
    func metaValue(key: String, recordingIfAbsent value: String) throws -> String {
        try perform { db in
            try db.run(
                "INSERT INTO daemon_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                [.text(key), .text(value)])
            guard let stored = try Self.meta(db, key) else {
                throw PostgresStoreError(message: "daemon_meta.\(key) vanished")
            }
            return stored
        }
    }
}
