import ArgumentParser
import Foundation
import OTPClient
import OTPFiles

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `otpctl doctor`: checks an installation from the administrator's side and says what to fix.
///
/// Nothing is changed and no text is sent: the checks only look at files and ask otpd the
/// read-only calls Health and ServerInfo.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the socket, the daemon, the database, the SMS sender and the key file; say what to fix.",
        discussion: """
            Prints one line per check: ok, warning (works, but worth a look), problem (must be \
            fixed) or skipped (could not be checked by this user, or nothing to check), with \
            what to do about it. Checks: socket (the path exists and is a socket), \
            socket_permissions (mode 0660 and the group; a world-accessible socket is a \
            warning), socket_access (this user can connect), health and server_info (the \
            daemon answers; DATABASE_DAMAGED when otpd's background check of the database found \
            damage), database (exists, not readable by group or others; doctor does not read it: \
            otpd --check-database reads every page; for PostgreSQL, that otpd reaches it), \
            database_wal (the WAL file is there), database_tls (PostgreSQL only: a warning \
            unless the server's certificate is checked, sslmode=verify-full), sms_sender ("outbox" sends nothing; "twilio" is not tested \
            here: otpctl sms test NUMBER sends a real text) and key_file (mode 0600, 32 bytes; \
            the file from --key-file, else $CREDENTIALS_DIRECTORY/otpd.key or ./otpd.key when \
            present). Run it as otpd's user (sudo -u otpd otpctl doctor) to check the files \
            only that user can see.

            Exit status: 0 when no check found a problem (warnings do not fail), 1 when one \
            did, 3 when otpd cannot be reached (the socket is missing or refuses this user, or \
            the daemon does not answer).

            JSON: {"checks": [{"name", "status" (ok, warning, problem or skipped), "detail", \
            "fix" (null when there is nothing to do)}], "ok" (true when no problem)}.
            """)

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp(
            "otpd's key file to check (default: $CREDENTIALS_DIRECTORY/otpd.key or ./otpd.key when present).",
            valueName: "path"),
        completion: .file())
    var keyFile: String?

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        var doctor = Doctor(socketPath: global.socketPath)
        await doctor.checkDaemon(client: global.client())
        doctor.checkKeyFile(explicitPath: keyFile, environment: ProcessInfo.processInfo.environment)
        let checks = doctor.checks
        let problems = checks.filter { $0.status == .problem }.count
        let warnings = checks.filter { $0.status == .warning }.count

        if global.json {
            JSONOutput.print(["checks": checks.map(\.jsonObject), "ok": problems == 0])
        } else {
            let nameWidth = checks.map(\.name.count).max() ?? 0
            for check in checks { print(check.line(nameWidth: nameWidth)) }
        }
        if doctor.unreachable {
            throw CommandFailure(
                status: .unreachable, message: "otpd cannot be reached at \(global.socketPath); see the fix above")
        }
        if problems > 0 {
            throw CommandFailure(
                status: .refused,
                message: "\(problems) \(problems == 1 ? "problem" : "problems") found; see the fixes above")
        }
        if !global.json {
            print(
                warnings == 0
                    ? "No problems found."
                    : "No problems found (\(warnings) \(warnings == 1 ? "warning" : "warnings")).")
        }
    }
}

/// One check of `otpctl doctor`.
struct DoctorCheck {
    /// How a check came out.
    enum Status: String {
        /// As it should be.
        case ok
        /// Works, but is worth a look (does not change the exit status).
        case warning
        /// Must be fixed (exit status 1, or 3 when otpd cannot be reached).
        case problem
        /// Could not be checked here (permission, nothing given, or the daemon did not answer).
        case skipped
    }

    /// A stable snake_case name (`socket`, `key_file`, ...).
    var name: String
    var status: Status
    /// What was found.
    var detail: String
    /// What to do about it, or nil when nothing needs doing.
    var fix: String?

    /// `{"name", "status", "detail", "fix"}` with `fix` null when there is nothing to do.
    var jsonObject: [String: Any] {
        ["name": name, "status": status.rawValue, "detail": detail, "fix": fix.map { $0 as Any } ?? NSNull()]
    }

    /// `warning  sms_sender   outbox: ...; fix: ...` on one line.
    func line(nameWidth: Int) -> String {
        let label = status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
        let paddedName = name.padding(toLength: max(nameWidth, name.count), withPad: " ", startingAt: 0)
        var text = "\(label) \(paddedName)  \(detail)"
        if let fix { text += "; fix: \(fix)" }
        return text
    }
}

/// The checks of `otpctl doctor`, gathered in order.
struct Doctor {
    let socketPath: String
    private(set) var checks: [DoctorCheck] = []
    /// True when otpd could not be reached: exit status 3.
    private(set) var unreachable = false

    init(socketPath: String) {
        self.socketPath = socketPath
    }

    private mutating func add(
        _ name: String, _ status: DoctorCheck.Status, _ detail: String, fix: String? = nil
    ) {
        checks.append(DoctorCheck(name: name, status: status, detail: detail, fix: fix))
    }

    // MARK: Socket and daemon

    /// The socket file, connecting to it, and the daemon's answers with what they tell about
    /// the database and the SMS sender. Closes `client`.
    mutating func checkDaemon(client: OTPClient) async {
        guard checkSocketFile() else {
            unreachable = true
            await client.close()
            skipDaemonChecks(because: "otpd cannot be reached")
            return
        }
        guard checkConnect() else {
            unreachable = true
            await client.close()
            skipDaemonChecks(because: "otpd cannot be reached")
            return
        }
        let health: HealthResponse
        do {
            health = try await client.health()
        } catch {
            await client.close()
            let failure = CommandFailure(error)
            if failure.status == .unreachable {
                unreachable = true
                add(
                    "health", .problem, "otpd does not answer: \(error.code): \(error.message)",
                    fix: "if otpd closed the connection, allow this user in [server] allowed_uids or allowed_gids "
                        + "(otpd's log names the refused uid: journalctl -u otpd); else see whether otpd is stuck")
            } else {
                add(
                    "health", .problem, "otpd answered Health with \(error.code): \(error.message)",
                    fix: "see otpd's log (journalctl -u otpd)")
            }
            skipDaemonChecks(because: "otpd did not answer Health", includingHealth: false)
            return
        }
        if health.status == "SERVING" {
            add("health", .ok, "otpd answers: \(health.status)")
        } else if health.status == "DATABASE_DAMAGED" {
            add(
                "health", .problem,
                "otpd answers DATABASE_DAMAGED: its background check found damaged pages in the database (otpd "
                    + "refuses every request that meets them)",
                fix: "see otpd's log (journalctl -u otpd); stop otpd, run otpd --check-database as otpd's user, and "
                    + "restore the database from its last backup (or try sqlite3 FILE .recover on a copy)")
        } else {
            add(
                "health", .problem, "otpd answers \(health.status), not SERVING",
                fix: "see otpd's log (journalctl -u otpd)")
        }

        let info: ServerInfoResponse
        do {
            info = try await client.serverInfo()
        } catch {
            await client.close()
            add(
                "server_info", .problem, "otpd answered ServerInfo with \(error.code): \(error.message)",
                fix: error.code == .unimplemented ? "update otpd" : "see otpd's log (journalctl -u otpd)")
            for name in ["database", "database_wal", "sms_sender"] {
                add(name, .skipped, "not checked: ServerInfo did not answer")
            }
            return
        }
        await client.close()
        let backend = info.storageBackend.isEmpty ? "sqlite" : info.storageBackend
        let facts =
            "otpd \(info.version), \(backend) schema \(info.schemaVersion), database \(info.databasePath), "
            + "SMS sender \(info.smsSender.isEmpty ? "(none)" : info.smsSender), up \(info.uptimeSeconds) s, "
            + "\(info.connections) of \(info.maxConnections) connections"
        if info.unrecordedEvents > 0 {
            add(
                "server_info", .problem, facts + ", \(info.unrecordedEvents) records of sent texts not stored",
                fix: "storage failed after texts were sent, so the delivery log and the audit trail miss them: see "
                    + "otpd's log (journalctl -u otpd) and check the disk")
        } else if info.maxConnections > 0, info.connections * 10 >= info.maxConnections * 9 {
            add(
                "server_info", .warning, facts,
                fix: "nearly every connection is in use: raise [server] max_connections or find the client that "
                    + "keeps connections open")
        } else {
            add("server_info", .ok, facts)
        }
        if backend == "postgresql" {
            checkPostgreSQL(info)
        } else {
            checkDatabase(path: info.databasePath)
        }
        checkSMSSender(info.smsSender)
    }

    private mutating func skipDaemonChecks(because reason: String, includingHealth: Bool = true) {
        let names = (includingHealth ? ["health"] : []) + ["server_info", "database", "database_wal", "sms_sender"]
        for name in names { add(name, .skipped, "not checked: \(reason)") }
    }

    /// Where the socket should be and how it should look; false when there is no socket to try.
    private mutating func checkSocketFile() -> Bool {
        let startHint =
            "start otpd (systemctl start otpd.socket otpd, or make run), or give otpd's socket "
            + "with --socket PATH or $OTPD_SOCKET"
        var info = stat()
        guard stat(socketPath, &info) == 0 else {
            let reason = errno
            if reason == ENOENT {
                add("socket", .problem, "no socket at \(socketPath)", fix: startHint)
            } else {
                add(
                    "socket", .problem, "cannot look at \(socketPath): \(systemError(reason))",
                    fix: "run otpctl as a user that may enter the socket's directory (a member of the socket's group)")
            }
            add("socket_permissions", .skipped, "not checked: no socket")
            add("socket_access", .skipped, "not checked: no socket")
            return false
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            add(
                "socket", .problem, "\(socketPath) is \(fileKind(info.st_mode)), not a socket",
                fix: "give otpd's socket with --socket PATH or $OTPD_SOCKET; otpd refuses to replace a file that "
                    + "is not a socket, so move it away before starting otpd on this path")
            add("socket_permissions", .skipped, "not checked: not a socket")
            add("socket_access", .skipped, "not checked: not a socket")
            return false
        }
        add("socket", .ok, "\(socketPath) is a socket")

        let mode = info.st_mode & 0o777
        let owner = userName(info.st_uid)
        let group = groupName(info.st_gid)
        let facts = "mode \(octal(mode)), owner \(owner), group \(group)"
        let modeFix =
            "set [server] socket_mode = \"0660\" and socket_group = the shop's group in otpd.toml "
            + "(or SocketMode=0660 and SocketGroup= in otpd.socket) and restart otpd"
        if mode & 0o007 != 0 {
            add(
                "socket_permissions", .warning,
                "\(facts): any local user can connect (otpd's allowed_uids is the "
                    + "only gate left)", fix: modeFix)
        } else if mode == 0o660 {
            add("socket_permissions", .ok, facts)
        } else if mode & 0o060 == 0 {
            add(
                "socket_permissions", .warning, "\(facts): only \(owner) can connect (0660 expected)",
                fix: "if the shop's PHP process runs as another user, " + modeFix)
        } else {
            add("socket_permissions", .warning, "\(facts) (0660 expected)", fix: modeFix)
        }
        return true
    }

    /// Connects once by hand, to tell "permission denied" from "nobody listens".
    private mutating func checkConnect() -> Bool {
        let me = userName(getuid())
        let reason = connectProbe(socketPath)
        switch reason {
        case 0:
            add("socket_access", .ok, "this user (\(me)) can connect")
            return true
        case EACCES, EPERM:
            var info = stat()
            let group = stat(socketPath, &info) == 0 ? groupName(info.st_gid) : "the socket's group"
            add(
                "socket_access", .problem, "this user (\(me)) may not connect: \(systemError(reason))",
                fix: "add \(me) to group \(group) (sudo usermod -aG \(group) \(me), then log in again), or run "
                    + "otpctl as otpd's user or root")
        case ECONNREFUSED:
            add(
                "socket_access", .problem,
                "nobody accepts connections on \(socketPath) (a stale socket: otpd is "
                    + "not running)", fix: "start otpd (systemctl start otpd.socket otpd, or make run)")
        default:
            add(
                "socket_access", .problem, "cannot connect to \(socketPath): \(systemError(reason))",
                fix: "check the path (--socket PATH or $OTPD_SOCKET) and that otpd is running")
        }
        return false
    }

    // MARK: Database and SMS

    /// PostgreSQL is checked by otpd itself (every few seconds), not from here: this host may
    /// have no route or no password to it, and must not need one.
    private mutating func checkPostgreSQL(_ info: ServerInfoResponse) {
        if info.storageReachable {
            add(
                "database", .ok,
                "PostgreSQL at \(info.databasePath) answers otpd (schema version \(info.schemaVersion))")
        } else {
            add(
                "database", .problem,
                "otpd cannot reach PostgreSQL at \(info.databasePath): \(info.storageProblem)",
                fix: "calls are answered UNAVAILABLE until it is back: check the server (systemctl status postgresql, "
                    + "pg_isready), the network, and otpd's log (journalctl -u otpd)")
        }
        add("database_wal", .skipped, "not checked: PostgreSQL keeps its own WAL")
        checkPostgreSQLTLS(url: info.databasePath)
    }

    /// What otpd's connection to PostgreSQL lets an attacker on the network do, read from the
    /// `sslmode` its URL ends with (otpd writes every TCP URL so; a Unix socket's has none).
    private mutating func checkPostgreSQLTLS(url: String) {
        let fix =
            "set sslmode=verify-full (the default) in [storage] url, with sslrootcert=PATH for a private "
            + "authority, and restart otpd"
        if url.hasSuffix("?sslmode=verify-full") {
            add("database_tls", .ok, "TLS, the server's certificate and host name checked (sslmode=verify-full)")
        } else if url.hasSuffix("?sslmode=require") {
            add(
                "database_tls", .warning,
                "sslmode=require encrypts but does not check the server's certificate: anyone on the network path "
                    + "can pose as the database", fix: fix)
        } else if url.hasSuffix("?sslmode=disable") {
            add(
                "database_tls", .warning,
                "sslmode=disable: the accounts' two-factor state crosses the network unencrypted", fix: fix)
        } else {
            add("database_tls", .ok, "a Unix socket: nothing crosses the network")
        }
    }

    private mutating func checkDatabase(path: String) {
        guard !path.isEmpty else {
            add("database", .skipped, "otpd did not say where its database is")
            add("database_wal", .skipped, "not checked: no database path")
            return
        }
        let sudoHint = "run otpctl doctor as otpd's user (sudo -u otpd otpctl doctor) or as root to check it"
        var info = stat()
        guard stat(path, &info) == 0 else {
            let reason = errno
            if reason == EACCES {
                add("database", .skipped, "cannot look at \(path) as this user: \(systemError(reason))", fix: sudoHint)
                add("database_wal", .skipped, "not checked: the database's directory is not visible to this user")
            } else {
                add(
                    "database", .problem, "otpd names \(path), but it cannot be found here: \(systemError(reason))",
                    fix: "if otpd runs in its own mount namespace, run doctor where it sees the same files; else "
                        + "check [storage] database in otpd.toml and --database")
                add("database_wal", .skipped, "not checked: no database file")
            }
            return
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            add(
                "database", .problem, "\(path) is \(fileKind(info.st_mode)), not a database file",
                fix: "point [storage] database at a file and restart otpd")
            add("database_wal", .skipped, "not checked: no database file")
            return
        }
        let mode = info.st_mode & 0o777
        let size = "\(info.st_size) bytes"
        if mode & 0o077 != 0 {
            add(
                "database", .problem,
                "\(path): mode \(octal(mode)), readable by group or others (it holds phone "
                    + "numbers, code hashes and encrypted secrets)", fix: "chmod 600 \(path) \(path)-wal \(path)-shm")
        } else {
            add(
                "database", .ok,
                "\(path): mode \(octal(mode)), \(size), owner \(userName(info.st_uid)) (its pages are checked by "
                    + "otpd --check-database, and by otpd in the background after an unclean shutdown)")
        }

        var wal = stat()
        let walPath = path + "-wal"
        if stat(walPath, &wal) == 0 {
            let walMode = wal.st_mode & 0o777
            if walMode & 0o077 != 0 {
                add(
                    "database_wal", .problem, "\(walPath): mode \(octal(walMode)), readable by group or others",
                    fix: "chmod 600 \(walPath) \(path)-shm")
            } else {
                add("database_wal", .ok, "\(walPath) is there (WAL journal), mode \(octal(walMode))")
            }
        } else if errno == EACCES {
            add("database_wal", .skipped, "cannot look at \(walPath) as this user", fix: sudoHint)
        } else {
            add(
                "database_wal", .warning,
                "no \(walPath): otpd keeps the database in WAL mode, and the file is "
                    + "there while it runs",
                fix: "make sure otpd may write to the database's directory (it creates \(walPath) there); see "
                    + "otpd's log")
        }
    }

    private mutating func checkSMSSender(_ sender: String) {
        switch sender {
        case "outbox":
            add(
                "sms_sender", .warning,
                "outbox: codes are written to a file and no text is sent (fine for "
                    + "development and tests, not for production)",
                fix: "for production set [sms] sender = \"twilio\" and a [[twilio]] table in otpd.toml")
        case "twilio":
            add(
                "sms_sender", .ok,
                "twilio (nothing was sent by this check; otpctl sms test NUMBER sends a real "
                    + "test text)")
        default:
            add(
                "sms_sender", .warning, "otpd reports an unknown SMS sender \"\(sender)\"",
                fix: "check [sms] sender in otpd.toml (\"outbox\" or \"twilio\")")
        }
    }

    // MARK: Key file

    /// The key file from `--key-file`, else the first of `$CREDENTIALS_DIRECTORY/otpd.key` and
    /// `./otpd.key` that exists.
    mutating func checkKeyFile(explicitPath: String?, environment: [String: String]) {
        let credentials = environment["CREDENTIALS_DIRECTORY"].flatMap { $0.isEmpty ? nil : $0 }
        var path = explicitPath
        if path == nil {
            let candidates = (credentials.map { [$0 + "/otpd.key"] } ?? []) + ["otpd.key"]
            path = candidates.first { NewPrivateFile.exists($0) }
        }
        guard let path else {
            add(
                "key_file", .skipped,
                "no key file given, and none at "
                    + (credentials.map { "\($0)/otpd.key or " } ?? "") + "./otpd.key",
                fix: "give otpd's key file with --key-file PATH (the [storage] key_file or --key-file otpd uses)")
            return
        }
        var info = stat()
        guard stat(path, &info) == 0 else {
            let reason = errno
            if reason == EACCES {
                add(
                    "key_file", .skipped, "cannot look at \(path) as this user: \(systemError(reason))",
                    fix: "run otpctl doctor as otpd's user or as root to check it")
            } else {
                add(
                    "key_file", .problem, "\(path): \(systemError(reason))",
                    fix: "give the path otpd uses ([storage] key_file or --key-file); without its key otpd cannot "
                        + "read the secrets in the database")
            }
            return
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            add(
                "key_file", .problem, "\(path) is \(fileKind(info.st_mode)), not a file",
                fix: "give the path of otpd's key file")
            return
        }
        let mode = info.st_mode & 0o777
        // systemd credentials show an ACL entry for the service as group-read (0440), as otpd allows.
        let inCredentials = credentials.map { path.hasPrefix($0 + "/") } ?? false
        let allowed: mode_t = inCredentials ? 0o040 : 0
        var problems: [String] = []
        var fixes: [String] = []
        if mode & 0o077 & ~allowed != 0 {
            problems.append("mode \(octal(mode)), readable by group or others (otpd refuses to start with it)")
            fixes.append("chmod 600 \(path)")
        }
        if info.st_size != 32 {
            problems.append("\(info.st_size) bytes, not 32")
            fixes.append(
                "restore otpd's key from its backup (a new key cannot read the secrets already in the database)")
        }
        if problems.isEmpty {
            add("key_file", .ok, "\(path): mode \(octal(mode)), 32 bytes")
        } else {
            add(
                "key_file", .problem, "\(path): " + problems.joined(separator: "; "), fix: fixes.joined(separator: "; ")
            )
        }
    }

    // MARK: Helpers

    /// 0 when a connection to `path` succeeds, else the `errno` of `socket` or `connect`.
    private func connectProbe(_ path: String) -> Int32 {
        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let bytes = Array(path.utf8)
        guard bytes.count < capacity else { return ENAMETOOLONG }
        #if canImport(Glibc)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0 ? 0 : errno
    }

    private func systemError(_ code: Int32) -> String { String(cString: strerror(code)) }

    private func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        case S_IFSOCK: "a socket"
        case S_IFIFO: "a FIFO"
        default: "a device or special file"
        }
    }

    private func userName(_ uid: uid_t) -> String {
        guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "uid \(uid)" }
        return String(cString: name)
    }

    private func groupName(_ gid: gid_t) -> String {
        guard let entry = getgrgid(gid), let name = entry.pointee.gr_name else { return "gid \(gid)" }
        return String(cString: name)
    }
}
