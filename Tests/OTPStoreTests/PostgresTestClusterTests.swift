import Foundation
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The throw-away PostgreSQL cluster the PostgreSQL store tests run on (needs Debian's
/// `postgresql` package: `scripts/install-deps.sh`).
@Suite("PostgreSQL test cluster")
struct PostgresTestClusterTests {
    /// One cluster per process: the same instance each time, listening only on its socket.
    @Test func sharedIsOneClusterOnItsSocket() throws {
        let first = try PostgresTestCluster.shared()
        let second = try PostgresTestCluster.shared()
        #expect(first === second)
        #expect(FileManager.default.fileExists(atPath: "\(first.socketDirectory)/.s.PGSQL.\(first.port)"))
        #expect(try first.psql("SHOW listen_addresses") == "")
        #expect(try first.psql("SHOW max_connections") == "400")
        #expect(try first.psql("SHOW password_encryption") == "scram-sha-256")
        #expect(try first.psql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == "t")
        // The data directory and the server belong to the current user, or when that is root,
        // to an unprivileged one.
        let serverPID =
            try String(contentsOfFile: first.dataDirectory + "/postmaster.pid", encoding: .utf8)
            .split(separator: "\n").first.map(String.init) ?? ""
        for path in [first.dataDirectory, "/proc/\(serverPID)"] {
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect(getuid() == 0 ? info.st_uid != 0 : info.st_uid == getuid(), "owner of \(path)")
        }
        var info = stat()
        #expect(stat(first.dataDirectory, &info) == 0 && info.st_mode & 0o777 == 0o700)
    }

    /// A database of its own, owned by a role that connects over the socket with its password,
    /// and only with it.
    @Test func createdDatabaseAcceptsItsRoleAndItsPasswordOnly() throws {
        let cluster = try PostgresTestCluster.shared()
        let database = try cluster.createDatabase(prefix: "clustertest")
        let other = try cluster.createDatabase(prefix: "clustertest")
        #expect(database.name != other.name && database.user != other.user)
        #expect(database.name.hasPrefix("clustertest_\(getpid())_"))

        #expect(try database.psql("SELECT current_user, current_database()") == "\(database.user)|\(database.name)")
        #expect(try database.psql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == "f")
        #expect(try database.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (7); SELECT x FROM t") == "7")
        let wrong = #expect(throws: PostgresTestClusterError.self) {
            try database.psql("SELECT 1", password: database.password + "x")
        }
        #expect(wrong?.status == 2)
        #expect(wrong?.standardError.contains("password authentication failed") == true)
        // Another role's password does not open this role.
        #expect(throws: PostgresTestClusterError.self) { try database.psql("SELECT 1", password: other.password) }

        let encodedSocket = cluster.socketDirectory.replacingOccurrences(of: "/", with: "%2F")
        #expect(
            database.url
                == "postgresql://\(database.user)@/\(database.name)?host=\(encodedSocket)&port=\(cluster.port)")

        let directory = try TemporaryDirectory(prefix: "otpd-pgpw")
        defer { directory.remove() }
        let path = try database.writePasswordFile(in: directory.path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == database.password)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    /// A failing statement throws an error naming the command, its status and the log's tail.
    @Test func failuresSayWhatFailed() throws {
        let cluster = try PostgresTestCluster.shared()
        let error = #expect(throws: PostgresTestClusterError.self) { try cluster.psql("SELECT * FROM no_such_table") }
        #expect(error?.status == 1)
        #expect(error?.description.contains("no_such_table") == true)
        #expect(error?.description.contains("exit status: 1") == true)
        #expect(error?.description.contains("server log (last lines)") == true)
    }

    /// A private cluster stops (refusing connections) and starts again on the same data and
    /// socket; destroy removes it.
    @Test func privateClusterRestarts() throws {
        let cluster = try PostgresTestCluster()
        defer { cluster.destroy() }
        #expect(try cluster !== PostgresTestCluster.shared())
        let database = try cluster.createDatabase()
        _ = try database.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")

        try cluster.stop()
        #expect(throws: PostgresTestClusterError.self) { try database.psql("SELECT 1") }
        #expect(throws: PostgresTestClusterError.self) { try cluster.stop() }
        try cluster.start()
        #expect(try database.psql("SELECT x FROM kept") == "42")

        // An immediate stop (a crash, as far as the data is concerned) recovers too.
        try cluster.stop(mode: "immediate")
        try cluster.start()
        #expect(try database.psql("SELECT x FROM kept") == "42")

        cluster.destroy()
        #expect(!FileManager.default.fileExists(atPath: cluster.rootDirectory))
        #expect(throws: PostgresTestClusterError.self) { try cluster.start() }
    }
}
