import Foundation
import OTPClient
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Who may connect, and otpctl against the real daemon.
@Suite("peer credentials and otpctl", .serialized)
struct AccessAndCLITests {
    /// A uid that is not allowed is closed before anything is read: no response at all.
    /// Needs root (to run the client as `nobody`) and `setpriv` from util-linux.
    @Test func aPeerThatIsNotAllowedIsClosedWithoutAResponse() async throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("SKIPPED aPeerThatIsNotAllowedIsClosedWithoutAResponse: needs root and /usr/bin/setpriv")
            return
        }
        // Mode 0666 so the filesystem lets `nobody` connect: SO_PEERCRED alone must refuse it.
        let daemon = try DaemonProcess(config: "[server]\nsocket_mode = \"0666\"\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        chmod(daemon.directory.path, 0o755)
        chmod(Binaries.otpctl, 0o755)

        let asNobody = try runProgram(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.otpctl, "health", "--socket", daemon.socket])
        #expect(asNobody.status == 3, "stdout: \(asNobody.stdout) stderr: \(asNobody.stderr)")
        #expect(asNobody.stdout.isEmpty)
        #expect(daemon.log().contains("refused connection from a peer that is not allowed"))
        #expect(daemon.log().contains("peer.uid=65534"))

        // Root is allowed by default, and nobody is allowed once listed.
        #expect(try runProgram(Binaries.otpctl, ["health", "--socket", daemon.socket]).status == 0)
        await daemon.terminate()
        let allowing = try DaemonProcess(config: "[server]\nsocket_mode = \"0666\"\nallowed_uids = [0, 65534]\n")
        try await allowing.start()
        defer { Task { await allowing.cleanUp() } }
        chmod(allowing.directory.path, 0o755)
        let allowed = try runProgram(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", Binaries.otpctl, "health", "--socket",
                allowing.socket,
            ])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(allowed.stdout == "SERVING\n")
    }

    @Test func otpctlHealthAndInfoInTextAndJSON() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let health = try runProgram(Binaries.otpctl, ["health", "--socket", daemon.socket])
        #expect(health.status == 0)
        #expect(health.stdout == "SERVING\n")

        let json = try runProgram(Binaries.otpctl, ["info", "--json", "--socket", daemon.socket])
        #expect(json.status == 0)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["database_path"] as? String == daemon.database)
        #expect((object["schema_version"] as? Int ?? 0) >= 1)
        #expect(object["connections"] as? Int == 1)
        #expect(object["version"] is String)

        let text = try runProgram(Binaries.otpctl, ["info", "--socket", daemon.socket])
        #expect(text.status == 0)
        #expect(text.stdout.contains("database: sqlite \(daemon.database)"))
    }

    @Test func otpctlExitStatuses() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let unreachable = try runProgram(Binaries.otpctl, ["health", "--socket", directory.file("none.sock")])
        #expect(unreachable.status == 3)
        #expect(unreachable.stderr.contains("UNAVAILABLE"))

        let usage = try runProgram(Binaries.otpctl, ["health", "--bogus"])
        #expect(usage.status == 2)
        let noCommand = try runProgram(Binaries.otpctl, ["frobnicate"])
        #expect(noCommand.status == 2)
        let help = try runProgram(Binaries.otpctl, ["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("health"))
    }

    /// systemd socket activation: the socket comes in as fd 3 with LISTEN_FDS/LISTEN_PID.
    @Test func socketActivation() async throws {
        let activate = "/usr/bin/systemd-socket-activate"
        guard FileManager.default.isExecutableFile(atPath: activate) else {
            print("SKIPPED socketActivation: \(activate) is missing (apt-get install systemd)")
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socketPath = directory.file("activated.sock")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: activate)
        process.arguments = [
            "-l", socketPath, Binaries.otpd, "--database", directory.file("db.sqlite"), "--key-file",
            directory.file("k"), "--outbox", directory.file("o.jsonl"), "--socket", directory.file("unused.sock"),
        ]
        process.currentDirectoryURL = URL(fileURLWithPath: directory.path)
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            pollUntilExit(process)
        }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socketPath) {
            try await Task.sleep(for: .milliseconds(20))
        }
        let client = OTPClient(socketPath: socketPath, defaultDeadline: .seconds(10))
        // The first connection starts otpd (systemd-socket-activate execs it on accept).
        #expect(try await client.health().status == "SERVING")
        #expect(try await client.serverInfo().databasePath.hasSuffix("db.sqlite"))
        #expect(!FileManager.default.fileExists(atPath: directory.file("unused.sock")))
        await client.close()
    }
}
