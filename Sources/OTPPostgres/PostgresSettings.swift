import Foundation
import NIOSSL
import PostgresNIO

/// Where the PostgreSQL store connects, parsed from `[storage] url`, and how.
///
/// The URL names the server, the database and the user, never the password: a password in the
/// URL would sit in the TOML file and in `ps` output, so it is refused. The password comes from
/// a file of mode 0600 (or a systemd credential, which is one).
///
/// Accepted forms:
/// - `postgresql://USER@HOST:PORT/DATABASE?sslmode=MODE` (TCP; the port defaults to 5432)
/// - `postgresql://USER@/DATABASE?host=/run/postgresql&port=5432` (a Unix socket directory, as
///   libpq spells it; the socket is `DIRECTORY/.s.PGSQL.PORT`)
///
/// `sslmode` is `disable`, `require` (encrypted, the server's certificate not checked) or
/// `verify-full` (encrypted, the certificate checked against the system's roots or
/// `sslrootcert=PATH`, and the host name against it). Over TCP the default is `verify-full`: a
/// second factor's state must not cross a network in the clear or to an impostor unless the
/// operator says so. Over a Unix socket TLS is neither needed nor possible: the default is
/// `disable` and anything else is refused.
public struct PostgresSettings: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The socket file's full path.
        case unixSocket(path: String)
    }

    public enum TLSMode: String, Sendable, Equatable {
        case disable
        case require
        case verifyFull = "verify-full"
    }

    public var endpoint: Endpoint
    public var database: String
    public var user: String
    public var tls: TLSMode
    /// `sslrootcert`: a PEM file of the roots to trust instead of the system's.
    public var rootCertificatePath: String?
    /// Connections the daemon keeps at most (`[storage] pool_size`).
    public var poolSize: Int = 16
    /// How long a call waits for a connection before it is answered UNAVAILABLE.
    public var connectTimeout: Duration = .seconds(5)

    /// Why this connection does not keep out an attacker on the network path, for otpd's
    /// start-up log; nil with `verify-full` or over a Unix socket (no network to cross).
    /// (`otpctl doctor` says the same from the `sslmode` at the end of ``redactedURL``.)
    public var tlsWeakness: String? {
        guard case .tcp = endpoint else { return nil }
        switch tls {
        case .verifyFull:
            return nil
        case .require:
            return "sslmode=require encrypts but does not check the server's certificate: anyone on the network "
                + "path can pose as the database"
        case .disable:
            return "sslmode=disable: the accounts' two-factor state crosses the network unencrypted"
        }
    }

    /// The URL without a password, for logs, `otpctl info` and `otpctl doctor`.
    public var redactedURL: String {
        let query = "sslmode=\(tls.rawValue)"
        switch endpoint {
        case .tcp(let host, let port):
            return "postgresql://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)?\(query)"
        case .unixSocket(let path):
            let directory = (path as NSString).deletingLastPathComponent
            let port = path.split(separator: ".").last.map(String.init) ?? "5432"
            return "postgresql://\(user)@/\(database)?host=\(directory)&port=\(port)"
        }
    }

    /// Parses `url`.
    ///
    /// - Throws: `PostgresSettingsError` naming what is wrong (never echoing a password).
    public init(url: String) throws(PostgresSettingsError) {
        guard let components = URLComponents(string: url),
            components.scheme == "postgresql" || components.scheme == "postgres"
        else {
            throw PostgresSettingsError("storage.url must be a postgresql:// URL")
        }
        guard components.password == nil else {
            throw PostgresSettingsError(
                "storage.url must not hold a password; put it in the file named by storage.password_file "
                    + "(mode 0600) or in the systemd credential postgresql-password")
        }
        guard let user = components.user, !user.isEmpty else {
            throw PostgresSettingsError("storage.url must name the user (postgresql://USER@...)")
        }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw PostgresSettingsError("storage.url must name the database (postgresql://USER@HOST/DATABASE)")
        }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard let value = item.value else { throw PostgresSettingsError("storage.url: \(item.name) has no value") }
            guard query[item.name] == nil else { throw PostgresSettingsError("storage.url: \(item.name) is repeated") }
            query[item.name] = value
        }
        let known: Set<String> = ["host", "port", "sslmode", "sslrootcert"]
        if let unknown = query.keys.sorted().first(where: { !known.contains($0) }) {
            throw PostgresSettingsError(
                "storage.url: unknown parameter \(unknown) (known: host, port, sslmode, sslrootcert)")
        }
        var port = components.port ?? 5432
        if let text = query["port"] {
            guard components.port == nil else {
                throw PostgresSettingsError("storage.url names the port twice")
            }
            guard let value = Int(text) else { throw PostgresSettingsError("storage.url: port is not a number") }
            port = value
        }
        guard (1...65535).contains(port) else { throw PostgresSettingsError("storage.url: port must be 1-65535") }

        let socketDirectory = query["host"]
        let host = components.host ?? ""
        switch (host.isEmpty, socketDirectory) {
        case (true, let directory?):
            guard directory.hasPrefix("/") else {
                throw PostgresSettingsError("storage.url: host= must be an absolute socket directory")
            }
            endpoint = .unixSocket(path: directory + (directory.hasSuffix("/") ? "" : "/") + ".s.PGSQL.\(port)")
        case (false, nil):
            endpoint = .tcp(host: host, port: port)
        case (false, _?):
            throw PostgresSettingsError("storage.url names both a host and a socket directory")
        case (true, nil):
            throw PostgresSettingsError(
                "storage.url must name a host (postgresql://USER@HOST/DATABASE) or a socket directory (?host=/run/postgresql)"
            )
        }
        let isSocket = if case .unixSocket = endpoint { true } else { false }
        if let mode = query["sslmode"] {
            guard let parsed = TLSMode(rawValue: mode) else {
                throw PostgresSettingsError("storage.url: sslmode must be disable, require or verify-full")
            }
            tls = parsed
        } else {
            tls = isSocket ? .disable : .verifyFull
        }
        if isSocket && tls != .disable {
            throw PostgresSettingsError("storage.url: TLS is not available over a Unix socket; leave sslmode out")
        }
        rootCertificatePath = query["sslrootcert"]
        if rootCertificatePath != nil && tls != .verifyFull {
            throw PostgresSettingsError("storage.url: sslrootcert needs sslmode=verify-full")
        }
        self.user = user
        self.database = database
    }

    /// Reads the password from `path`: its first line, which must not be empty. The file must
    /// belong to otpd's user and be readable by nobody else (mode 0600 or 0400), like the key
    /// file.
    public static func readPassword(path: String) throws(PostgresSettingsError) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw PostgresSettingsError(
                "the PostgreSQL password file \(path) cannot be read: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw PostgresSettingsError(
                "the PostgreSQL password file \(path) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); "
                    + "chmod 600 it")
        }
        guard info.st_uid == geteuid() else {
            throw PostgresSettingsError("the PostgreSQL password file \(path) does not belong to otpd's user")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            throw PostgresSettingsError("the PostgreSQL password file \(path) cannot be read as UTF-8")
        }
        let password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        guard !password.isEmpty else { throw PostgresSettingsError("the PostgreSQL password file \(path) is empty") }
        return password
    }

    /// The password otpd uses: from `file` when one is named, else from the systemd credential
    /// `postgresql-password` (`LoadCredential=` puts it in `$CREDENTIALS_DIRECTORY`), else none
    /// (a server that trusts the Unix socket's peer). The daemon and `otpd migrate-store` both
    /// find it here.
    public static func password(file: String?, environment: [String: String]) throws(PostgresSettingsError)
        -> String?
    {
        if let file { return try readPassword(path: file) }
        if let directory = environment["CREDENTIALS_DIRECTORY"] {
            let path = directory + "/postgresql-password"
            if FileManager.default.fileExists(atPath: path) { return try readPassword(path: path) }
        }
        return nil
    }

    /// The client configuration PostgresNIO's pool is made from.
    func clientConfiguration(password: String?) throws -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            configuration = PostgresClient.Configuration(
                host: host, port: port, username: user, password: password, database: database,
                tls: try clientTLS())
        case .unixSocket(let path):
            configuration = PostgresClient.Configuration(
                unixSocketPath: path, username: user, password: password, database: database)
        }
        configuration.options.maximumConnections = poolSize
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = connectTimeout
        // Every session: a statement or lock wait that hangs ends within seconds (the caller
        // gets UNAVAILABLE, nothing is half-done: the transaction is rolled back), and a
        // session left idle inside a transaction is ended by the server.
        configuration.options.additionalStartupParameters = [
            ("application_name", "otpd"),
            ("statement_timeout", "10000"),
            ("lock_timeout", "5000"),
            ("idle_in_transaction_session_timeout", "30000"),
        ]
        return configuration
    }

    /// A single connection's configuration (the cluster role's session, outside the pool).
    func connectionConfiguration(password: String?) throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS =
                switch tls {
                case .disable: .disable
                case .require, .verifyFull: .require(try NIOSSLContext(configuration: try tlsConfiguration()))
                }
            configuration = PostgresConnection.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: tls)
        case .unixSocket(let path):
            configuration = PostgresConnection.Configuration(
                unixSocketPath: path, username: user, password: password, database: database)
        }
        configuration.options.connectTimeout = .seconds(Int64(connectTimeout.components.seconds))
        configuration.options.additionalStartupParameters = [("application_name", "otpd")]
        return configuration
    }

    private func tlsConfiguration() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if self.tls == .require {
            tls.certificateVerification = .none
        } else {
            tls.certificateVerification = .fullVerification
            if let rootCertificatePath { tls.trustRoots = .file(rootCertificatePath) }
        }
        return tls
    }

    private func clientTLS() throws -> PostgresClient.Configuration.TLS {
        tls == .disable ? .disable : .require(try tlsConfiguration())
    }
}

/// A `[storage]` setting for PostgreSQL that cannot be used; the message says which and why.
public struct PostgresSettingsError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
