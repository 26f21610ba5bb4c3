import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A throw-away PostgreSQL cluster for the tests: `initdb` into a fresh directory under /tmp, a
/// server listening only on a Unix socket in that directory, password (SCRAM) authentication
/// for every connection, and a superuser whose random password only this process knows.
///
/// It needs Debian's `postgresql` package (`scripts/install-deps.sh` installs it): the newest
/// `/usr/lib/postgresql/*/bin` provides `initdb`, `pg_ctl` and `postgres`, and `/usr/bin/psql` is
/// the client. When the package is missing, starting a cluster throws (tests fail, never skip).
///
/// `initdb` and `postgres` refuse to run as root. When the tests run as root, every server-side
/// command (`initdb`, `pg_ctl`, and through it `postgres`) runs as the system user `postgres`
/// (Debian's package creates it), or as `otpd-pgtest` (created with `useradd --system` when
/// `postgres` does not exist), through `setpriv --reuid --regid --init-groups` (or `runuser -u`).
/// The client commands (`psql`) run as the current user. When the tests do not run as root,
/// everything runs as the current user.
///
/// Layout of the directory (`rootDirectory`, mode 0711, owned by the server's user):
/// `data` (the cluster, 0700), `socket` (the socket `.s.PGSQL.<port>`, 0711),
/// `postgres.log` (the server's log) and `owner` (which test process owns the cluster, so a
/// later run can reap the cluster of a process that crashed before its exit handler ran).
///
/// All the stored properties are immutable and `Sendable` (the lifecycle lock is a `Mutex`), so
/// the class is `Sendable` without `@unchecked`.
public final class PostgresTestCluster: Sendable {
    /// The directory holding `initdb`, `pg_ctl` and `postgres` (the newest installed version).
    public let binDirectory: String
    /// The fresh temporary directory holding everything below; removed when the cluster is.
    public let rootDirectory: String
    /// The cluster's data directory (`initdb -D`).
    public let dataDirectory: String
    /// The directory of the server's Unix socket (the only way in, unless `init(tcp:)`).
    public let socketDirectory: String
    /// The server's log (`pg_ctl -l`); its tail is part of every error this type throws.
    public let logFile: String
    /// The port, which names the socket file (`.s.PGSQL.<port>`): 5432, or with `init(tcp:)`
    /// the free TCP port the server also listens on at 127.0.0.1.
    public let port: Int
    /// The superuser's name (`initdb -U`): `otpd_admin`.
    public let superuser: String
    /// The superuser's random password (SCRAM-SHA-256, as every role's).
    public let superuserPassword: String
    /// Whether this is the cluster `shared()` returns.
    public let isShared: Bool

    /// The user the server-side commands run as; nil when they run as the current user.
    let serverAccount: SystemAccount?
    /// Serializes `start`, `stop` and `destroy`; true once destroyed.
    private let lifecycle = Mutex(false)

    /// The path of the client.
    public static let psqlPath = "/usr/bin/psql"

    // MARK: - Making clusters

    /// The cluster of this test process: created and started by the first call (which takes
    /// about a second), then the same instance for every call, from any thread. It is stopped
    /// (`pg_ctl stop -m immediate`) and its directory removed when the process exits.
    ///
    /// Tests share it, so they must not stop or break it: each test takes its own database
    /// (`createDatabase`). A test that stops, restarts or damages the server starts its own
    /// cluster with `init()`.
    ///
    /// When the first start fails, this and every later call throw that same error (without
    /// retrying, so a broken setup fails each test quickly).
    public static func shared() throws -> PostgresTestCluster {
        try sharedCluster.withLock { state throws -> PostgresTestCluster in
            if let state { return try state.get() }
            let result = Result { try PostgresTestCluster(shared: true, tcp: nil) }
            state = result
            return try result.get()
        }
    }

    /// Creates and starts a private cluster (`initdb`, then `start()`), for tests that stop,
    /// restart or break the server. Call `destroy()` when done; otherwise it is stopped and
    /// removed when the process exits, like the shared one.
    public convenience init() throws {
        try self.init(shared: false, tcp: nil)
    }

    /// Creates and starts a private cluster that also listens on `127.0.0.1` at a free port
    /// (`port`; the socket file is named after it too), with TLS when `tcp` carries a
    /// certificate and key, without (`ssl = off`) when not: for tests of otpd's TLS client.
    /// `pg_hba.conf` asks for SCRAM passwords from 127.0.0.1 as from the socket.
    public convenience init(tcp: TCPListening) throws {
        try self.init(shared: false, tcp: tcp)
    }

    /// How a private cluster listens on TCP (`init(tcp:)`).
    public struct TCPListening: Sendable {
        /// The server's certificate chain (PEM), or nil for a server without TLS.
        public var certificatePEM: String?
        /// The certificate's private key (PEM).
        public var keyPEM: String?

        public init(certificatePEM: String? = nil, keyPEM: String? = nil) {
            self.certificatePEM = certificatePEM
            self.keyPEM = keyPEM
        }
    }

    /// How this cluster listens on TCP; nil: only on its Unix socket.
    public let tcp: TCPListening?

    private init(shared: Bool, tcp: TCPListening?) throws {
        Self.reapAbandonedClustersOnce()
        binDirectory = try Self.findBinDirectory()
        serverAccount = getuid() == 0 ? try SystemAccount.forServer() : nil
        rootDirectory = try Self.makeRootDirectory(owner: serverAccount)
        dataDirectory = rootDirectory + "/data"
        socketDirectory = rootDirectory + "/socket"
        logFile = rootDirectory + "/postgres.log"
        self.tcp = tcp
        port = tcp == nil ? 5432 : try freeTCPPort()
        superuser = "otpd_admin"
        superuserPassword = randomHex(bytes: 16)
        isShared = shared
        do {
            try initialize()
            try start()
        } catch {
            stopAndRemove()
            throw error
        }
        register(self)
    }

    /// Writes the owner file and the socket directory, then runs `initdb`.
    private func initialize() throws {
        let owner = "\(Self.pidNamespace())\n\(getpid())\n"
        try Data(owner.utf8).write(to: URL(fileURLWithPath: rootDirectory + "/owner"))
        try makeDirectory(socketDirectory, mode: 0o711, owner: serverAccount)
        let passwordFile = rootDirectory + "/superuser-password"
        try writeSecretFile(passwordFile, contents: superuserPassword + "\n", owner: serverAccount)
        if let certificate = tcp?.certificatePEM, let key = tcp?.keyPEM {
            try writeSecretFile(rootDirectory + "/server.crt", contents: certificate, owner: serverAccount)
            try writeSecretFile(rootDirectory + "/server.key", contents: key, owner: serverAccount)
        }
        defer { unlink(passwordFile) }
        try runServerCommand(
            "initdb",
            [
                binDirectory + "/initdb", "-D", dataDirectory, "-U", superuser, "--pwfile=" + passwordFile,
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                "-N", "--no-instructions",
            ])
    }

    // MARK: - Lifecycle

    /// Starts the server on the existing data directory and socket directory, and returns once
    /// it accepts connections (`pg_ctl start -w -t 60`). Throws when it is already running.
    public func start() throws {
        try lifecycle.withLock { destroyed throws in
            guard !destroyed else { throw failure("start: the cluster was destroyed") }
            try runServerCommand(
                "pg_ctl start",
                [
                    binDirectory + "/pg_ctl", "start", "-D", dataDirectory, "-l", logFile, "-w", "-t", "60",
                    "-o", serverOptions,
                ])
        }
    }

    /// Stops the server and returns once it is down (`pg_ctl stop -w`). `mode` is `smart`
    /// (waits for the clients to disconnect), `fast` (disconnects them, then a clean shutdown)
    /// or `immediate` (no shutdown checkpoint: the next start recovers, as after a crash).
    /// Throws when the server is not running.
    ///
    /// Never on the shared cluster while other tests use it: stop your own (`init()`).
    public func stop(mode: String = "fast") throws {
        guard ["smart", "fast", "immediate"].contains(mode) else {
            throw failure("stop: unknown shutdown mode \(mode) (smart, fast or immediate)")
        }
        try lifecycle.withLock { destroyed throws in
            guard !destroyed else { throw failure("stop: the cluster was destroyed") }
            try runServerCommand(
                "pg_ctl stop",
                [binDirectory + "/pg_ctl", "stop", "-D", dataDirectory, "-m", mode, "-w", "-t", "60"])
        }
    }

    /// Stops a private cluster (`-m immediate`, when it runs) and removes its directory; then
    /// `start`, `stop` and `createDatabase` throw. Does nothing on the shared cluster, which
    /// lives until the process exits. Never throws: a failure leaves at worst a directory under
    /// /tmp, which a later test run reaps.
    public func destroy() {
        guard !isShared else { return }
        let first = lifecycle.withLock { destroyed in
            defer { destroyed = true }
            return !destroyed
        }
        guard first else { return }
        stopAndRemove()
        unregister(self)
    }

    /// The server's options: only the Unix socket (and 127.0.0.1 with `init(tcp:)`), the port
    /// that names it, and room for the tests (400 connections, larger lock tables for
    /// SERIALIZABLE transactions), durable commits as in production.
    var serverOptions: String {
        var listening = ["listen_addresses=''"]
        if let tcp {
            listening = ["listen_addresses='127.0.0.1'", "ssl=\(tcp.certificatePEM == nil ? "off" : "on")"]
            if tcp.certificatePEM != nil {
                listening += [
                    "ssl_cert_file='\(rootDirectory)/server.crt'", "ssl_key_file='\(rootDirectory)/server.key'",
                ]
            }
        }
        return
            (listening + [
                "unix_socket_directories='\(socketDirectory)'", "port=\(port)",
                "max_connections=400", "fsync=on", "synchronous_commit=on", "shared_buffers=128MB",
                "max_locks_per_transaction=256", "max_pred_locks_per_transaction=256",
            ]).map { "-c " + $0 }.joined(separator: " ")
    }

    // MARK: - Databases and SQL

    /// Creates a database only the caller uses: a fresh login role with a random password
    /// (`CREATE ROLE … LOGIN PASSWORD …`) and a fresh database it owns (`CREATE DATABASE …
    /// OWNER …`), both named `<prefix>_<pid>_<counter>_<random>` (the role with `_owner`
    /// added). `prefix` is lower-case letters, digits and underscores, starting with a letter or
    /// underscore, at most 24 characters. The database lives until the cluster does.
    public func createDatabase(prefix: String = "otpd") throws -> PostgresTestDatabase {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789_")
        guard !prefix.isEmpty, prefix.count <= 24, prefix.allSatisfy(allowed.contains),
            !prefix.first!.isNumber
        else {
            throw failure("createDatabase: the prefix \(prefix) is not [a-z_][a-z0-9_]{0,23}")
        }
        let number = registry.withLock { state in
            state.databaseCounter += 1
            return state.databaseCounter
        }
        let name = "\(prefix)_\(getpid())_\(number)_\(randomHex(bytes: 4))"
        let user = name + "_owner"
        let password = randomHex(bytes: 16)
        _ = try runPSQL(
            statements: [
                "CREATE ROLE \(user) LOGIN PASSWORD '\(password)'",
                "CREATE DATABASE \(name) OWNER \(user)",
            ],
            database: "postgres", user: superuser, password: superuserPassword,
            socketDirectory: socketDirectory, port: port, logFile: logFile)
        return PostgresTestDatabase(
            name: name, user: user, password: password, socketDirectory: socketDirectory, port: port,
            logFile: logFile)
    }

    /// Runs `sql` (one or more statements, one transaction) as the superuser on `database`
    /// through the socket, and returns what psql prints: without headers, one row a line,
    /// columns separated by `|` (`psql -At`), the last newline removed. Throws when psql fails
    /// or a statement does (`ON_ERROR_STOP`).
    ///
    /// For tests to look at or break the server, e.g.
    /// `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '…'`.
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        try runPSQL(
            statements: [sql], database: database, user: superuser, password: superuserPassword,
            socketDirectory: socketDirectory, port: port, logFile: logFile)
    }

    // MARK: - Running the server's commands

    /// Runs a server-side command as `serverAccount` (or the current user), in the root
    /// directory (which that user can read), and throws when it fails.
    private func runServerCommand(_ what: String, _ arguments: [String]) throws {
        let command = serverAccount.map { $0.wrap(arguments) } ?? arguments
        let result: CommandResult
        do {
            result = try runCommand(command, environment: serverEnvironment(), directory: rootDirectory)
        } catch {
            throw PostgresTestClusterError(
                what: what + ": \(error)", command: command, status: nil, standardError: "", standardOutput: "",
                logFile: logFile)
        }
        guard result.status == 0 else {
            throw PostgresTestClusterError(
                what: what, command: command, status: result.status, standardError: result.standardError,
                standardOutput: result.standardOutput, logFile: logFile)
        }
    }

    private func failure(_ what: String) -> PostgresTestClusterError {
        PostgresTestClusterError(
            what: what, command: [], status: nil, standardError: "", standardOutput: "", logFile: logFile)
    }

    /// Stops the server if it runs (`pg_ctl stop -m immediate`), then removes the directory.
    /// Also the `atexit` handler's: it takes no lock and spawns without `Process`.
    fileprivate func stopAndRemove() {
        if FileManager.default.fileExists(atPath: dataDirectory + "/postmaster.pid") {
            let command = [binDirectory + "/pg_ctl", "stop", "-D", dataDirectory, "-m", "immediate", "-w", "-t", "30"]
            _ = try? spawnAndWait(
                serverAccount.map { $0.wrap(command) } ?? command, environment: nil, directory: nil, output: nil,
                errors: nil)
        }
        try? FileManager.default.removeItem(atPath: rootDirectory)
    }

    // MARK: - Finding and preparing

    /// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, `pg_ctl` and `postgres`.
    private static func findBinDirectory() throws -> String {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [])
            .compactMap { Int($0) }
            .filter { version in
                ["initdb", "pg_ctl", "postgres"].allSatisfy {
                    FileManager.default.isExecutableFile(atPath: "\(base)/\(version)/bin/\($0)")
                }
            }
        guard let newest = versions.max() else {
            throw PostgresTestClusterError(
                what:
                    "no PostgreSQL server found (no \(base)/*/bin/initdb): install Debian's postgresql package "
                    + "(scripts/install-deps.sh does)",
                command: [], status: nil, standardError: "", standardOutput: "", logFile: nil)
        }
        guard FileManager.default.isExecutableFile(atPath: psqlPath) else {
            throw PostgresTestClusterError(
                what: "no \(psqlPath): install Debian's postgresql package (scripts/install-deps.sh does)",
                command: [], status: nil, standardError: "", standardOutput: "", logFile: nil)
        }
        return "\(base)/\(newest)/bin"
    }

    /// `mkdtemp("/tmp/otpd-pg-XXXXXX")`, mode 0711 (anyone may reach the socket; the data
    /// directory inside stays 0700), owned by the server's user.
    private static func makeRootDirectory(owner: SystemAccount?) throws -> String {
        var template = Array("/tmp/otpd-pg-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw PostgresTestClusterError(
                what: "mkdtemp /tmp/otpd-pg-XXXXXX: \(String(cString: strerror(errno)))", command: [], status: nil,
                standardError: "", standardOutput: "", logFile: nil)
        }
        let path = String(cString: made)
        do {
            try setModeAndOwner(path, mode: 0o711, owner: owner)
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        return path
    }

    /// `/proc/self/ns/pid`, so the reaper never judges a process of another PID namespace.
    fileprivate static func pidNamespace() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")) ?? "unknown"
    }

    // MARK: - Reaping what crashed test runs left

    private static func reapAbandonedClustersOnce() {
        let first = registry.withLock { state in
            defer { state.reaped = true }
            return !state.reaped
        }
        if first { reapAbandonedClusters() }
    }

    /// Removes the `/tmp/otpd-pg-*` directories whose owner process (same PID namespace) no
    /// longer exists, after stopping their server (SIGQUIT, what `-m immediate` sends) when its
    /// command line names that directory.
    private static func reapAbandonedClusters() {
        let namespace = pidNamespace()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for entry in entries where entry.hasPrefix("otpd-pg-") {
            let directory = "/tmp/" + entry
            guard let owner = try? String(contentsOfFile: directory + "/owner", encoding: .utf8) else { continue }
            let lines = owner.split(separator: "\n").map(String.init)
            guard lines.count == 2, lines[0] == namespace, let ownerPID = pid_t(lines[1]) else { continue }
            guard kill(ownerPID, 0) == -1, errno == ESRCH else { continue }
            let pidFile = directory + "/data/postmaster.pid"
            if let contents = try? String(contentsOfFile: pidFile, encoding: .utf8),
                let line = contents.split(separator: "\n").first, let server = pid_t(line), server > 0
            {
                let commandLine = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(server)/cmdline")))
                    .map { String(decoding: $0, as: UTF8.self) }
                if let commandLine, commandLine.contains(directory + "/data") {
                    kill(server, SIGQUIT)
                    for _ in 0..<100 where kill(server, 0) == 0 { usleep(50_000) }
                    if kill(server, 0) == 0 { continue }
                }
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}

/// A database of a `PostgresTestCluster`, owned by a login role of its own.
public struct PostgresTestDatabase: Sendable {
    /// The database's name.
    public let name: String
    /// The role that owns it (LOGIN, not a superuser).
    public let user: String
    /// The role's random password.
    public let password: String
    /// The directory of the server's socket.
    public let socketDirectory: String
    /// The server's port (it names the socket file).
    public let port: Int
    /// The server's log, for errors.
    let logFile: String

    init(name: String, user: String, password: String, socketDirectory: String, port: Int, logFile: String) {
        self.name = name
        self.user = user
        self.password = password
        self.socketDirectory = socketDirectory
        self.port = port
        self.logFile = logFile
    }

    /// `postgresql://USER@/NAME?host=SOCKET-DIRECTORY&port=PORT`, the socket directory
    /// percent-encoded (`/` as `%2F`); no password (see `writePasswordFile`).
    public var url: String {
        var unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        unreserved.insert(charactersIn: "-._~")
        let host = socketDirectory.addingPercentEncoding(withAllowedCharacters: unreserved) ?? socketDirectory
        return "postgresql://\(user)@/\(name)?host=\(host)&port=\(port)"
    }

    /// otpd's `[storage]` table for this database, for a daemon that runs in the directory
    /// given to `writePasswordFile` (the password file is named relative to it).
    public var storageTOML: String {
        """
        [storage]
        backend = "postgresql"
        url = "\(url)"
        password_file = "\(name).password"
        """
    }

    /// Writes the password, exactly (no newline), to `<directory>/<name>.password` with mode
    /// 0600 (replacing the file if it exists), and returns that path.
    public func writePasswordFile(in directory: String) throws -> String {
        let path = directory + "/" + name + ".password"
        try writeSecretFile(path, contents: password, owner: nil)
        return path
    }

    /// Runs `sql` as the owner role on this database through the socket, with `password`
    /// (default: the role's own; another one to test a refusal), and returns what psql prints
    /// (as `PostgresTestCluster.psql`). Throws `PostgresTestClusterError` when psql fails: its
    /// `status` is 2 when the connection fails (refused, wrong password), 1 when a statement does.
    public func psql(_ sql: String, password: String? = nil) throws -> String {
        try runPSQL(
            statements: [sql], database: name, user: user, password: password ?? self.password,
            socketDirectory: socketDirectory, port: port, logFile: logFile)
    }
}

/// A failed step of a `PostgresTestCluster`: what failed, the command and its exit status,
/// what it wrote, and the tail of the server's log.
public struct PostgresTestClusterError: Error, CustomStringConvertible, Sendable {
    /// What failed, in words.
    public let what: String
    /// The command line (empty when the failure is not a command's).
    public let command: [String]
    /// The exit status (128 + the signal number when killed); nil when the command did not run.
    public let status: Int32?
    /// What the command wrote to stderr (psql's error message, for one).
    public let standardError: String
    /// What the command wrote to stdout.
    public let standardOutput: String
    /// The last lines of the server's log when the error was made.
    public let logTail: String

    init(
        what: String, command: [String], status: Int32?, standardError: String, standardOutput: String,
        logFile: String?
    ) {
        self.what = what
        self.command = command
        self.status = status
        self.standardError = standardError
        self.standardOutput = standardOutput
        logTail = logFile.map { tail(of: $0, lines: 30) } ?? ""
    }

    public var description: String {
        var text = "PostgreSQL test cluster: \(what)"
        if !command.isEmpty { text += "\ncommand: " + command.joined(separator: " ") }
        if let status { text += "\nexit status: \(status)" }
        if !standardError.isEmpty { text += "\nstderr:\n" + standardError }
        if !standardOutput.isEmpty { text += "\nstdout:\n" + standardOutput }
        if !logTail.isEmpty { text += "\nserver log (last lines):\n" + logTail }
        return text
    }
}

// MARK: - The process-wide state

private struct Registry {
    var live: [PostgresTestCluster] = []
    var exitHandlerInstalled = false
    var reaped = false
    var databaseCounter = 0
}

/// The clusters to stop at exit, and the counters. Never held while a command runs.
private let registry = Mutex(Registry())

/// The shared cluster, or why it could not start. Held while the first one starts, so the
/// other callers wait for it.
private let sharedCluster = Mutex<Result<PostgresTestCluster, any Error>?>(nil)

private func register(_ cluster: PostgresTestCluster) {
    let install = registry.withLock { state in
        state.live.append(cluster)
        defer { state.exitHandlerInstalled = true }
        return !state.exitHandlerInstalled
    }
    if install {
        atexit {
            let clusters = registry.withLock { state in
                defer { state.live = [] }
                return state.live
            }
            for cluster in clusters { cluster.stopAndRemove() }
        }
    }
}

private func unregister(_ cluster: PostgresTestCluster) {
    registry.withLock { state in state.live.removeAll { $0 === cluster } }
}

// MARK: - The server's user

/// A system account the server-side commands run as, when the tests run as root.
struct SystemAccount: Sendable {
    let name: String
    let uid: uid_t
    let gid: gid_t

    /// `postgres` when it exists, else `otpd-pgtest`, created if need be.
    static func forServer() throws -> SystemAccount {
        if let account = lookUp("postgres") ?? lookUp("otpd-pgtest") { return account }
        let command = [
            "/usr/sbin/useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "otpd-pgtest",
        ]
        let result = try? runCommand(command, environment: ProcessInfo.processInfo.environment, directory: nil)
        // Another test process may have created it meanwhile: look again before failing.
        if let account = lookUp("otpd-pgtest") { return account }
        throw PostgresTestClusterError(
            what: "no user postgres, and creating the system user otpd-pgtest failed", command: command,
            status: result?.status, standardError: result?.standardError ?? "",
            standardOutput: result?.standardOutput ?? "", logFile: nil)
    }

    static func lookUp(_ name: String) -> SystemAccount? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        let status = getpwnam_r(name, &entry, &buffer, buffer.count, &found)
        guard status == 0, found != nil else { return nil }
        return SystemAccount(name: name, uid: entry.pw_uid, gid: entry.pw_gid)
    }

    /// `command`, run as this account: `setpriv` (util-linux), else `runuser`.
    func wrap(_ command: [String]) -> [String] {
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }
        if let setpriv { return [setpriv, "--reuid=\(name)", "--regid=\(gid)", "--init-groups", "--"] + command }
        return ["/usr/sbin/runuser", "-u", name, "--"] + command
    }
}

// MARK: - Files

private func setModeAndOwner(_ path: String, mode: mode_t, owner: SystemAccount?) throws {
    guard chmod(path, mode) == 0 else { throw posixFailure("chmod \(path)") }
    if let owner, chown(path, owner.uid, owner.gid) != 0 { throw posixFailure("chown \(path)") }
}

private func makeDirectory(_ path: String, mode: mode_t, owner: SystemAccount?) throws {
    guard mkdir(path, mode) == 0 else { throw posixFailure("mkdir \(path)") }
    try setModeAndOwner(path, mode: mode, owner: owner)
}

/// Writes `contents` to `path` with mode 0600 (also when the file existed), owned by `owner`.
private func writeSecretFile(_ path: String, contents: String, owner: SystemAccount?) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard fd >= 0 else { throw posixFailure("open \(path)") }
    defer { close(fd) }
    guard fchmod(fd, 0o600) == 0 else { throw posixFailure("fchmod \(path)") }
    if let owner, fchown(fd, owner.uid, owner.gid) != 0 { throw posixFailure("fchown \(path)") }
    let bytes = Array(contents.utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count else { throw posixFailure("write \(path)") }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice for port 0;
/// another process may take it before the caller binds it, which the tests accept).
public func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw posixFailure("socket") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            bind(fd, address, length) == 0 && getsockname(fd, address, &length) == 0
        }
    }
    guard bound else { throw posixFailure("bind 127.0.0.1:0") }
    return Int(UInt16(bigEndian: address.sin_port))
}

private func posixFailure(_ what: String) -> PostgresTestClusterError {
    PostgresTestClusterError(
        what: "\(what): \(String(cString: strerror(errno)))", command: [], status: nil, standardError: "",
        standardOutput: "", logFile: nil)
}

/// The last `lines` lines of the file (of its last 16 KiB), or a note that it cannot be read.
private func tail(of path: String, lines: Int) -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else { return "(no log at \(path))" }
    defer { try? handle.close() }
    let size = (try? handle.seekToEnd()) ?? 0
    try? handle.seek(toOffset: size > 16_384 ? size - 16_384 : 0)
    let text = String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines + 1)
        .joined(separator: "\n").trimmingCharacters(in: .newlines)
}

private func randomHex(bytes: Int) -> String {
    let digits = Array("0123456789abcdef")
    var generator = SystemRandomNumberGenerator()
    var text = ""
    for _ in 0..<bytes {
        let byte = UInt8.random(in: 0...255, using: &generator)
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0F)])
    }
    return text
}

// MARK: - Commands

/// Why a command could not run (not: that it failed).
struct CommandError: Error, CustomStringConvertible {
    let description: String
}

struct CommandResult {
    let status: Int32
    let standardOutput: String
    let standardError: String
}

/// The environment without the `PG*` variables (a `PGHOST` or `PGDATA` of the developer's
/// must not redirect the tests), plus `extra`.
private func serverEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }.merging(extra) { $1 }
}

/// Runs psql on the socket, each statement as its own `-c` (so `CREATE DATABASE` is not in
/// a transaction block), and returns its output, the last newline removed.
private func runPSQL(
    statements: [String], database: String, user: String, password: String, socketDirectory: String, port: Int,
    logFile: String
) throws -> String {
    var command = [
        PostgresTestCluster.psqlPath, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-h", socketDirectory, "-p",
        "\(port)", "-U", user, "-d", database,
    ]
    for statement in statements { command += ["-c", statement] }
    let environment = serverEnvironment([
        "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "otpd-test-psql",
    ])
    let result: CommandResult
    do {
        result = try runCommand(command, environment: environment, directory: nil)
    } catch {
        throw PostgresTestClusterError(
            what: "psql: \(error)", command: command, status: nil, standardError: "", standardOutput: "",
            logFile: logFile)
    }
    guard result.status == 0 else {
        throw PostgresTestClusterError(
            what: "psql", command: command, status: result.status, standardError: result.standardError,
            standardOutput: result.standardOutput, logFile: logFile)
    }
    var output = result.standardOutput
    if output.hasSuffix("\n") { output.removeLast() }
    return output
}

/// Runs `command` (an absolute path, then the arguments) with stdin from /dev/null and stdout
/// and stderr into unlinked temporary files, and waits for it. Files, not pipes: nothing to
/// drain while waiting, and nothing waits for a daemon the command started to close a pipe.
///
/// With `posix_spawn`, not Foundation's `Process`: on Linux, `Process` learns that its child
/// ended when a socket the child inherits reaches end-of-file, and the server `pg_ctl start`
/// leaves running inherits that socket too, so `waitUntilExit` would wait for the server.
func runCommand(
    _ command: [String], environment: [String: String], directory: String?
) throws(CommandError) -> CommandResult {
    let output = try CaptureFile()
    let errors = try CaptureFile()
    let status: Int32
    do {
        status = try spawnAndWait(
            command, environment: environment, directory: directory, output: output.descriptor,
            errors: errors.descriptor)
    } catch {
        throw CommandError(description: "cannot run \(command[0]): \(String(cString: strerror(error.code)))")
    }
    return CommandResult(status: status, standardOutput: output.contents(), standardError: errors.contents())
}

/// An unlinked temporary file (close-on-exec) a child writes its output to.
private final class CaptureFile {
    let descriptor: Int32

    init() throws(CommandError) {
        var template = Array("/tmp/otpd-pg-output-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw CommandError(description: "mkstemp /tmp/otpd-pg-output-XXXXXX: \(String(cString: strerror(errno)))")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        descriptor = fd
    }

    deinit { close(descriptor) }

    func contents() -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var offset: off_t = 0
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, offset) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
            offset += off_t(count)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private struct SpawnError: Error {
    let code: Int32
}

/// Spawns `command` and waits for it; returns its exit status, or 128 + the signal that killed
/// it. stdin is /dev/null, stdout and stderr go to `output` and `errors` (/dev/null when nil),
/// and every other descriptor is closed in the child, so the server `pg_ctl` starts holds
/// nothing of this process's. `environment` nil keeps this process's. Neither `Process` nor
/// locks, so it also serves the `atexit` handler.
private func spawnAndWait(
    _ command: [String], environment: [String: String]?, directory: String?, output: Int32?, errors: Int32?
) throws(SpawnError) -> Int32 {
    var actions = posix_spawn_file_actions_t()
    guard posix_spawn_file_actions_init(&actions) == 0 else { throw SpawnError(code: errno) }
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    for (source, target) in [(output, Int32(1)), (errors, Int32(2))] {
        if let source {
            posix_spawn_file_actions_adddup2(&actions, source, target)
        } else {
            posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
        }
    }
    closeInheritedDescriptors(&actions)
    if let directory { changeDirectory(&actions, directory) }

    let arguments: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
    defer { for argument in arguments { free(argument) } }
    var variables: [UnsafeMutablePointer<CChar>?] = []
    if let environment { variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil] }
    defer { for variable in variables { free(variable) } }

    var pid: pid_t = 0
    let spawned =
        variables.isEmpty
        ? posix_spawn(&pid, command[0], &actions, nil, arguments, environ)
        : posix_spawn(&pid, command[0], &actions, nil, arguments, variables)
    guard spawned == 0 else { throw SpawnError(code: spawned) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 {
        guard errno == EINTR else { throw SpawnError(code: errno) }
    }
    let signal = status & 0x7F
    return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
}

/// Closes every descriptor from 3 up in the child: glibc's `posix_spawn_file_actions_addclosefrom_np`
/// (2.34), else one close action per descriptor open now (closing one closed meanwhile is no error).
private func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
    if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
        if unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3) == 0 { return }
    }
    let open = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap {
        Int32($0)
    }
    for descriptor in open where descriptor > 2 { posix_spawn_file_actions_addclose(&actions, descriptor) }
}

/// Starts the child in `directory` (glibc's `posix_spawn_file_actions_addchdir_np`, 2.29), so a
/// command run as another user does not start in a directory it cannot read. Where glibc lacks
/// it, the child stays in this process's directory (the commands take absolute paths).
private func changeDirectory(_ actions: inout posix_spawn_file_actions_t, _ directory: String) {
    typealias Chdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
    guard let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else { return }
    _ = unsafeBitCast(symbol, to: Chdir.self)(&actions, directory)
}
