import Foundation
import OTPClient
import OTPCore
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real otpd binary on a temporary socket and database: protocol, limits, lifecycle.
@Suite("otpd daemon", .serialized)
struct DaemonTests {
    @Test func healthAndServerInfo() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        #expect(try await client.health().status == "SERVING")
        let info = try await client.serverInfo()
        #expect(info.version.isEmpty == false)
        #expect(info.databasePath == daemon.database)
        #expect(info.schemaVersion >= 1)
        #expect(info.connections == 1)
        #expect(info.maxConnections == 1024)
        #expect(info.unrecordedEvents == 0)
        let second = daemon.client()
        #expect(try await second.serverInfo().connections == 2)
        await second.close()
        await client.close()
    }

    @Test func unknownMethodIsUnimplementedAndTheConnectionStaysUsable() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        let error = await #expect(throws: RPCError.self) {
            try await client.callRaw("/otp.v1.TwoFactor/NoSuchThing", payload: [])
        }
        #expect(error?.code == .unimplemented)
        #expect(try await client.health().status == "SERVING")
        await client.close()
    }

    @Test func aHundredCallsInFlightOnOneConnection() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<100 {
                group.addTask { try await client.health().status }
            }
            var all: [String] = []
            for try await status in group { all.append(status) }
            return all
        }
        #expect(results.count == 100)
        #expect(results.allSatisfy { $0 == "SERVING" })
        #expect(try await client.serverInfo().connections == 1)
        await client.close()
    }

    /// Responses are matched by call id and may come back in any order; the raw connection
    /// pipelines 50 requests in one write and gets 50 answers with the same ids.
    @Test func pipelinedRequestsAreAnsweredByCallID() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let raw = try RawConnection(path: daemon.socket)
        let ids = (1...50).map { UInt64($0) * 7919 }
        raw.send(ids.flatMap { requestFrame(callID: $0, method: TwoFactorMethod.health.rawValue) })
        var answered: Set<UInt64> = []
        for _ in ids {
            let response = try #require(raw.readResponse())
            #expect(response.error == nil)
            answered.insert(response.callId)
        }
        #expect(answered == Set(ids))
    }

    /// A client that sends a flood of calls without reading the answers is stopped being read
    /// (the daemon does not buffer answers without bound), and when it reads, every answer
    /// arrives whole and in order: answers encoded while the socket was full never overwrite
    /// bytes still waiting to be written.
    @Test func aClientThatDoesNotReadIsNotReadEitherAndLosesNoAnswer() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let raw = try RawConnection(path: daemon.socket)
        let count = 100_000
        // Every 1000th call names no method, so answers of two sizes interleave.
        func method(_ id: Int) -> String {
            id % 1000 == 0 ? "/otp.v1.TwoFactor/Nothing" : TwoFactorMethod.health.rawValue
        }
        let frames = (1...count).flatMap { requestFrame(callID: UInt64($0), method: method($0)) }
        let fd = raw.fd
        let writer = Thread { RawConnection.sendAll(fd: fd, frames) }
        writer.start()
        // 3.7 MB of calls: without backpressure the daemon reads them all (and holds 2 MB of
        // answers) well within this time, and the writer finishes.
        try await Task.sleep(for: .seconds(2))
        #expect(!writer.isFinished, "the daemon kept reading from a client that reads nothing")

        // 100,000 blocking reads on a thread of their own, not on one of the few threads of the
        // concurrency pool that the other tests' servers need.
        let problem: String? = await withCheckedContinuation { continuation in
            Thread {
                for id in 1...count {
                    guard let response = raw.readResponse() else {
                        return continuation.resume(returning: "no answer \(id)")
                    }
                    guard response.callId == UInt64(id) else {
                        return continuation.resume(returning: "answer \(id) came with call id \(response.callId)")
                    }
                    let right =
                        id % 1000 == 0
                        ? response.error?.code == .unimplemented
                        : response.error == nil
                            && (try? HealthResponse(serialized: response.payload))?.status == "SERVING"
                    guard right else { return continuation.resume(returning: "answer \(id) is wrong: \(response)") }
                }
                continuation.resume(returning: nil)
            }.start()
        }
        #expect(problem == nil)
        for _ in 0..<500 where !writer.isFinished { try await Task.sleep(for: .milliseconds(10)) }
        #expect(writer.isFinished)
    }

    /// Each kind of malformed input gets an error response where one can be sent and closes
    /// only its own connection; another connection keeps working throughout.
    @Test(arguments: MalformedInput.allCases)
    func malformedInputClosesOnlyItsConnection(_ input: MalformedInput) async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let bystander = daemon.client()
        #expect(try await bystander.health().status == "SERVING")

        let raw = try RawConnection(path: daemon.socket)
        raw.send(input.bytes)
        if input.closesWrite { raw.shutdownWrite() }
        if let expected = input.expectedCode {
            let response = try #require(raw.readResponse(), "no error response for \(input)")
            #expect(response.callId == 0)
            #expect(response.error?.code == expected)
        }
        #expect(raw.isClosedByPeer(), "connection stays open after \(input)")

        #expect(try await bystander.health().status == "SERVING")
        var connections: UInt32 = 0
        for _ in 0..<100 {
            connections = try await bystander.serverInfo().connections
            if connections == 1 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(connections == 1)
        await bystander.close()
        #expect(daemon.process?.isRunning == true)
    }

    enum MalformedInput: String, CaseIterable, CustomTestStringConvertible {
        case badFlag, oversizeLength, maximumLength, garbageEnvelope, invalidUTF8Method, truncatedPrefix, eofMidFrame

        var testDescription: String { rawValue }

        var bytes: [UInt8] {
            switch self {
            case .badFlag: [1, 0, 0, 0, 2, 8, 1]
            case .oversizeLength: Frame.header(length: 64 * 1024 + 1)
            case .maximumLength: [0, 0xFF, 0xFF, 0xFF, 0xFF]
            case .garbageEnvelope: Frame.encode([0xFF, 0xFF, 0xFF])
            case .invalidUTF8Method: Frame.encode([0x08, 0x01, 0x12, 0x02, 0xC3, 0x28])
            case .truncatedPrefix: [0, 0, 0]
            case .eofMidFrame: [0, 0, 0, 0, 10, 1, 2, 3]
            }
        }

        var closesWrite: Bool { self == .truncatedPrefix || self == .eofMidFrame }

        var expectedCode: RPCError.Code? {
            switch self {
            case .badFlag, .garbageEnvelope, .invalidUTF8Method, .truncatedPrefix, .eofMidFrame: .invalidArgument
            case .oversizeLength, .maximumLength: .resourceExhausted
            }
        }
    }

    @Test func aFrameOfExactlyTheMaximumIsAccepted() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        // A Health request whose payload pads the envelope to exactly 64 KiB: field 15 of
        // HealthRequest is unknown and ignored.
        var padding: [UInt8] = []
        let envelopeOverhead = Request(callId: 1, method: TwoFactorMethod.health.rawValue, payload: [0]).serialized()
            .count
        let target = 64 * 1024 - envelopeOverhead - 4
        padding = [0x7A] + varint(UInt64(target - 4)) + [UInt8](repeating: 0x61, count: target - 4)
        var envelope = Request(callId: 1, method: TwoFactorMethod.health.rawValue, payload: padding).serialized()
        // Adjust to exactly the maximum with the unknown field's length.
        let diff = 64 * 1024 - envelope.count
        padding = [0x7A] + varint(UInt64(target - 4 + diff)) + [UInt8](repeating: 0x61, count: target - 4 + diff)
        envelope = Request(callId: 1, method: TwoFactorMethod.health.rawValue, payload: padding).serialized()
        #expect(envelope.count == 64 * 1024)
        let raw = try RawConnection(path: daemon.socket)
        raw.send(Frame.encode(envelope))
        let response = try #require(raw.readResponse())
        #expect(response.error == nil)
        #expect(try HealthResponse(serialized: response.payload).status == "SERVING")
    }

    @Test func sigtermExitsZeroAndKeepsTheDatabaseAndKey() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let keyBefore = FileManager.default.contents(atPath: daemon.keyPath)
        let client = daemon.client()
        #expect(try await client.health().status == "SERVING")
        let status = await daemon.terminate()
        #expect(status == 0, "log:\n\(daemon.log())")
        #expect(FileManager.default.fileExists(atPath: daemon.database))
        #expect(FileManager.default.contents(atPath: daemon.keyPath) == keyBefore)
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the socket it bound is removed")
        await client.close()

        // It starts again on the same files with the same key.
        try await daemon.start()
        #expect(FileManager.default.contents(atPath: daemon.keyPath) == keyBefore)
        #expect(await daemon.terminate() == 0)
    }

    @Test func aSecondDaemonOnTheSameSocketRefusesToStart() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let result = try runProgram(Binaries.otpd, daemon.arguments)
        #expect(result.status == 1)
        #expect(result.stderr.contains("another otpd is running"))
        #expect(try await daemon.client().health().status == "SERVING")
    }

    @Test func aStaleSocketFileIsReplaced() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        await daemon.kill9()  // leaves the socket file behind
        #expect(FileManager.default.fileExists(atPath: daemon.socket))
        try await daemon.start()
        #expect(try await daemon.client().health().status == "SERVING")
    }

    @Test func theSocketFileHasMode0660() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
        #expect(stat(daemon.database, &info) == 0)
        #expect(info.st_mode & 0o077 == 0, "the database is private to the daemon's user")
    }

    @Test func connectionsBeyondTheMaximumAreClosed() async throws {
        let daemon = try DaemonProcess(config: "[server]\nmax_connections = 2\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let first = daemon.client()
        let second = daemon.client()
        #expect(try await first.health().status == "SERVING")
        #expect(try await second.health().status == "SERVING")
        let third = daemon.client()
        let error = await #expect(throws: RPCError.self) { try await third.health() }
        #expect(error?.code == .unavailable)
        await first.close()
        await second.close()
        await third.close()
    }

    @Test func idleConnectionsAreClosedAndSlowFramesCostOnlyTheirConnection() async throws {
        let daemon = try DaemonProcess(config: "[server]\nidle_timeout_seconds = 1\nframe_timeout_seconds = 1\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let idle = try RawConnection(path: daemon.socket)
        let slow = try RawConnection(path: daemon.socket)
        slow.send([0, 0, 0])  // a frame that never completes
        let started = ContinuousClock.now
        #expect(idle.isClosedByPeer())
        #expect(slow.isClosedByPeer())
        #expect(ContinuousClock.now - started < .seconds(4))
        #expect(try await daemon.client().health().status == "SERVING")
    }

    @Test func configurationErrorsExitWithStatus2() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let cases = [
            "[server]\nsockett = \"x\"\n": "unknown key 'server.sockett'",
            "[nope]\n": "unknown table or key 'nope'",
            "[sms]\nper_phone_per_dya = 3\n": "unknown key 'sms.per_phone_per_dya'",
            "[[twilio]]\naccount_sid = \"AC1\"\nfrom = \"+15550001111\"\nauth_token_fiel = \"/x\"\n":
                "unknown key 'twilio.auth_token_fiel'",
            "[server]\nmax_connections = \"ten\"\n": "server.max_connections must be an integer",
            "[storage]\ndatabase = \"/no/such/dir/x.sqlite\"\n": "does not exist",
            "[server]\nsocket_mode = \"rw\"\n": "octal",
            "not toml at all [": "bad.toml:1:",
        ]
        for (text, message) in cases {
            let path = directory.file("bad.toml")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try runProgram(Binaries.otpd, ["--config", path, "--socket", directory.file("s")])
            #expect(result.status == 2, "\(text)")
            #expect(result.stderr.contains(message), "\(result.stderr)")
        }
        let unknownFlag = try runProgram(Binaries.otpd, ["--no-such-flag"])
        #expect(unknownFlag.status == 2)
        let help = try runProgram(Binaries.otpd, ["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("--database"))
    }

    @Test func aCorruptDatabaseIsRefusedAtStartUp() async throws {
        let daemon = try DaemonProcess()
        defer { Task { await daemon.cleanUp() } }
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: daemon.database))
        let result = try runProgram(Binaries.otpd, daemon.arguments)
        #expect(result.status == 1)
        #expect(result.stderr.contains("corrupt") || result.stderr.contains("not a database"), "\(result.stderr)")
    }

    @Test func systemdReadinessIsSentWhenNotifySocketIsSet() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let notifyPath = directory.file("notify")
        let receiver = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(receiver) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, byte) in notifyPath.utf8.enumerated() { buffer[i] = byte }
        }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(receiver, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        setenv("NOTIFY_SOCKET", notifyPath, 1)
        let daemon = try DaemonProcess()
        defer { Task { await daemon.cleanUp() } }
        try await daemon.start()
        unsetenv("NOTIFY_SOCKET")
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { recv(receiver, $0.baseAddress, $0.count, 0) }
        #expect(n > 0)
        #expect(String(decoding: buffer[0..<max(0, n)], as: UTF8.self).contains("READY=1"))
    }
}

func varint(_ value: UInt64) -> [UInt8] {
    var value = value
    var out: [UInt8] = []
    while value >= 0x80 {
        out.append(UInt8(value & 0x7F) | 0x80)
        value >>= 7
    }
    out.append(UInt8(value))
    return out
}

@Suite("example configuration")
struct ExampleConfigurationTests {
    /// The shipped example documents every key with a valid value.
    @Test func theExampleConfigurationIsValid() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("otpd.example.toml").path
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try runProgram(
            Binaries.otpd,
            [
                "--check-config", "--config", example, "--socket", directory.file("s"), "--database",
                directory.file("d"), "--outbox", directory.file("o"), "--key-file", directory.file("k"),
            ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("configuration OK"))
        // Every key otpd knows appears in the example.
        let text = try String(contentsOfFile: example, encoding: .utf8)
        for key in [
            "socket_mode", "allowed_gids", "admin_uids", "admin_gids", "frame_timeout_seconds", "synchronous",
            "key_file",
            "per_phone_per_day", "verifications_per_phone_per_day", "allowed_country_codes", "attempts_per_challenge",
            "durations_seconds",
            "max_consecutive_failures", "issuer", "enrollment_lifetime_seconds", "proof_purposes",
            "low_watermark", "brand", "account_sid", "auth_token_file", "messaging_service_sid",
            "base_url", "status_callback_url", "timeout_seconds", "max_attempts",
            "max_concurrent_requests", "events_days", "deliveries_days", "prune_interval_seconds", "command",
            "kinds",
        ] {
            #expect(text.contains("\n\(key) = "), "\(key) is not documented")
        }
        // The example lists exactly the default notified kinds.
        let kinds = try #require(text.range(of: "\nkinds = [")).upperBound
        let list = text[kinds...].prefix { $0 != "]" }
        let documented = Set(
            list.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) })
        #expect(documented == Set(TwoFactorService.defaultNotifiedKinds.map(\.rawValue)))
    }
}

@Suite("daemon key")
struct DaemonKeyTests {
    @Test func anotherKeyFileIsRefusedForAnExistingDatabase() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        #expect(await daemon.terminate() == 0)
        var info = stat()
        #expect(stat(daemon.keyPath, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        try FileManager.default.removeItem(atPath: daemon.keyPath)
        let other = (0..<32).map { _ in UInt8.random(in: 0...255) }
        #expect(
            FileManager.default.createFile(
                atPath: daemon.keyPath, contents: Data(other), attributes: [.posixPermissions: 0o600]))
        let result = try runProgram(Binaries.otpd, daemon.arguments)
        #expect(result.status == 1)
        #expect(result.stderr.contains("is not the key"), "\(result.stderr)")
    }

    @Test func aKeyFileReadableByOthersIsRefused() async throws {
        let daemon = try DaemonProcess()
        defer { Task { await daemon.cleanUp() } }
        #expect(
            FileManager.default.createFile(
                atPath: daemon.keyPath, contents: Data(repeating: 7, count: 32), attributes: [.posixPermissions: 0o644])
        )
        let result = try runProgram(Binaries.otpd, daemon.arguments)
        #expect(result.status == 2)
        #expect(result.stderr.contains("chmod 600"))
    }
}

@Suite("client reconnection")
struct ClientReconnectionTests {
    /// A client whose connection broke (the daemon restarted) connects again on its next call.
    @Test func theClientReconnectsAfterTheDaemonRestarts() async throws {
        let daemon = try DaemonProcess()
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        #expect(try await client.health().status == "SERVING")
        #expect(await daemon.terminate() == 0)
        let down = await #expect(throws: RPCError.self) { try await client.health() }
        #expect(down?.code == .unavailable)
        try await daemon.start()
        #expect(try await client.health().status == "SERVING")
        await client.close()
    }
}
