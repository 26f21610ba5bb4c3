import Foundation
public import Logging
import NIOCore
import NIOPosix
public import OTPCore
import OTPMetrics
import PostgresNIO
import Synchronization

/// The domain's storage (`TwoFactorStore`) on PostgreSQL, shared by several daemons.
///
/// ## Why it is correct across daemons
///
/// The domain's rules (a code used once, a failure counted before its answer, the budgets, the
/// lock) were written for transactions that never overlap, which is what SQLite's single writer
/// gives. Here every transaction runs at `SERIALIZABLE`: PostgreSQL guarantees that the outcome
/// of committed transactions is that of some order in which they ran one at a time, and aborts
/// (SQLSTATE 40001, or 40P01 for a deadlock) whichever transaction would break that. So every
/// rule that holds for one-at-a-time bodies holds here, on every node, without a lock chosen
/// by hand for each rule (a rule added later is covered too).
///
/// An aborted transaction kept nothing, so the body is run again, from the start, on a fresh
/// snapshot, after a short random pause; the caller never sees the conflict. A body's only
/// effects are its store operations (metrics wait for `afterCommit`), so running it again is
/// safe. After ``maximumAttempts`` conflicts in a row the caller gets the storage error
/// (UNAVAILABLE), never a refusal it did not earn.
///
/// ## Threads
///
/// Bodies are synchronous (the domain's code is the same for both stores), while PostgresNIO is
/// asynchronous. Each transaction leases a connection from PostgresNIO's pool and runs its body
/// on a thread of the store's own pool (as many threads as connections), where each statement
/// waits for its answer. No event loop thread ever blocks.
///
/// ## Failures
///
/// A lost connection, a server that restarts or a statement that times out fails the
/// transaction: nothing of it is kept unless its COMMIT was answered, and the caller gets
/// UNAVAILABLE. When the COMMIT itself is lost the outcome is unknown to otpd; the caller is
/// told UNAVAILABLE, never "done" (fail closed). New connections are made by the pool as soon
/// as the server answers again.
public final class PostgresTwoFactorStore: TwoFactorStore {
    /// Conflicts in a row after which a transaction gives up.
    public static let maximumAttempts = 64

    public let settings: PostgresSettings
    /// For the sessions opened outside the pool (`whileLeader`).
    let password: String?
    /// The schema version after migrations.
    public let schemaVersion: Int
    let client: PostgresClient
    private let threads: NIOThreadPool
    private let clientTask: Task<Void, Never>
    let logger: Logger
    private let accounts = KeyedQueue()
    /// Set when a transaction could not reach the server, cleared by the next one that did:
    /// while it is set, a call waits only briefly for a connection, so that calls during an
    /// outage are answered UNAVAILABLE at once instead of each waiting out the full timeout
    /// (one account's calls queue one behind the other).
    private let serverDown = Atomic<Bool>(false)

    /// Connects (retrying every second, with a log line each time, until `connectDeadline`),
    /// applies pending migrations once per database (under an advisory lock, so daemons
    /// starting together take turns) and checks the schema.
    ///
    /// - Throws: `PostgresStoreError` when the server stays unreachable, refuses the login,
    ///   or holds a schema newer than this otpd.
    public init(
        settings: PostgresSettings, password: String?, logger: Logger,
        connectDeadline: Duration = .seconds(3600), onWaiting: @Sendable (String) -> Void = { _ in }
    ) async throws {
        self.settings = settings
        self.password = password
        self.logger = logger
        let configuration = try settings.clientConfiguration(password: password)
        var backgroundLogger = logger
        backgroundLogger.logLevel = max(logger.logLevel, .warning)
        let client = PostgresClient(configuration: configuration, backgroundLogger: backgroundLogger)
        self.client = client
        self.clientTask = Task { await client.run() }
        let threads = NIOThreadPool(numberOfThreads: max(1, settings.poolSize))
        threads.start()
        self.threads = threads
        do {
            self.schemaVersion = try await Self.migrate(
                settings: settings, password: password, logger: logger, deadline: connectDeadline,
                onWaiting: onWaiting)
        } catch {
            clientTask.cancel()
            try? await threads.shutdownGracefully()
            throw error
        }
    }

    public func transaction<T: Sendable>(
        _ body: @escaping @Sendable (any StoreTransaction) throws -> T
    ) async throws -> T {
        try Task.checkCancellation()
        var attempt = 1
        while true {
            do {
                let (value, afterCommit) = try await attemptTransaction(body)
                for action in afterCommit { action() }
                return value
            } catch let error where PostgresStoreError.isConflict(error) && attempt < Self.maximumAttempts {
                OTPMetrics.storeConflict()
                attempt += 1
                // A random pause that grows with the attempts (up to about 50 ms), so that
                // transactions that conflicted do not meet again at once.
                let ceiling = min(50_000, 500 << min(attempt, 7))
                try? await Task.sleep(for: .microseconds(Int.random(in: 0...ceiling)))
            }
        }
    }

    /// Transactions of one account wait for each other in this process before they take a
    /// connection (`KeyedQueue`), and for the other daemons' on the account's advisory lock.
    public func transaction<T: Sendable>(
        account accountID: String, _ body: @escaping @Sendable (any StoreTransaction) throws -> T
    ) async throws -> T {
        try await accounts.acquire(accountID)
        defer { accounts.release(accountID) }
        return try await transaction(body)
    }

    /// One try: lease a connection, run BEGIN, the body and COMMIT on a store thread.
    private func attemptTransaction<T: Sendable>(
        _ body: @escaping @Sendable (any StoreTransaction) throws -> T
    ) async throws -> (T, [@Sendable () -> Void]) {
        let logger = self.logger
        let threads = self.threads
        do {
            let result = try await withConnection { connection in
                try await threads.runIfActive {
                    try PostgresStoreTransaction.run(on: connection, logger: logger, body)
                }
            }
            serverDown.store(false, ordering: .relaxed)
            return result
        } catch let error as PostgresStoreError where error.kind == .unavailable {
            serverDown.store(true, ordering: .relaxed)
            throw error
        }
    }

    /// Leases a connection for `work`, or throws `PostgresStoreError.unreachable` when none can
    /// be had within `settings.connectTimeout` (the server is down or every connection is busy).
    func withConnection<T: Sendable>(_ work: @escaping @Sendable (PostgresConnection) async throws -> T)
        async throws -> T
    {
        let leased = LeaseFlag()
        let timeout = serverDown.load(ordering: .relaxed) ? .milliseconds(250) : settings.connectTimeout
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await self.client.withConnection { connection in
                    leased.value.store(true, ordering: .sequentiallyConsistent)
                    return try await work(connection)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            while let next = try await group.next() {
                if let value = next {
                    group.cancelAll()
                    return value
                }
                // The timer: give up only while still waiting for a connection; once leased,
                // the body runs to its end (a body that started commits or fails on its own).
                if !leased.value.load(ordering: .sequentiallyConsistent) {
                    group.cancelAll()
                    throw PostgresStoreError.unreachable(settings.redactedURL)
                }
            }
            throw PostgresStoreError.unreachable(settings.redactedURL)
        }
    }

    /// Runs `body` on a leased connection outside any transaction (advisory locks, the
    /// daemon's metadata, checks): on the store's threads like a transaction body.
    func withSession<T: Sendable>(_ body: @escaping @Sendable (PostgresSession) throws -> T) async throws -> T {
        let logger = self.logger
        let threads = self.threads
        return try await withConnection { connection in
            try await threads.runIfActive { try body(PostgresSession(connection: connection, logger: logger)) }
        }
    }

    /// Stops the pool and the store's threads (once the work already given to them is done);
    /// later transactions fail.
    public func close() {
        clientTask.cancel()
        threads.shutdownGracefully { _ in }
    }

    // MARK: Migrations

    /// Migrates on a connection of its own (the pool would wait for the server silently), and
    /// retries every second while the server cannot be reached.
    private static func migrate(
        settings: PostgresSettings, password: String?, logger: Logger, deadline: Duration,
        onWaiting: @Sendable (String) -> Void
    ) async throws -> Int {
        let start = ContinuousClock.now
        var announced = false
        while true {
            do {
                let connection = try await PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.any(),
                    configuration: try settings.connectionConfiguration(password: password), id: 0, logger: logger)
                let version: Int
                do {
                    version = try await applyMigrations(connection, logger: logger)
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
                if announced { logger.info("PostgreSQL is reachable", metadata: ["url": "\(settings.redactedURL)"]) }
                return version
            } catch let error as PostgresStoreError {
                throw error
            } catch let error as PSQLError where PostgresStoreError.isFatalAtStart(error) {
                throw PostgresStoreError(
                    message: "PostgreSQL at \(settings.redactedURL) refused otpd: \(PostgresStoreError.describe(error))"
                )
            } catch {
                let problem =
                    "PostgreSQL at \(settings.redactedURL) is unreachable (\(PostgresStoreError.describe(error)))"
                guard ContinuousClock.now - start < deadline else {
                    throw PostgresStoreError(kind: .unavailable, message: problem)
                }
                let message = problem + "; retrying"
                logger.warning("\(message)")
                onWaiting(message)
                announced = true
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private static func applyMigrations(_ connection: PostgresConnection, logger: Logger) async throws -> Int {
        try await connection.query("SELECT pg_advisory_lock(\(PostgresSchema.migrationLock))", logger: logger)
        do {
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS otpd_schema (
                    version    INTEGER PRIMARY KEY,
                    summary    TEXT NOT NULL,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var current = 0
            for try await version in try await connection.query(
                "SELECT coalesce(max(version), 0)::bigint FROM otpd_schema", logger: logger
            ).decode(Int64.self) {
                current = Int(version)
            }
            guard current <= PostgresSchema.latestVersion else {
                throw PostgresStoreError(
                    message:
                        "the PostgreSQL database has schema version \(current), newer than this otpd knows (\(PostgresSchema.latestVersion)); use a newer otpd"
                )
            }
            for step in PostgresSchema.steps where step.version > current {
                try await connection.query("BEGIN", logger: logger)
                do {
                    for statement in step.sql {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query(
                        "INSERT INTO otpd_schema (version, summary) VALUES (\(step.version), \(step.summary))",
                        logger: logger)
                    try await connection.query("COMMIT", logger: logger)
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
                logger.info(
                    "PostgreSQL schema migrated",
                    metadata: ["version": "\(step.version)", "summary": "\(step.summary)"])
                current = step.version
            }
            try await connection.query("SELECT pg_advisory_unlock(\(PostgresSchema.migrationLock))", logger: logger)
            return current
        } catch {
            _ = try? await connection.query(
                "SELECT pg_advisory_unlock(\(PostgresSchema.migrationLock))", logger: logger)
            throw error
        }
    }
}

/// Whether a transaction holds its connection yet (shared by its two racing tasks).
private final class LeaseFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// A failure of the PostgreSQL store. The message names what failed, never a stored value.
public struct PostgresStoreError: Error, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A serialization failure or a deadlock: the transaction kept nothing and may run again.
        case conflict
        /// A value the schema refuses (a CHECK, a duplicate key, a NUL byte in text).
        case constraint
        /// No answer from the server: it is down, restarting, or the connection was lost.
        case unavailable
        /// A stored row that does not decode.
        case corrupt
        case other
    }

    public let kind: Kind
    public let message: String
    /// The server's SQLSTATE, when the server answered with an error.
    public let sqlState: String?
    public var description: String { message }

    public init(kind: Kind = .other, message: String, sqlState: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
    }

    /// `error` from PostgresNIO, classified.
    init(_ error: any Error) {
        guard let error = error as? PSQLError else {
            self.init(kind: .other, message: "\(error)")
            return
        }
        let message = Self.describe(error)
        guard let state = error.serverInfo?[.sqlState] else {
            self.init(kind: .unavailable, message: message)
            return
        }
        let kind: Kind =
            switch state {
            case "40001", "40P01": .conflict
            case _ where state.hasPrefix("23") || state.hasPrefix("22"): .constraint
            // 57: the server is shutting down or cancelled the statement; 08: connection
            // failures; 53: out of resources.
            case _ where state.hasPrefix("57") || state.hasPrefix("08") || state.hasPrefix("53"): .unavailable
            default: .other
            }
        self.init(kind: kind, message: message, sqlState: state)
    }

    static func unreachable(_ url: String) -> PostgresStoreError {
        PostgresStoreError(kind: .unavailable, message: "no connection to PostgreSQL at \(url) could be had in time")
    }

    static func corrupt(_ table: String, _ column: String, _ problem: String) -> PostgresStoreError {
        PostgresStoreError(kind: .corrupt, message: "\(table).\(column) \(problem)")
    }

    /// The SQLSTATE of a server error, if `error` is one.
    static func sqlState(_ error: any Error) -> String? {
        if let error = error as? PostgresStoreError { return error.sqlState }
        return (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// A serialization failure or a deadlock: the transaction kept nothing and may run again.
    static func isConflict(_ error: any Error) -> Bool {
        guard let state = sqlState(error) else { return false }
        return state == "40001" || state == "40P01"
    }

    /// Errors that retrying at start cannot cure: a refused login, a database that does not
    /// exist, a role without rights, TLS that cannot be had.
    static func isFatalAtStart(_ error: PSQLError) -> Bool {
        if let state = sqlState(error) {
            // 28: invalid authorization; 3D000: no such database; 42501: insufficient privilege.
            return state.hasPrefix("28") || state == "3D000" || state == "42501"
        }
        switch error.code {
        case .sslUnsupported, .unsupportedAuthMechanism, .authMechanismRequiresPassword, .saslError:
            return true
        default:
            return false
        }
    }

    /// A one-line description of a PostgresNIO error: the server's message and SQLSTATE, or the
    /// client's error code (PSQLError's own description hides both).
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let info = error.serverInfo {
            return "\(info[.message] ?? "server error") (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}
