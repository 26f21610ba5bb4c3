import Foundation
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `otpctl totp enroll`'s QR code and `otpctl doctor`, through the built binary against the real
/// daemon. The QR code is decoded back with `zbarimg` (Debian's zbar-tools); the terminal drawing
/// is read through a pseudo-terminal (`script` from util-linux), parsed back into modules and
/// decoded too.
@Suite("otpctl QR code and doctor", .serialized)
struct QRAndDoctorTests {
    // MARK: - QR code

    /// The image written by `--qr-image` (PGM, and PNG for a `.png` name) decodes to exactly the
    /// otpauth URI printed as text; without a terminal no QR code is drawn.
    @Test func enrollImageDecodesToThePrintedURI() async throws {
        try await withDaemon { daemon in
            for (account, name) in [("qr-image-pgm", "code.pgm"), ("qr-image-png", "code.png")] {
                let image = daemon.directory.file(name)
                let enrolled = try otpctl(daemon, "totp", "enroll", account, "--qr-image", image)
                #expect(enrolled.status == 0, "\(enrolled.stderr)")
                let uri = try #require(enrolled.stdout.split(separator: "\n").first { $0.hasPrefix("otpauth://totp/") })
                #expect(!containsBlocks(enrolled.stdout), "stdout is not a terminal: no QR code expected")
                #expect(enrolled.stdout.contains("Secret (base32): "))
                #expect(enrolled.stdout.contains("QR code written to \(image)"))

                let bytes = try #require(FileManager.default.contents(atPath: image))
                let signature = name.hasSuffix(".png") ? [0x89, 0x50, 0x4E, 0x47] : Array("P5".utf8)
                #expect(Array(bytes.prefix(signature.count)) == signature)
                var info = stat()
                #expect(stat(image, &info) == 0)
                #expect(info.st_mode & 0o777 == 0o600, "the image holds the secret")

                #expect(try zbarimg(image) == String(uri), "\(name) decodes to the printed URI")
            }

            // An existing file is never overwritten: usage error, nothing sent.
            let again = try otpctl(
                daemon, "totp", "enroll", "qr-image-pgm", "--qr-image", daemon.directory.file("code.pgm"))
            #expect(again.status == 2)
            #expect(again.stderr.contains("exists"), "\(again.stderr)")
        }
    }

    @Test func doctorOnAHealthyDaemon() async throws {
        try await withDaemon { daemon in
            let run = try otpctl(daemon, "doctor", "--json", "--key-file", daemon.keyPath)
            #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
            let report = try doctorReport(run)
            #expect(report.ok == true)
            #expect(
                report.checks.map(\.name) == [
                    "socket", "socket_permissions", "socket_access", "health", "server_info", "database",
                    "database_wal", "sms_sender", "key_file",
                ])
            for check in report.checks where check.name != "sms_sender" {
                #expect(check.status == "ok", "\(check.name): \(check.detail)")
                #expect(check.fix == nil, "\(check.name)")
            }
            let sms = try #require(report.checks.first { $0.name == "sms_sender" })
            #expect(sms.status == "warning")
            #expect(sms.detail.hasPrefix("outbox"))
            #expect(sms.fix?.contains("twilio") == true)
            let database = try #require(report.checks.first { $0.name == "database" })
            #expect(database.detail.contains(daemon.database))
            #expect(database.detail.contains("mode 0600"))
            let info = try #require(report.checks.first { $0.name == "server_info" })
            #expect(info.detail.contains("schema "))
            #expect(info.detail.contains("SMS sender outbox"))

            // The human form: one line per check, then the summary.
            let text = try otpctl(daemon, "doctor", "--key-file", daemon.keyPath)
            #expect(text.status == 0, "\(text.stderr)")
            let lines = text.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == report.checks.count + 1)
            #expect(lines.first?.hasPrefix("ok       socket ") == true, "\(text.stdout)")
            #expect(lines.contains { $0.hasPrefix("warning  sms_sender ") && $0.contains("; fix: ") })
            #expect(lines.last == "No problems found (1 warning).")
        }
    }

    /// No daemon on the socket: exit status 3, and the socket check says what to do.
    @Test func doctorWithoutADaemon() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socket = directory.file("missing.sock")
        let key = directory.file("otpd.key")
        try Data(repeating: 7, count: 32).write(to: URL(fileURLWithPath: key))
        chmod(key, 0o600)

        let run = try runProgram(Binaries.otpctl, ["doctor", "--json", "--socket", socket, "--key-file", key])
        #expect(run.status == 3, "\(run.stdout)\n\(run.stderr)")
        #expect(run.stderr.contains("otpd cannot be reached at \(socket)"), "\(run.stderr)")
        let report = try doctorReport(run)
        #expect(report.ok == false)
        let check = try #require(report.checks.first { $0.name == "socket" })
        #expect(check.status == "problem")
        #expect(check.detail.contains(socket))
        #expect(check.fix?.contains("start otpd") == true)
        #expect(check.fix?.contains("--socket") == true)
        #expect(report.checks.first { $0.name == "health" }?.status == "skipped")
        // The key file is still checked.
        #expect(report.checks.first { $0.name == "key_file" }?.status == "ok")

        let text = try runProgram(Binaries.otpctl, ["doctor", "--socket", socket, "--key-file", key])
        #expect(text.status == 3)
        let line = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("problem  socket ") })
        #expect(line.contains("; fix: start otpd"), "\(line)")
    }

    /// A socket any local user can open is a warning, which does not fail the run.
    @Test func doctorWarnsAboutAWorldAccessibleSocket() async throws {
        try await withDaemon(config: "[server]\nsocket_mode = \"0666\"\n") { daemon in
            let run = try otpctl(daemon, "doctor", "--json", "--key-file", daemon.keyPath)
            #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
            let report = try doctorReport(run)
            #expect(report.ok == true)
            let check = try #require(report.checks.first { $0.name == "socket_permissions" })
            #expect(check.status == "warning")
            #expect(check.detail.contains("mode 0666"), "\(check.detail)")
            #expect(check.fix?.contains("socket_mode = \"0660\"") == true)
        }
    }

    /// A socket file left behind by a killed daemon: nobody accepts, exit status 3.
    @Test func doctorOnAStaleSocket() async throws {
        try await withDaemon { daemon in
            await daemon.kill9()
            #expect(FileManager.default.fileExists(atPath: daemon.socket), "SIGKILL leaves the socket file")
            let run = try otpctl(daemon, "doctor", "--json", "--key-file", daemon.keyPath)
            #expect(run.status == 3, "\(run.stdout)\n\(run.stderr)")
            let report = try doctorReport(run)
            #expect(report.checks.first { $0.name == "socket" }?.status == "ok")
            let access = try #require(report.checks.first { $0.name == "socket_access" })
            #expect(access.status == "problem")
            #expect(access.detail.contains("stale socket"), "\(access.detail)")
            #expect(access.fix?.contains("start otpd") == true)
        }
    }

    /// A key file readable by others (or of the wrong size) is a problem: exit status 1.
    @Test func doctorFindsABadKeyFile() async throws {
        try await withDaemon { daemon in
            let open = daemon.directory.file("open.key")
            try Data(repeating: 1, count: 32).write(to: URL(fileURLWithPath: open))
            #expect(chmod(open, 0o644) == 0)
            let run = try otpctl(daemon, "doctor", "--json", "--key-file", open)
            #expect(run.status == 1, "\(run.stdout)\n\(run.stderr)")
            #expect(run.stderr.contains("1 problem found"), "\(run.stderr)")
            let report = try doctorReport(run)
            #expect(report.ok == false)
            let key = try #require(report.checks.first { $0.name == "key_file" })
            #expect(key.status == "problem")
            #expect(key.detail.contains("mode 0644"), "\(key.detail)")
            #expect(key.fix == "chmod 600 \(open)")
            #expect(report.checks.filter { $0.status == "problem" }.count == 1)

            let short = daemon.directory.file("short.key")
            try Data(repeating: 1, count: 16).write(to: URL(fileURLWithPath: short))
            #expect(chmod(short, 0o600) == 0)
            let shortRun = try otpctl(daemon, "doctor", "--json", "--key-file", short)
            #expect(shortRun.status == 1)
            let shortKey = try #require(try doctorReport(shortRun).checks.first { $0.name == "key_file" })
            #expect(shortKey.status == "problem")
            #expect(shortKey.detail.contains("16 bytes, not 32"), "\(shortKey.detail)")
        }
    }

    // MARK: - Completions and help

    /// The completion scripts know the new command and options; the root help points at them.
    @Test func completionScriptsAndHelp() throws {
        for shell in ["bash", "zsh", "fish"] {
            let run = try runProgram(Binaries.otpctl, ["--generate-completion-script", shell])
            #expect(run.status == 0, "\(shell): \(run.stderr)")
            #expect(run.stdout.contains("doctor"), "\(shell)")
            #expect(run.stdout.contains("qr-image"), "\(shell)")
            #expect(run.stdout.contains("no-qr"), "\(shell)")
            #expect(run.stdout.contains("key-file"), "\(shell)")
        }
        let help = try runProgram(Binaries.otpctl, ["--help"])
        #expect(help.stdout.contains("health, info, doctor"))
        #expect(help.stdout.contains("--generate-completion-script bash|zsh|fish"))
        let enrollHelp = try runProgram(Binaries.otpctl, ["totp", "enroll", "--help"])
        #expect(enrollHelp.stdout.contains("--no-qr"))
        #expect(enrollHelp.stdout.contains("image file for printing"))
    }
}

// MARK: - Helpers

extension QRAndDoctorTests {
    /// otpd on PostgreSQL over TCP (a throw-away cluster with TLS, its certificate from a
    /// throw-away authority for `localhost`): with `sslmode=require` otpd's log and `otpctl
    /// doctor` warn that an attacker on the path could pose as the database, and say what to set;
    /// with `verify-full` and the authority given, the check is ok and the log says nothing.
    @Test func doctorWarnsOfAPostgreSQLConnectionThatLetsAnImpostorIn() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let authority = try TestCertificateAuthority(in: directory.path, name: "doctor test authority")
        let issued = try authority.issue(serverName: "localhost")
        let cluster = try PostgresTestCluster(tcp: .init(certificatePEM: issued.certificatePEM, keyPEM: issued.keyPEM))
        defer { cluster.destroy() }
        for (query, status) in [
            ("sslmode=require", "warning"), ("sslrootcert=\(authority.certificatePath)", "ok"),
        ] {
            // A database for each daemon: each makes its own key, and a database refuses another.
            let database = try cluster.createDatabase(prefix: "doctor")
            let config = """
                [storage]
                backend = "postgresql"
                url = "postgresql://\(database.user)@localhost:\(cluster.port)/\(database.name)?\(query)"
                password_file = "\(database.name).password"
                """
            let daemon = try DaemonProcess(config: config)
            _ = try database.writePasswordFile(in: daemon.directory.path)
            do {
                try await daemon.start()
                let run = try otpctl(daemon, "doctor", "--json", "--key-file", daemon.keyPath)
                let report = try doctorReport(run)
                let tls = try #require(report.checks.first { $0.name == "database_tls" }, "\(run.stdout)")
                #expect(tls.status == status, "\(query): \(tls.detail)")
                let warned = daemon.log().contains("not protected against an attacker on the network")
                if status == "warning" {
                    #expect(tls.detail.contains("pose as the database"))
                    #expect(tls.fix?.contains("sslmode=verify-full") == true)
                    #expect(warned, "otpd's log says nothing of sslmode=require")
                } else {
                    #expect(tls.fix == nil)
                    #expect(!warned)
                }
                #expect(report.ok == true, "a warning is not a problem")
            } catch {
                await daemon.cleanUp()
                throw error
            }
            await daemon.cleanUp()
        }
    }

    /// What a doctor check says, from its JSON.
    struct Check {
        var name: String
        var status: String
        var detail: String
        var fix: String?
    }

    /// Runs `body` with a started daemon, always cleaning up.
    private func withDaemon(config: String? = nil, _ body: (DaemonProcess) async throws -> Void) async throws {
        let daemon = try DaemonProcess(config: config)
        do {
            try await daemon.start()
            try await body(daemon)
        } catch {
            await daemon.cleanUp()
            throw error
        }
        await daemon.cleanUp()
    }

    /// Runs otpctl (stdout is a pipe, not a terminal) on the daemon's socket.
    private func otpctl(_ daemon: DaemonProcess, _ arguments: String...) throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        try runProgram(Binaries.otpctl, arguments + ["--socket", daemon.socket])
    }

    private func containsBlocks(_ text: String) -> Bool {
        text.contains { "█▀▄".contains($0) }
    }

    /// The text zbarimg reads from the image at `path`.
    private func zbarimg(_ path: String) throws -> String {
        let run = try runProgram(try tool("zbarimg", package: "zbar-tools"), ["--raw", "-q", path])
        #expect(run.status == 0, "zbarimg found no code in \(path): \(run.stderr)")
        return run.stdout.trimmingCharacters(in: .newlines)
    }

    private func tool(_ name: String, package: String) throws -> String {
        let found = ["/usr/bin/", "/bin/", "/usr/local/bin/"].map { $0 + name }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        return try #require(found, "\(name) is needed: install \(package) (scripts/install-deps.sh)")
    }

    /// The parsed `otpctl doctor --json` output.
    private func doctorReport(_ run: (status: Int32, stdout: String, stderr: String)) throws -> (
        ok: Bool?, checks: [Check]
    ) {
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
        let checks = try #require(object["checks"] as? [[String: Any]])
        return (
            object["ok"] as? Bool,
            try checks.map { entry in
                #expect(entry.keys.sorted() == ["detail", "fix", "name", "status"])
                return Check(
                    name: try #require(entry["name"] as? String), status: try #require(entry["status"] as? String),
                    detail: try #require(entry["detail"] as? String), fix: entry["fix"] as? String)
            }
        )
    }
}
