import Foundation
import OTPClient
import OTPTestSupport

/// Several real otpd processes, each with its own socket and directory, keeping their state in
/// one PostgreSQL database (a fresh one on the tests' throw-away cluster, or on `cluster`), with
/// one daemon key between them, as on several web nodes.
final class DaemonCluster: Sendable {
    let database: PostgresTestDatabase
    let daemons: [DaemonProcess]

    /// - Parameters:
    ///   - count: how many daemons.
    ///   - config: more TOML for every daemon, after the `[storage]` table.
    ///   - cluster: the PostgreSQL cluster; the shared one by default.
    init(count: Int, config: String = "", cluster: PostgresTestCluster? = nil) throws {
        let postgres = try cluster ?? PostgresTestCluster.shared()
        database = try postgres.createDatabase()
        var daemons: [DaemonProcess] = []
        for _ in 0..<count {
            // otpd runs in its directory, where the password file is written (mode 0600).
            let daemon = try DaemonProcess(config: database.storageTOML + "\n\n" + config)
            _ = try database.writePasswordFile(in: daemon.directory.path)
            daemons.append(daemon)
        }
        self.daemons = daemons
    }

    /// Starts the first daemon (which makes the key), gives its key to the others, then starts
    /// them.
    func start() async throws {
        guard let first = daemons.first else { return }
        try await first.start()
        let key = try Data(contentsOf: URL(fileURLWithPath: first.keyPath))
        for daemon in daemons.dropFirst() {
            _ = FileManager.default.createFile(
                atPath: daemon.keyPath, contents: key, attributes: [.posixPermissions: 0o600])
            try await daemon.start()
        }
    }

    func cleanUp() async {
        for daemon in daemons { await daemon.cleanUp() }
    }
}
