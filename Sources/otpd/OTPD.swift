import ArgumentParser
import COTPSys
import Foundation
import Logging
import OTPCore
import OTPSMS
import OTPServer
import OTPStore
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

/// A reason otpd cannot start (exit status 1).
struct StartError: Error, CustomStringConvertible {
    var description: String
}

/// `--check-database` found damage or could not read the file (exit status 2).
struct DatabaseCheckFailure: Error, CustomStringConvertible {
    var description: String
}

/// The otpd version reported by `ServerInfo` and `--version`.
let otpdVersion = "0.1.0"

@main
struct OTPD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otpd",
        abstract: "The otpd two-factor authentication daemon.",
        discussion: """
            Serves the otp.v1.TwoFactor protocol (length-prefixed protobuf) on a Unix socket. With no \
            configuration file it keeps everything in the working directory: otpd.sock, otpd.sqlite, \
            otpd.key (created with mode 0600) and outbox.jsonl (SMS messages instead of Twilio).
            Flags override the file. Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT), \
            1 when it cannot start (socket in use, corrupt database), 2 for a configuration error.
            --check-database reads every page of the database (PRAGMA integrity_check) and exits \
            0 when it is sound, 2 when it is damaged or cannot be read; it changes nothing and may \
            run while otpd serves.
            See otpd.example.toml for every key.
            otpd migrate-store --from sqlite:PATH --to postgresql://... copies an SQLite database into \
            an empty PostgreSQL one (otpd migrate-store --help).
            """,
        version: otpdVersion)

    @Option(name: .long, help: "TOML configuration file.")
    var config: String?

    @Option(name: .long, help: "Unix socket path (default otpd.sock).")
    var socket: String?

    @Option(name: .long, help: "SQLite database path (default otpd.sqlite).")
    var database: String?

    @Option(
        name: .customLong("key-file"),
        help: "32-byte key file, created 0600 if missing (default otpd.key or $CREDENTIALS_DIRECTORY/otpd.key).")
    var keyFile: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Option(name: .long, help: "SMS outbox file (default outbox.jsonl).")
    var outbox: String?

    @Flag(
        name: .customLong("check-config"),
        help: "Check the configuration (file and flags) and exit: 0 when valid, 2 otherwise.")
    var checkConfig = false

    @Flag(
        name: .customLong("check-database"),
        help: ArgumentHelp(
            "Check every page of the database (PRAGMA integrity_check; reads the whole file) and exit: 0 when sound, 2 when damaged or unreadable.",
            discussion: "Changes nothing and may run while otpd serves (a second reader)."))
    var checkDatabase = false

    /// Parses flags and runs, mapping errors to the documented exit statuses.
    static func main() async {
        // `otpd migrate-store ...`: a one-off command with flags of its own (MigrateStore.swift).
        if CommandLine.arguments.dropFirst().first == "migrate-store" {
            await MigrateStore.runSubcommand(Array(CommandLine.arguments.dropFirst(2)))
        }
        let command: OTPD
        do {
            command = try parse()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
        do {
            try await command.start()
        } catch let error as DatabaseCheckFailure {
            FileHandle.standardError.write(Data("otpd: \(error.description)\n".utf8))
            Foundation.exit(2)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("otpd: \(error.description)\n".utf8))
            Foundation.exit(2)
        } catch {
            FileHandle.standardError.write(Data("otpd: cannot start: \(error)\n".utf8))
            Foundation.exit(1)
        }
        Foundation.exit(0)
    }

    func resolvedConfiguration() throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        if let config { try configuration.load(file: config) }
        if let socket { configuration.socketPath = socket }
        if let database { configuration.databasePath = database }
        if let keyFile { configuration.keyFile = keyFile }
        if let logLevel { configuration.logLevel = logLevel }
        if let outbox { configuration.outboxPath = outbox }
        try configuration.validate()
        return configuration
    }

    func start() async throws {
        let configuration = try resolvedConfiguration()
        if checkConfig {
            print("configuration OK")
            return
        }
        if checkDatabase {
            guard configuration.storageBackend == "sqlite" else {
                throw DatabaseCheckFailure(
                    description:
                        "--check-database reads an SQLite file; PostgreSQL checks its own pages (initdb --data-checksums, amcheck)"
                )
            }
            try checkWholeDatabase(configuration.databasePath)
            return
        }
        // Files otpd creates (database, WAL, key, outbox) are private to its user; the socket's
        // mode is set explicitly when it is bound.
        umask(0o077)
        // A notification hook that exits without reading its input must not kill the daemon.
        signal(SIGPIPE, SIG_IGN)
        let environment = ProcessInfo.processInfo.environment
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "otpd")
        let metrics = DaemonMetrics.bootstrap()

        let keyPath = configuration.keyFile ?? DaemonKey.defaultPath(environment: environment)
        let keys: DaemonKeys
        do {
            keys = try DaemonKeys(
                masterKey: try DaemonKey.loadOrCreate(
                    path: keyPath, credentialsDirectory: environment["CREDENTIALS_DIRECTORY"]))
        } catch let error as DaemonKeyError {
            throw ConfigurationError(description: "key file \(keyPath): \(error)")
        }

        let storage = try await DaemonStorage.open(
            configuration, environment: environment, logger: logger,
            onWaiting: { message in _ = cotp_sd_notify("STATUS=\(message)") })
        try await checkKeyMatchesDatabase(keys: keys, keyPath: keyPath, storage: storage)
        let sms = try SMSSetup.make(configuration, environment: environment, logger: logger)
        let sender = sms.sender
        let service = try TwoFactorService(
            store: storage.domainStore, sender: sender, keys: keys, policy: configuration.policy,
            reportVerifier: sms.verifier, deliveryStatuses: sms.statuses)
        logger.info(
            "otpd starting",
            metadata: [
                "version": "\(otpdVersion)", "storage": "\(storage.backend)", "database": "\(storage.location)",
                "schema.version": "\(storage.schemaVersion)", "key.fingerprint": "\(keys.fingerprint)",
                "sms.sender": "\(sender.name)",
            ])

        let statistics = ConnectionStatistics()
        let storageStatus = StorageStatus()
        let facts = DaemonFacts(
            version: otpdVersion, storageBackend: storage.backend, databasePath: storage.location,
            schemaVersion: UInt32(storage.schemaVersion), smsSender: configuration.smsSender,
            maximumConnections: configuration.maximumConnections, startedAt: .now,
            startedAtUnix: Int64(Date().timeIntervalSince1970), storageStatus: storageStatus)
        // The full check of every page, after ready and only when it is worth its cost (see
        // docs/OPERATIONS.md, "What is checked at start"); Health reports damage it finds.
        // PostgreSQL checks its own pages (data checksums, amcheck); otpd checks only SQLite's.
        let damage = DatabaseDamage()
        var checkInBackground: BackgroundIntegrityCheck?
        var databasePath: String?
        if case .sqlite(let store, _) = storage {
            let runIntegrityCheck =
                switch configuration.integrityCheck {
                case "every_start": true
                case "off": false
                default: store.previousShutdown != .clean
                }
            if runIntegrityCheck {
                logger.info(
                    "the database will be checked in the background",
                    metadata: ["previous_shutdown": "\(store.previousShutdown.rawValue)"])
                checkInBackground = BackgroundIntegrityCheck(path: store.path, logger: logger)
            }
            databasePath = store.path
        }
        let integrityCheck = checkInBackground
        let router = DatabaseHealthRouter(
            inner: TwoFactorRouter(
                facts: facts, statistics: statistics, service: service, logger: logger,
                metricsText: { metrics.text() }),
            damage: damage)

        let server = SocketServer(
            configuration: try serverConfiguration(configuration, environment: environment), router: router,
            statistics: statistics, logger: logger,
            onReady: {
                _ = cotp_sd_notify("READY=1\nSTATUS=serving")
                integrityCheck?.start { damage.record($0) }
            })
        var services: [ServiceGroupConfiguration.ServiceConfiguration] =
            [
                .init(service: server),
                .init(
                    service: Pruner(
                        service: service, storage: storage, interval: .seconds(configuration.pruneIntervalSeconds),
                        logger: logger)),
                .init(
                    service: StorageMonitor(
                        storage: storage, status: storageStatus, interval: .seconds(5), logger: logger)),
                .init(service: PeriodicGauges(databasePath: databasePath)),
            ]
        if configuration.releaseMemoryAfterIdleSeconds > 0 {
            services.append(
                .init(
                    service: IdleMemoryRelease(
                        quietPeriod: .seconds(configuration.releaseMemoryAfterIdleSeconds), storage: storage,
                        logger: logger)))
        }
        if !configuration.metricsListen.isEmpty {
            let address = try MetricsAddress.parse(
                configuration.metricsListen, allowNonLoopback: configuration.metricsAllowNonLoopback)
            services.append(
                .init(
                    service: MetricsEndpoint(host: address.host, port: address.port, metrics: metrics, logger: logger)))
        }
        if let command = configuration.notifyCommand {
            try await service.prepareNotifications()
            let notifier = CommandNotifier(command: command, timeout: .seconds(configuration.notifyTimeoutSeconds))
            services.append(
                .init(
                    service: NotificationHook(
                        service: service, storage: storage, kinds: configuration.notifyKinds, notifier: notifier,
                        logger: logger)))
            logger.info(
                "notification hook on",
                metadata: ["command": "\(command)", "kinds": "\(configuration.notifyKinds.map(\.rawValue).sorted())"])
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        _ = cotp_sd_notify("STOPPING=1")
        await sms.shutdown()
        integrityCheck?.stop()
        await storage.close(logger: logger)
        logger.info("stopped")
    }

    /// The database remembers the fingerprint of the key it was first used with: another key
    /// could check no stored code and open no authenticator secret, so otpd refuses to start.
    private func checkKeyMatchesDatabase(keys: DaemonKeys, keyPath: String, storage: DaemonStorage) async throws {
        let fingerprint = keys.fingerprint
        let recorded = try await storage.keyFingerprint(recordingIfAbsent: fingerprint)
        guard recorded == fingerprint else {
            throw StartError(
                description:
                    "the key in \(keyPath) (fingerprint \(fingerprint)) is not the key \(storage.location) was created with (fingerprint \(recorded)); stored codes and authenticator secrets need the original key file"
            )
        }
    }

    /// `--check-database`: `PRAGMA integrity_check` of the whole file, without opening it for
    /// writing or applying migrations.
    private func checkWholeDatabase(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DatabaseCheckFailure(description: "no database at \(path)")
        }
        let started = ContinuousClock.now
        let problems: [String]
        do {
            problems = try DatabaseCheck.problems(path: path)
        } catch {
            throw DatabaseCheckFailure(description: "\(path) cannot be checked: \(error)")
        }
        guard problems.isEmpty else {
            throw DatabaseCheckFailure(
                description: "\(path) failed PRAGMA integrity_check:\n" + problems.joined(separator: "\n"))
        }
        print("database OK: \(path) passed PRAGMA integrity_check in \(ContinuousClock.now - started)")
    }

    private func serverConfiguration(
        _ configuration: DaemonConfiguration, environment: [String: String]
    ) throws(ConfigurationError) -> ServerConfiguration {
        var listener = ServerConfiguration.Listener.path(configuration.socketPath)
        // systemd socket activation: LISTEN_PID names us and LISTEN_FDS >= 1; the socket is fd 3.
        if let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
            let count = environment["LISTEN_FDS"].flatMap(Int.init), count >= 1
        {
            listener = .inherited(descriptor: 3, path: environment["LISTEN_FDNAMES"])
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        var server = ServerConfiguration(listener: listener)
        server.socketMode = configuration.socketMode
        if let group = configuration.socketGroup {
            if let gid = UInt32(group) {
                server.socketGroup = gid
            } else if let entry = getgrnam(group) {
                server.socketGroup = entry.pointee.gr_gid
            } else {
                throw ConfigurationError(description: "server.socket_group: no group named \(group)")
            }
        }
        server.allowedUIDs = Set(configuration.allowedUIDs)
        server.allowedGIDs = Set(configuration.allowedGIDs)
        server.adminUIDs = Set(configuration.adminUIDs)
        server.adminGIDs = Set(configuration.adminGIDs)
        server.maximumFrameSize = configuration.maximumFrameBytes
        server.idleTimeout = .seconds(configuration.idleTimeoutSeconds)
        server.frameTimeout = .seconds(configuration.frameTimeoutSeconds)
        server.maximumConnections = configuration.maximumConnections
        server.maximumCallsInFlightPerConnection = configuration.maximumCallsInFlight
        server.maximumAnswerBytesPerConnection = configuration.answerKiBPerConnection * 1024
        server.maximumAnswerBytes = configuration.answerMiBTotal * 1024 * 1024
        if configuration.threads > 0 { server.eventLoopThreads = configuration.threads }
        return server
    }
}
