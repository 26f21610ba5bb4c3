import Foundation
import Logging
import OTPCore
import OTPMetrics
import OTPPostgres
import OTPServer
import OTPStore
import ServiceLifecycle

/// The store the daemon runs on, SQLite or PostgreSQL (`[storage] backend`), and what the
/// daemon does differently with each.
enum DaemonStorage: Sendable {
    /// One daemon, one file: every job runs here.
    case sqlite(SQLiteStore, SQLiteTwoFactorStore)
    /// Several daemons, one database: the jobs done once for all of them (the notification
    /// hook, the pruner) run on the daemon that holds their cluster role.
    case postgresql(PostgresTwoFactorStore)

    /// Opens the configured store. PostgreSQL is waited for while it is unreachable (each try
    /// logged and passed to `onWaiting`, for systemd's status line).
    static func open(
        _ configuration: DaemonConfiguration, environment: [String: String], logger: Logger,
        onWaiting: @escaping @Sendable (String) -> Void
    ) async throws -> DaemonStorage {
        switch configuration.storageBackend {
        case "postgresql":
            var settings = try PostgresSettings(url: configuration.storageURL)
            settings.poolSize = configuration.storagePoolSize
            if let weakness = settings.tlsWeakness {
                logger.warning(
                    "the connection to PostgreSQL is not protected against an attacker on the network",
                    metadata: [
                        "url": "\(settings.redactedURL)", "reason": "\(weakness)",
                        "fix": "sslmode=verify-full (the default), with sslrootcert=PATH for a private authority",
                    ])
            }
            let password = try PostgresSettings.password(
                file: configuration.storagePasswordFile, environment: environment)
            let store = try await PostgresTwoFactorStore(
                settings: settings, password: password, logger: logger, onWaiting: onWaiting)
            return .postgresql(store)
        default:
            let store = try SQLiteStore(
                path: configuration.databasePath,
                synchronous: SynchronousMode(rawValue: configuration.synchronous) ?? .full, logger: logger)
            return .sqlite(store, try SQLiteTwoFactorStore(store: store))
        }
    }

    var domainStore: any TwoFactorStore {
        switch self {
        case .sqlite(_, let store): store
        case .postgresql(let store): store
        }
    }

    /// "sqlite" or "postgresql".
    var backend: String {
        switch self {
        case .sqlite: "sqlite"
        case .postgresql: "postgresql"
        }
    }

    /// The database file's absolute path, or the PostgreSQL URL without a password.
    var location: String {
        switch self {
        case .sqlite(let store, _):
            store.path.hasPrefix("/") ? store.path : FileManager.default.currentDirectoryPath + "/" + store.path
        case .postgresql(let store): store.settings.redactedURL
        }
    }

    var schemaVersion: Int {
        switch self {
        case .sqlite(let store, _): store.schemaVersion
        case .postgresql(let store): store.schemaVersion
        }
    }

    func keyFingerprint(recordingIfAbsent fingerprint: String) async throws -> String {
        switch self {
        case .sqlite(let store, _): try await store.keyFingerprint(recordingIfAbsent: fingerprint)
        case .postgresql(let store): try await store.keyFingerprint(recordingIfAbsent: fingerprint)
        }
    }

    /// Gives back the heap memory of SQLite's page cache (`SQLiteStore.releaseCacheMemory`);
    /// nothing on PostgreSQL, whose caches are the server's. Returns the bytes given back.
    func releaseCacheMemory() async throws -> Int {
        switch self {
        case .sqlite(let store, _):
            let cache = try await store.releaseCacheMemory()
            return cache.before - cache.after
        case .postgresql: return 0
        }
    }

    /// Whether the store answers now: nil when it does, else why not.
    func probe() async -> String? {
        switch self {
        case .sqlite: nil
        case .postgresql(let store): await store.probe()
        }
    }

    /// Runs `body` where this daemon should run a job done once per store: at once on SQLite
    /// (one daemon per file), while holding `role` on PostgreSQL. Returns when cancelled.
    func runOncePerStore(_ role: LeaderRole, _ body: @escaping @Sendable () async -> Void) async {
        switch self {
        case .sqlite: await body()
        case .postgresql(let store): await store.whileLeader(role, body)
        }
    }

    /// At shutdown, once nothing writes any more.
    func close(logger: Logger) async {
        switch self {
        case .sqlite(let store, _):
            do {
                try await store.recordCleanShutdown()
            } catch {
                logger.warning("could not record the clean shutdown", metadata: ["error": "\(error)"])
            }
            store.close()
        case .postgresql(let store):
            store.close()
        }
    }
}

/// Checks every `interval` that the store answers and records the result for `ServerInfo`
/// (`otpctl info`, `otpctl doctor`), logging each change: PostgreSQL lost, PostgreSQL back.
struct StorageMonitor: Service {
    let storage: DaemonStorage
    let status: StorageStatus
    let interval: Duration
    let logger: Logger

    func run() async {
        await cancelWhenGracefulShutdown {
            var last: String?
            while !Task.isCancelled {
                let problem = await storage.probe()
                status.record(problem: problem)
                OTPMetrics.setStoreReachable(problem == nil)
                if problem != last {
                    if let problem {
                        logger.error("the store does not answer", metadata: ["problem": "\(problem)"])
                    } else if last != nil {
                        logger.info("the store answers again")
                    }
                    last = problem
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
