import Foundation
import OTPClient
import OTPProtocol
import OTPTestSupport
import Testing

/// The notification hook through the real daemon: a shell script as the command.
@Suite("notification hook (daemon)")
struct NotificationHookTests {
    /// Writes `script` as an executable file and returns its path.
    private func hook(_ directory: TemporaryDirectory, _ script: String) throws -> String {
        let path = directory.file("hook.sh")
        try ("#!/bin/sh\n" + script).write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o700)
        return path
    }

    private func enrollPhone(_ daemon: DaemonProcess, _ account: String) async throws {
        let client = daemon.client()
        defer { Task { await client.close() } }
        try await daemon.enrollPhone(client, account)
    }

    /// Lines of `path` once `predicate` holds for them, or after 15 s.
    private func waitForLines(_ path: String, until predicate: ([String]) -> Bool) async throws -> [String] {
        var lines: [String] = []
        for _ in 0..<300 {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            lines = text.split(separator: "\n").map(String.init)
            if predicate(lines) { return lines }
            try await Task.sleep(for: .milliseconds(50))
        }
        return lines
    }

    @Test func securityEventsReachTheCommandAsJSONWithoutSecrets() async throws {
        let scratch = try TemporaryDirectory()
        defer { scratch.remove() }
        let received = scratch.file("received.jsonl")
        let command = try hook(
            scratch, "read -r line; printf '%s %s\\n' \"$OTPD_EVENT_KIND\" \"$line\" >> \(received)\n")
        let daemon = try DaemonProcess(config: "[notify]\ncommand = \"\(command)\"\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }

        try await enrollPhone(daemon, "alice")
        let lines = try await waitForLines(received) { $0.contains { $0.hasPrefix("phone_verified ") } }
        let line = try #require(lines.first { $0.hasPrefix("phone_verified ") })
        let json = try #require(line.split(separator: " ", maxSplits: 1).last)
        let event = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(event["account_id"] as? String == "alice")
        #expect(event["outcome"] as? String == "success")
        #expect(event["destination"] as? String == "+1******4567")
        // Only the configured kinds: no code_sent, no verify.
        #expect(lines.allSatisfy { $0.hasPrefix("phone_verified ") })
        // No code: every six-digit run in what the hook saw is absent from the outbox codes.
        let codes = daemon.outbox().map(\.code)
        #expect(!codes.contains { code in lines.contains { $0.contains(code) } })
    }

    @Test func aFailingCommandGetsTheEventAgainAndNothingIsSkipped() async throws {
        let scratch = try TemporaryDirectory()
        defer { scratch.remove() }
        let received = scratch.file("received.txt")
        let marker = scratch.file("failed-once")
        // Fails the first time it runs, then records the kind of every event it gets.
        let command = try hook(
            scratch,
            """
            if [ ! -e \(marker) ]; then touch \(marker); exit 3; fi
            echo "$OTPD_ACCOUNT_ID $OTPD_EVENT_KIND" >> \(received)

            """)
        let daemon = try DaemonProcess(config: "[notify]\ncommand = \"\(command)\"\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }

        try await enrollPhone(daemon, "bob")
        try await enrollPhone(daemon, "carol")
        let lines = try await waitForLines(received) { $0.count >= 2 }
        #expect(lines == ["bob phone_verified", "carol phone_verified"])
        #expect(FileManager.default.fileExists(atPath: marker))
        #expect(daemon.log().contains("notification hook failed"))
    }

    @Test func aCommandThatIsNotExecutableIsAConfigurationError() async throws {
        let scratch = try TemporaryDirectory()
        defer { scratch.remove() }
        let path = scratch.file("not-executable.sh")
        try "#!/bin/sh\n".write(toFile: path, atomically: true, encoding: .utf8)
        let config = scratch.file("otpd.toml")
        try "[notify]\ncommand = \"\(path)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let result = try runProgram(
            Binaries.otpd, ["--config", config, "--socket", scratch.file("s"), "--check-config"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("notify.command"), "\(result.stderr)")
    }
}
