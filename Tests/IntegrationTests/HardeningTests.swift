import Foundation
import OTPClient
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The socket file, its lock file, and configuration values that must not be accepted.
@Suite("socket file and configuration hardening", .serialized)
struct HardeningTests {
    /// A symlink at the lock's path is not followed: otpd refuses to start and creates nothing
    /// where the link points.
    @Test func aSymlinkAtTheLockFileStopsOtpd() async throws {
        let daemon = try DaemonProcess()
        defer { Task { await daemon.cleanUp() } }
        let target = daemon.directory.file("elsewhere")
        #expect(symlink(target, daemon.socket + ".lock") == 0)
        let result = try runProgram(Binaries.otpd, daemon.arguments)
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(daemon.socket).lock is a symbolic link"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target), "the link was not followed")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }

    /// The socket appears with its configured mode and group, and the private directory it was
    /// bound in is gone.
    @Test func theSocketFileHasItsModeAndGroupAndNothingIsLeftBeside() async throws {
        // Root may give the file any group; another user only one of its own.
        let gid = getuid() == 0 ? gid_t(4244) : getgid()
        let daemon = try DaemonProcess(config: "[server]\nsocket_mode = \"0640\"\nsocket_group = \"\(gid)\"\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        var info = stat()
        #expect(lstat(daemon.socket, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(info.st_mode & 0o7777 == 0o640)
        #expect(info.st_gid == gid)
        #expect(info.st_uid == getuid())
        #expect(try await daemon.client().health().status == "SERVING")
        let names = try FileManager.default.contentsOfDirectory(atPath: daemon.directory.path)
        #expect(!names.contains { $0.hasPrefix("otpd.sock.") && $0 != "otpd.sock.lock" }, "\(names)")
        // The umask is no longer changed around bind: otpd's own files stay private.
        for name in names where name.hasPrefix("otpd.sqlite") || name == "otpd.key" {
            #expect(stat(daemon.directory.file(name), &info) == 0)
            #expect(info.st_mode & 0o077 == 0, "\(name) is private")
        }
        #expect(stat(daemon.socket + ".lock", &info) == 0)
        #expect(info.st_mode & 0o077 == 0)
    }

    /// A socket path too long to be bound beside itself first is a configuration error.
    @Test func aSocketPathThatIsTooLongIsAConfigurationError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file(String(repeating: "s", count: 95 - directory.path.utf8.count - 1))
        #expect(path.utf8.count == 95)
        let result = try runProgram(
            Binaries.otpd,
            ["--check-config", "--socket", path, "--database", directory.file("d"), "--outbox", directory.file("o")])
        #expect(result.status == 2)
        #expect(result.stderr.contains("server.socket path is too long (at most 94 bytes"), "\(result.stderr)")
    }

    /// Delivery reports carry full phone numbers: the callback must be https.
    @Test(arguments: [
        "http://shop.example/otpd/twilio-status", "ftp://shop.example/x", "https:///no-host", "/otpd/twilio-status",
        "shop.example/otpd",
    ])
    func aStatusCallbackURLThatIsNotHTTPSStopsOtpd(url: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let config = directory.file("otpd.toml")
        try """
        [sms]
        sender = "twilio"
        [[twilio]]
        account_sid = "AC00000000000000000000000000000000"
        from = "+15005550006"
        status_callback_url = "\(url)"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try runProgram(
            Binaries.otpd,
            ["--check-config", "--config", config, "--socket", directory.file("s"), "--database", directory.file("d")])
        #expect(result.status == 2, "\(result.stdout)")
        #expect(result.stderr.contains("twilio.status_callback_url must be an https:// URL"), "\(result.stderr)")
    }

    /// An unknown name in `[notify] kinds` stops otpd, naming the key and the value; every
    /// kind the domain records is accepted.
    @Test func anUnknownNotifyKindStopsOtpd() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let config = directory.file("otpd.toml")
        func check(_ kinds: String) throws -> (status: Int32, stdout: String, stderr: String) {
            try "[notify]\nkinds = [\(kinds)]\n".write(toFile: config, atomically: true, encoding: .utf8)
            return try runProgram(
                Binaries.otpd,
                [
                    "--check-config", "--config", config, "--socket", directory.file("s"), "--database",
                    directory.file("d"), "--outbox", directory.file("o"),
                ])
        }
        let typo = try check("\"account_locked\", \"acount_unlocked\"")
        #expect(typo.status == 2)
        #expect(typo.stderr.contains("notify.kinds"), "\(typo.stderr)")
        #expect(typo.stderr.contains("\"acount_unlocked\""), "\(typo.stderr)")

        let known = [
            "phone_saved", "phone_change_requested", "phone_verified", "phone_changed", "code_sent",
            "code_send_failed", "code_refused", "verify", "proof", "sms_delivery_failed", "totp_enrollment_started",
            "totp_enrollment_confirm", "totp_enabled", "totp_replay_refused", "factor_disabled",
            "preferred_method_changed", "backup_codes_generated", "backup_codes_regenerated", "backup_code_redeemed",
            "backup_codes_low", "account_locked", "account_unlocked", "account_reset",
        ]
        let all = try check(known.map { "\"\($0)\"" }.joined(separator: ", "))
        #expect(all.status == 0, "\(all.stderr)")
        let none = try check("")
        #expect(none.status == 0, "\(none.stderr)")
    }
}
