import Foundation
import OTPCore
import OTPPostgres
import OTPServer
import TOMLKit

/// Everything otpd can be told, with the defaults used when neither the TOML file nor a flag
/// says otherwise. The defaults need no file: socket, database, key and SMS outbox all live in
/// the working directory.
struct DaemonConfiguration: Sendable {
    // [server]
    var socketPath = "otpd.sock"
    var socketMode: UInt32 = 0o660
    var socketGroup: String?
    var allowedUIDs: [UInt32] = []
    var allowedGIDs: [UInt32] = []
    var adminUIDs: [UInt32] = []
    var adminGIDs: [UInt32] = []
    var maximumFrameBytes = 64 * 1024
    var idleTimeoutSeconds = 300
    var frameTimeoutSeconds = 10
    var maximumConnections = 1024
    var maximumCallsInFlight = 512
    var answerKiBPerConnection = 1024
    var answerMiBTotal = 64
    var threads = 0
    /// Quiet seconds after which otpd gives back the pages it does not use (`IdleMemoryRelease`); 0: never.
    var releaseMemoryAfterIdleSeconds = 10
    // [storage]
    var databasePath = "otpd.sqlite"
    var synchronous = "full"
    /// When the background check of every page runs: "after_unclean_shutdown", "every_start", "off".
    var integrityCheck = "after_unclean_shutdown"
    var keyFile: String?
    /// "sqlite" (default) or "postgresql" (several daemons on one database: `storageURL`).
    var storageBackend = "sqlite"
    var storageURL = ""
    /// The PostgreSQL password's file (mode 0600); else the systemd credential
    /// `postgresql-password`; never the TOML or the command line.
    var storagePasswordFile: String?
    var storagePoolSize = 16
    // [log]
    var logLevel = "info"
    // [sms]
    var smsSender = "outbox"
    var outboxPath = "outbox.jsonl"
    // [codes], [lockout], [sms] budgets, [totp], [backup]
    var policy = TwoFactorPolicy()
    // [[twilio]]: the senders used when sms.sender is "twilio", tried in order.
    var twilio: [TwilioSettings] = []
    // [retention]: read into `policy`; how often the pruner runs.
    var pruneIntervalSeconds = 600
    // [notify]: the notification hook (off when `notifyCommand` is nil).
    var notifyCommand: String?
    var notifyKinds: Set<EventKind> = TwoFactorService.defaultNotifiedKinds
    var notifyTimeoutSeconds = 10
    // [metrics]: GET /metrics on this host:port (off when empty); loopback only unless allowed.
    var metricsListen = ""
    var metricsAllowNonLoopback = false
}

/// A configuration problem: otpd prints it and exits with status 2.
struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
}

extension DaemonConfiguration {
    /// Reads a TOML file over the defaults.
    mutating func load(file path: String) throws(ConfigurationError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(description: "cannot read config file \(path): \(error.localizedDescription)")
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                description: "\(path):\(error.source.begin.line):\(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigurationError(description: "\(path): \(error)")
        }
        for key in root.keys {
            if key == "twilio" {
                // [[twilio]] (several senders, tried in order) or a single [twilio] table.
                let tables: [TOMLTable]
                if let table = root[key]?.table {
                    tables = [table]
                } else if let array = root[key]?.array {
                    var list: [TOMLTable] = []
                    for item in array {
                        guard let table = item.table else {
                            throw ConfigurationError(
                                description: "\(path): twilio must be a table or an array of tables")
                        }
                        list.append(table)
                    }
                    tables = list
                } else {
                    throw ConfigurationError(description: "\(path): twilio must be a table or an array of tables")
                }
                twilio = []
                for table in tables {
                    twilio.append(try TwilioSettings(reader: TableReader(file: path, table: "twilio", values: table)))
                }
                continue
            }
            guard let table = root[key]?.table else {
                throw ConfigurationError(
                    description: Self.tables.contains(key)
                        ? "\(path): '\(key)' must be a table ([\(key)])" : "\(path): unknown table or key '\(key)'")
            }
            let reader = TableReader(file: path, table: key, values: table)
            try apply(table: key, reader)
            try reader.refuseKeysNotRead()
        }
    }

    /// The tables of the file besides `[[twilio]]`; each one's keys are the ones `apply` reads.
    static let tables: Set<String> = [
        "server", "storage", "log", "sms", "sms_breaker", "codes", "lockout", "totp", "retention", "notify", "backup",
        "metrics",
    ]

    /// Reads every key `table` may have. The keys a table accepts are exactly the ones read
    /// here: `TableReader.refuseKeysNotRead` refuses any other, so there is no second list to
    /// keep in step, and a typo is never ignored.
    private mutating func apply(table: String, _ r: TableReader) throws(ConfigurationError) {
        switch table {
        case "server":
            try r.string("socket") { socketPath = $0 }
            try r.string("socket_mode") { text throws(ConfigurationError) in
                guard let mode = UInt32(text, radix: 8), mode <= 0o777 else {
                    throw ConfigurationError(description: "\(r.file): server.socket_mode must be octal like \"0660\"")
                }
                socketMode = mode
            }
            try r.string("socket_group") { socketGroup = $0.isEmpty ? nil : $0 }
            try r.ids("allowed_uids") { allowedUIDs = $0 }
            try r.ids("allowed_gids") { allowedGIDs = $0 }
            try r.ids("admin_uids") { adminUIDs = $0 }
            try r.ids("admin_gids") { adminGIDs = $0 }
            try r.int("max_frame_bytes", 256...(16 << 20)) { maximumFrameBytes = $0 }
            try r.int("idle_timeout_seconds", 1...86_400) { idleTimeoutSeconds = $0 }
            try r.int("frame_timeout_seconds", 1...3_600) { frameTimeoutSeconds = $0 }
            try r.int("max_connections", 1...100_000) { maximumConnections = $0 }
            try r.int("max_calls_in_flight", 1...100_000) { maximumCallsInFlight = $0 }
            try r.int("answer_kib_per_connection", 64...1_048_576) { answerKiBPerConnection = $0 }
            try r.int("answer_mib_total", 1...65_536) { answerMiBTotal = $0 }
            try r.int("threads", 0...256) { threads = $0 }
            try r.int("release_memory_after_idle_seconds", 0...86_400) { releaseMemoryAfterIdleSeconds = $0 }
        case "storage":
            try r.string("database") { databasePath = $0 }
            try r.string("synchronous") { synchronous = $0 }
            try r.string("integrity_check") { integrityCheck = $0 }
            try r.string("key_file") { keyFile = $0 }
            try r.string("backend") { storageBackend = $0 }
            try r.string("url") { storageURL = $0 }
            try r.string("password_file") { storagePasswordFile = $0.isEmpty ? nil : $0 }
            try r.int("pool_size", 1...256) { storagePoolSize = $0 }
        case "log":
            try r.string("level") { logLevel = $0 }
        case "sms":
            try r.string("sender") { smsSender = $0 }
            try r.string("outbox") { outboxPath = $0 }
            try r.string("brand") { policy.smsBrand = $0 }
            try r.int("resend_cooldown_seconds", 0...3600) { policy.resendCooldown = TimeInterval($0) }
            try r.int("max_resend_cooldown_seconds", 0...86_400) { policy.maximumResendCooldown = TimeInterval($0) }
            try r.int("per_account_per_hour", 1...1000) { policy.smsPerAccountPerHour = $0 }
            try r.int("per_phone_per_day", 1...1000) { policy.smsPerPhonePerDay = $0 }
            try r.int("verifications_per_phone_per_day", 1...1000) { policy.smsVerificationsPerPhonePerDay = $0 }
            try r.int("per_country_per_hour", 0...1_000_000) { policy.smsPerCountryPerHour = $0 }
            try r.int("global_per_minute", 0...1_000_000) { policy.smsGlobalPerMinute = $0 }
            try r.strings("allowed_country_codes") { codes throws(ConfigurationError) in
                for code in codes
                where code.isEmpty || code.count > 3 || !code.allSatisfy(\.isASCII) || Int(code) == nil {
                    throw ConfigurationError(
                        description:
                            "\(r.file): sms.allowed_country_codes: \"\(code)\" is not a calling code like \"44\"")
                }
                policy.allowedCountryCodes = Set(codes)
            }
        case "sms_breaker":
            try r.bool("enabled") { policy.smsBreaker.enabled = $0 }
            try r.int("window_minutes", 1...1440) { policy.smsBreaker.window = TimeInterval($0) * 60 }
            try r.int("range_digits", 4...8) { policy.smsBreaker.prefixDigits = $0 }
            try r.int("min_texts_per_range", 1...100_000) { policy.smsBreaker.minimumTextsPerRange = $0 }
            try r.int("min_texts_per_country", 0...1_000_000) { policy.smsBreaker.minimumTextsPerCountry = $0 }
            try r.int("min_verified_percent", 1...100) { policy.smsBreaker.minimumVerifiedFraction = Double($0) / 100 }
            try r.int("decision_seconds", 10...86_400) { policy.smsBreaker.decisionDelay = TimeInterval($0) }
            try r.int("cool_off_minutes", 1...10_080) { policy.smsBreaker.coolOff = TimeInterval($0) * 60 }
        case "codes":
            try r.int("length", CodeDigits.minimum...CodeDigits.maximum) { policy.codeLength = CodeDigits($0)! }
            try r.int("lifetime_seconds", 30...600) { policy.codeLifetime = TimeInterval($0) }
            try r.int("attempts_per_challenge", 1...20) { policy.attemptsPerChallenge = $0 }
        case "lockout":
            try r.int("threshold", 1...100) { policy.lockThreshold = $0 }
            try r.int("max_consecutive_failures", 1...100) { policy.maximumConsecutiveFailures = $0 }
            try r.ids("durations_seconds") { values in policy.lockDurations = values.map { TimeInterval($0) } }
        case "totp":
            try r.string("issuer") { policy.issuer = $0 }
            try r.int("window", 0...2) { policy.totpWindow = $0 }
            try r.int("enrollment_lifetime_seconds", 60...86_400) { policy.totpEnrollmentLifetime = TimeInterval($0) }
        case "retention":
            try r.int("events_days", 0...36_500) { policy.eventRetention = $0 == 0 ? nil : TimeInterval($0) * 86_400 }
            try r.int("deliveries_days", 0...36_500) {
                policy.deliveryRetention = $0 == 0 ? nil : TimeInterval($0) * 86_400
            }
            try r.int("prune_interval_seconds", 10...86_400) { pruneIntervalSeconds = $0 }
        case "metrics":
            try r.string("listen") { metricsListen = $0 }
            try r.bool("allow_non_loopback") { metricsAllowNonLoopback = $0 }
        case "notify":
            try r.string("command") { (command) throws(ConfigurationError) in
                guard command.isEmpty || command.hasPrefix("/") else {
                    throw ConfigurationError(description: "\(r.file): notify.command must be an absolute path")
                }
                notifyCommand = command.isEmpty ? nil : command
            }
            try r.strings("kinds") { (kinds) throws(ConfigurationError) in
                // A misspelt kind would silently never be notified: refuse it.
                var parsed: Set<EventKind> = []
                for name in kinds {
                    guard let kind = EventKind(rawValue: name) else {
                        let known = TwoFactorService.recordedKinds.map(\.rawValue).sorted().joined(separator: ", ")
                        throw ConfigurationError(
                            description:
                                "\(r.file): notify.kinds: unknown event kind \"\(name.prefix(100))\" (known: \(known))")
                    }
                    parsed.insert(kind)
                }
                notifyKinds = parsed
            }
            try r.int("timeout_seconds", 1...300) { notifyTimeoutSeconds = $0 }
        case "backup":
            try r.int("count", 5...20) { policy.backupCodeCount = $0 }
            try r.int("low_watermark", 0...20) { policy.backupCodesLowWatermark = $0 }
            try r.strings("proof_purposes") { names throws(ConfigurationError) in
                var purposes: Set<CodePurpose> = []
                for name in names {
                    guard let purpose = CodePurpose(rawValue: name), purpose.yieldsProof else {
                        throw ConfigurationError(
                            description:
                                "\(r.file): backup.proof_purposes: \"\(name)\" must be change_phone, disable_factor or manage_factors"
                        )
                    }
                    purposes.insert(purpose)
                }
                policy.backupCodeProofPurposes = purposes
            }
        default:
            throw ConfigurationError(description: "\(r.file): unknown table or key '\(table)'")
        }
    }

    /// Checks values that no single key can check alone.
    func validate() throws(ConfigurationError) {
        if !metricsListen.isEmpty {
            _ = try MetricsAddress.parse(metricsListen, allowNonLoopback: metricsAllowNonLoopback)
        }
        switch storageBackend {
        case "sqlite":
            guard storageURL.isEmpty, storagePasswordFile == nil else {
                throw ConfigurationError(
                    description: "storage.url and storage.password_file are for backend = \"postgresql\"")
            }
        case "postgresql":
            do {
                _ = try PostgresSettings(url: storageURL)
            } catch {
                throw ConfigurationError(description: error.description)
            }
        default:
            throw ConfigurationError(
                description: "storage.backend must be \"sqlite\" or \"postgresql\", not \"\(storageBackend)\"")
        }
        guard ["full", "normal"].contains(synchronous) else {
            throw ConfigurationError(
                description: "storage.synchronous must be \"full\" or \"normal\", not \"\(synchronous)\"")
        }
        guard ["after_unclean_shutdown", "every_start", "off"].contains(integrityCheck) else {
            throw ConfigurationError(
                description:
                    "storage.integrity_check must be \"after_unclean_shutdown\", \"every_start\" or \"off\", not \"\(integrityCheck)\""
            )
        }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw ConfigurationError(
                description: "log level must be one of trace, debug, info, notice, warning, error, critical")
        }
        switch smsSender {
        case "outbox":
            break
        case "twilio":
            guard !twilio.isEmpty else {
                throw ConfigurationError(description: "sms.sender is \"twilio\" but there is no [[twilio]] table")
            }
        default:
            throw ConfigurationError(description: "sms.sender must be \"outbox\" or \"twilio\", not \"\(smsSender)\"")
        }
        do {
            try policy.validate()
        } catch {
            throw ConfigurationError(description: "configuration: \(error.message)")
        }
        if let command = notifyCommand, access(command, X_OK) != 0 {
            throw ConfigurationError(description: "notify.command: \(command) is not an executable file")
        }
        var paths = [("server.socket", socketPath)]
        if storageBackend == "sqlite" { paths.append(("storage.database", databasePath)) }
        if smsSender == "outbox" { paths.append(("sms.outbox", outboxPath)) }
        for (name, path) in paths {
            try Self.checkWritableParent(of: path, name: name)
        }
        guard socketPath.utf8.count <= SocketServer.maximumSocketPathLength else {
            throw ConfigurationError(
                description:
                    "server.socket path is too long (at most \(SocketServer.maximumSocketPathLength) bytes: otpd binds it as <path>.XXXXXX/s first)"
            )
        }
    }

    /// A path is usable when its directory exists and is a writable directory.
    static func checkWritableParent(of path: String, name: String) throws(ConfigurationError) {
        guard !path.isEmpty else { throw ConfigurationError(description: "\(name) must not be empty") }
        let directory = (path as NSString).deletingLastPathComponent
        let dir = directory.isEmpty ? "." : directory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ConfigurationError(description: "\(name): directory \(dir) does not exist")
        }
        guard access(dir, W_OK | X_OK) == 0 else {
            throw ConfigurationError(description: "\(name): directory \(dir) is not writable")
        }
    }
}

/// Typed access to one TOML table, with errors that name the file, table and key.
/// Reads one table's keys, each with its type and range, and remembers which keys it was
/// asked for, so that any other key in the table can be refused as unknown.
final class TableReader {
    let file: String
    let table: String
    let values: TOMLTable
    /// The keys asked for so far (whether the file has them or not).
    private var asked: Set<String> = []

    init(file: String, table: String, values: TOMLTable) {
        self.file = file
        self.table = table
        self.values = values
    }

    /// Refuses the first key of the table that no reader asked for: a typo or a key of
    /// another table.
    func refuseKeysNotRead() throws(ConfigurationError) {
        for key in values.keys.sorted() where !asked.contains(key) {
            throw ConfigurationError(description: "\(file): unknown key '\(table).\(key)'")
        }
    }

    /// The value of `key`, remembering that it was asked for.
    private func value(_ key: String) -> (any TOMLValueConvertible)? {
        asked.insert(key)
        return values[key]
    }

    private func wrongType(_ key: String, _ expected: String) -> ConfigurationError {
        ConfigurationError(description: "\(file): \(table).\(key) must be \(expected)")
    }

    func string(_ key: String, _ set: (String) throws(ConfigurationError) -> Void) throws(ConfigurationError) {
        guard let value = value(key) else { return }
        guard let text = value.string else { throw wrongType(key, "a string") }
        try set(text)
    }

    func int(_ key: String, _ range: ClosedRange<Int>, _ set: (Int) -> Void) throws(ConfigurationError) {
        guard let value = value(key) else { return }
        guard let number = value.int else { throw wrongType(key, "an integer") }
        guard range.contains(number) else {
            throw wrongType(key, "between \(range.lowerBound) and \(range.upperBound)")
        }
        set(number)
    }

    func bool(_ key: String, _ set: (Bool) -> Void) throws(ConfigurationError) {
        guard let value = value(key) else { return }
        guard let flag = value.bool else { throw wrongType(key, "true or false") }
        set(flag)
    }

    func strings(_ key: String, _ set: ([String]) throws(ConfigurationError) -> Void) throws(ConfigurationError) {
        guard let value = value(key) else { return }
        guard let array = value.array else { throw wrongType(key, "an array of strings") }
        var result: [String] = []
        for item in array {
            guard let text = item.string else { throw wrongType(key, "an array of strings") }
            result.append(text)
        }
        try set(result)
    }

    func ids(_ key: String, _ set: ([UInt32]) -> Void) throws(ConfigurationError) {
        guard let value = value(key) else { return }
        guard let array = value.array else { throw wrongType(key, "an array of integers") }
        var result: [UInt32] = []
        for item in array {
            guard let number = item.int, number >= 0, number <= Int(UInt32.max) else {
                throw wrongType(key, "an array of non-negative integers")
            }
            result.append(UInt32(number))
        }
        set(result)
    }
}

#if canImport(Glibc)
    import Glibc
#endif
