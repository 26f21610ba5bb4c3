import Foundation
import Logging
import OTPCore
import OTPTestSupport
import PostgresNIO
import Synchronization
import Testing

@testable import OTPPostgres

/// otpd's PostgreSQL client over TCP, against real servers: a cluster with TLS whose
/// certificate a throw-away authority signed for `localhost`, and one without TLS. The attacker
/// here sits between otpd and the database: an impostor with another authority's certificate,
/// a certificate for another name, or a server that offers no TLS at all, hoping otpd falls
/// back to plaintext. `verify-full` (the default over TCP) must refuse every one of them and
/// reach the real server encrypted; `require` must still never send anything in the clear.
@Suite("PostgreSQL over TLS", .serialized, .timeLimit(.minutes(3)))
struct PostgresTLSTests {
    /// The suite's servers and certificates, made once.
    struct Servers: Sendable {
        /// The authority otpd is told to trust; it signed the certificates of both TLS servers.
        let authority: TestCertificateAuthority
        /// Another authority, which signed a certificate for `localhost` too.
        let otherAuthority: TestCertificateAuthority
        /// Presents the trusted authority's certificate for `localhost`.
        let real: PostgresTestCluster
        let realDatabase: PostgresTestDatabase
        /// Presents the other authority's certificate for `localhost`.
        let impostor: PostgresTestCluster
        let impostorDatabase: PostgresTestDatabase
        /// Presents the trusted authority's certificate for another name.
        let otherName: PostgresTestCluster
        let otherNameDatabase: PostgresTestDatabase
        /// Offers no TLS.
        let plain: PostgresTestCluster
        let plainDatabase: PostgresTestDatabase

        init() throws {
            let directory = try TemporaryDirectory(prefix: "otpd-pg-tls").path
            authority = try TestCertificateAuthority(in: directory, name: "otpd test authority")
            otherAuthority = try TestCertificateAuthority(in: directory, name: "another authority")
            func cluster(_ issued: TestCertificateAuthority.Issued?) throws -> PostgresTestCluster {
                try PostgresTestCluster(tcp: .init(certificatePEM: issued?.certificatePEM, keyPEM: issued?.keyPEM))
            }
            real = try cluster(try authority.issue(serverName: "localhost"))
            realDatabase = try real.createDatabase(prefix: "real")
            impostor = try cluster(try otherAuthority.issue(serverName: "localhost"))
            impostorDatabase = try impostor.createDatabase(prefix: "impostor")
            otherName = try cluster(try authority.issue(serverName: "db.example.internal"))
            otherNameDatabase = try otherName.createDatabase(prefix: "othername")
            plain = try cluster(nil)
            plainDatabase = try plain.createDatabase(prefix: "plain")
        }
    }

    static let servers = Result { try Servers() }

    private func url(_ database: PostgresTestDatabase, host: String, port: Int, _ query: String) -> String {
        "postgresql://\(database.user)@\(host):\(port)/\(database.name)?\(query)"
    }

    /// Opens otpd's PostgreSQL store at `url`, giving up after 3 s; the reasons it waited are
    /// collected in `waits`.
    private func open(_ url: String, password: String, waits: Waits) async throws -> PostgresTwoFactorStore {
        try await PostgresTwoFactorStore(
            settings: try PostgresSettings(url: url), password: password, logger: Logger(label: "test"),
            connectDeadline: .seconds(3), onWaiting: { waits.append($0) })
    }

    final class Waits: Sendable {
        private let reasons = Mutex<[String]>([])
        func append(_ reason: String) { reasons.withLock { $0.append(reason) } }
        var all: String { reasons.withLock { $0.joined(separator: " | ") } }
    }

    /// Whether the server has a session of `user` and every one of them is encrypted.
    private func sessionsAreEncrypted(_ cluster: PostgresTestCluster, user: String) throws -> Bool {
        try cluster.psql(
            """
            SELECT count(*) > 0 AND bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
            WHERE a.usename = '\(user)'
            """) == "t"
    }

    /// The default over TCP: the certificate checked against the named authority and the name
    /// against the host; a transaction works and the server sees only encrypted sessions.
    @Test func verifyFullReachesTheRealServerEncrypted() async throws {
        let servers = try Self.servers.get()
        let database = servers.realDatabase
        let store = try await open(
            url(
                database, host: "localhost", port: servers.real.port, "sslrootcert=\(servers.authority.certificatePath)"
            ),
            password: database.password, waits: Waits())
        #expect(try await store.transaction { tx in try tx.account("nobody") } == nil)
        #expect(try sessionsAreEncrypted(servers.real, user: database.user))
        store.close()
    }

    /// Opening the store must fail within its deadline, and `reason` must be among the reasons it
    /// gave for waiting (so it failed for that reason, not another).
    private func expectRefused(
        _ url: String, password: String, reason: String, sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        let waits = Waits()
        var error: (any Error)?
        do {
            let store = try await open(url, password: password, waits: waits)
            store.close()
        } catch let caught {
            error = caught
        }
        #expect(error != nil, "connected to \(url)", sourceLocation: sourceLocation)
        let said = waits.all + " | " + (error.map { "\($0)" } ?? "")
        #expect(said.contains(reason), "refused for another reason: \(said)", sourceLocation: sourceLocation)
    }

    /// An impostor with a certificate for the right name from an authority otpd was not told to
    /// trust: refused. The same with no `sslrootcert`, where the system's roots decide (they do
    /// not know the test authority).
    @Test func verifyFullRefusesACertificateFromAnAuthorityNotTrusted() async throws {
        let servers = try Self.servers.get()
        let database = servers.impostorDatabase
        await expectRefused(
            url(
                database, host: "localhost", port: servers.impostor.port,
                "sslrootcert=\(servers.authority.certificatePath)"),
            password: database.password, reason: "CERTIFICATE_VERIFY_FAILED")
        let real = servers.realDatabase
        await expectRefused(
            url(real, host: "localhost", port: servers.real.port, "sslmode=verify-full"), password: real.password,
            reason: "CERTIFICATE_VERIFY_FAILED")
    }

    /// The trusted authority's certificate, but for another name (an attacker with a genuine
    /// certificate for a host of their own): refused. So is the real server reached by its
    /// address, since its certificate names only `localhost`.
    @Test func verifyFullRefusesACertificateForAnotherName() async throws {
        let servers = try Self.servers.get()
        let database = servers.otherNameDatabase
        await expectRefused(
            url(
                database, host: "localhost", port: servers.otherName.port,
                "sslrootcert=\(servers.authority.certificatePath)"),
            password: database.password, reason: "failedToValidateHostname")
        let real = servers.realDatabase
        await expectRefused(
            url(real, host: "127.0.0.1", port: servers.real.port, "sslrootcert=\(servers.authority.certificatePath)"),
            password: real.password, reason: "failedToValidateHostname")
    }

    /// A server that offers no TLS (or an attacker who strips it): neither `verify-full` nor
    /// `require` falls back to plaintext. The same server is reachable with `disable`, so the
    /// refusals are TLS's, not the network's.
    @Test func noTLSModeFallsBackToPlaintext() async throws {
        let servers = try Self.servers.get()
        let database = servers.plainDatabase
        let port = servers.plain.port
        for query in ["sslrootcert=\(servers.authority.certificatePath)", "sslmode=require"] {
            await expectRefused(
                url(database, host: "localhost", port: port, query), password: database.password,
                reason: "sslUnsupported")
        }
        // The pool that serves the transactions has its own configuration (the store's first
        // connection, for the migrations, is a single one): it must refuse in the same way.
        for query in ["sslrootcert=\(servers.authority.certificatePath)", "sslmode=require"] {
            let settings = try PostgresSettings(url: url(database, host: "localhost", port: port, query))
            await #expect(throws: (any Error).self, "the pool connected in the clear with \(query)") {
                try await selectOne(settings, password: database.password)
            }
        }
        let plain = try PostgresSettings(url: url(database, host: "localhost", port: port, "sslmode=disable"))
        try await selectOne(plain, password: database.password)
        let store = try await open(
            url(database, host: "localhost", port: port, "sslmode=disable"), password: database.password,
            waits: Waits())
        #expect(try await store.transaction { tx in try tx.account("nobody") } == nil)
        #expect(try !sessionsAreEncrypted(servers.plain, user: database.user))
        store.close()
    }

    /// `SELECT 1` through a PostgresNIO pool made as the store makes it; throws when it has no
    /// answer within 4 s. (A pool whose connections fail keeps retrying rather than failing the
    /// query; the same pool with `sslmode=disable` answers at once, so a wait this long means
    /// no connection was made.)
    private func selectOne(_ settings: PostgresSettings, password: String) async throws {
        let client = PostgresClient(configuration: try settings.clientConfiguration(password: password))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            group.addTask {
                try await Task.sleep(for: .seconds(4))
                throw CancellationError()
            }
            defer { group.cancelAll() }
            group.addTask { _ = try await client.query("SELECT 1") }
            // The first to finish: the query, or the timeout (`run` ends only when cancelled).
            try await group.next()
        }
    }

    /// `require` is what it says: encrypted, the certificate not checked. It connects to the
    /// impostor (the reason `verify-full` is the default), and nothing goes in the clear.
    @Test func requireEncryptsWithoutCheckingTheCertificate() async throws {
        let servers = try Self.servers.get()
        let database = servers.impostorDatabase
        let store = try await open(
            url(database, host: "127.0.0.1", port: servers.impostor.port, "sslmode=require"),
            password: database.password, waits: Waits())
        #expect(try await store.transaction { tx in try tx.account("nobody") } == nil)
        #expect(try sessionsAreEncrypted(servers.impostor, user: database.user))
        store.close()
    }
}
