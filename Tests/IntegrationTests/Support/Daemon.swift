import Foundation
import OTPClient
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Where the package's built executables are: beside the test bundle.
enum Binaries {
    static var directory: URL {
        if let override = ProcessInfo.processInfo.environment["OTPD_BIN_DIR"] {
            return URL(fileURLWithPath: override)
        }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("otpd").path) { return url }
        }
        // Fall back to the debug build folder of this checkout.
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug")
    }

    static var otpd: String { directory.appendingPathComponent("otpd").path }
    static var otpctl: String { directory.appendingPathComponent("otpctl").path }
}

/// The real `otpd` binary, started on a temporary socket, database and key.
final class DaemonProcess: @unchecked Sendable {
    // @unchecked Sendable: a test drives its DaemonProcess from one task at a time; `process`
    // is only replaced by `start()`, which tests call sequentially.
    let directory: TemporaryDirectory
    let socket: String
    let database: String
    let logPath: String
    private(set) var process: Process?
    private let extraArguments: [String]
    private let configText: String?

    /// - Parameters:
    ///   - config: TOML text written to `otpd.toml` and passed with `--config`.
    ///   - arguments: extra command-line flags.
    init(config: String? = nil, arguments: [String] = []) throws {
        directory = try TemporaryDirectory()
        socket = directory.file("otpd.sock")
        database = directory.file("otpd.sqlite")
        logPath = directory.file("otpd.log")
        extraArguments = arguments
        configText = config
    }

    var outboxPath: String { directory.file("outbox.jsonl") }
    var keyPath: String { directory.file("otpd.key") }

    /// The flags the daemon is started with (without the process name).
    var arguments: [String] {
        var arguments = [
            "--socket", socket, "--database", database, "--key-file", keyPath,
            "--outbox", outboxPath, "--log-level", "debug",
        ]
        if configText != nil { arguments += ["--config", directory.file("otpd.toml")] }
        return arguments + extraArguments
    }

    /// Starts the daemon and waits until it answers `Health`.
    func start() async throws {
        if let configText {
            try configText.write(toFile: directory.file("otpd.toml"), atomically: true, encoding: .utf8)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.otpd)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory.path)
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = FileHandle(forWritingAtPath: logPath)!
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        let client = OTPClient(socketPath: socket, defaultDeadline: .seconds(2))
        for _ in 0..<400 {
            if !process.isRunning { break }
            if (try? await client.health()) != nil {
                await client.close()
                return
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        await client.close()
        throw DaemonError(message: "otpd did not become healthy; log:\n\(self.log())")
    }

    /// A client on this daemon's socket.
    func client(deadline: Duration? = .seconds(10)) -> OTPClient {
        OTPClient(socketPath: socket, defaultDeadline: deadline)
    }

    /// Sends SIGTERM and returns the exit status.
    @discardableResult
    func terminate() async -> Int32 {
        guard let process else { return -1 }
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        return await waitForExit(process)
    }

    /// Sends SIGKILL (no chance to clean up) and waits.
    func kill9() async {
        guard let process else { return }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        _ = await waitForExit(process)
    }

    private func waitForExit(_ process: Process) async -> Int32 {
        if let status = reapExit(process) { return status }
        kill(process.processIdentifier, SIGKILL)
        _ = reapExit(process)
        return -9
    }

    /// The daemon's log so far.
    func log() -> String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Stops the daemon (if running) and removes the directory.
    func cleanUp() async {
        await kill9()
        directory.remove()
    }
}

struct DaemonError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A raw connection for sending bytes the client library never would.
final class RawConnection {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, byte) in path.utf8.enumerated() { buffer[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Sends every byte on `fd`, blocking while the daemon does not read (gives up on an
    /// error). Static, so another thread can write while this connection reads.
    static func sendAll(fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }

    /// Half-closes the sending side (the daemon sees EOF).
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads one frame's payload, or nil at EOF / timeout.
    func readFrame() -> [UInt8]? {
        while true {
            if let frame = try? pending.next() { return frame }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            pending.append(buffer[0..<n])
        }
    }
    private var pending = FrameDecoder(maximumPayload: 1 << 20)

    /// Reads one response envelope.
    func readResponse() -> Response? {
        readFrame().flatMap { try? Response(serialized: $0) }
    }

    /// True when the peer closes the connection (EOF within the timeout) after any frames.
    func isClosedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

/// A request frame as the client library would send it.
func requestFrame(callID: UInt64, method: String, payload: [UInt8] = [], deadlineMs: UInt32 = 0) -> [UInt8] {
    Frame.encode(Request(callId: callID, method: method, deadlineMs: deadlineMs, payload: payload).serialized())
}

/// Runs a program, returning exit status and output.
func runProgram(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes at once (a child filling one while we block on the other would hang).
    let group = DispatchGroup()
    let errBox = DataBox()
    DispatchQueue.global().async(group: group) { errBox.data = err.fileHandleForReading.readDataToEndOfFile() }
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let stderr = errBox.data
    // Not waitUntilExit (nor isRunning alone): with many processes launched from concurrent
    // tests Foundation can miss a child's exit on Linux; reapExit asks the kernel directly.
    guard let status = reapExit(process) else {
        process.terminate()
        return (-1, String(decoding: stdout, as: UTF8.self), "timed out")
    }
    return (
        status, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self)
    )
}

/// The exit status of `process` (as Foundation reports it, 128+signal for a signal), waiting
/// up to 120 s: polls Foundation and `waitpid(WNOHANG)` so a missed SIGCHLD cannot hang.
func reapExit(_ process: Process) -> Int32? {
    let pid = process.processIdentifier
    let deadline = Date().addingTimeInterval(120)
    while Date() < deadline {
        if !process.isRunning { return process.terminationStatus }
        var raw: Int32 = 0
        let reaped = waitpid(pid, &raw, WNOHANG)
        if reaped == pid {
            let signal = raw & 0x7F
            return signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
        }
        usleep(5_000)
    }
    return nil
}

/// A mutable box for data produced on another queue (read after `DispatchGroup.wait`).
final class DataBox: @unchecked Sendable {
    // @unchecked Sendable: written once on one queue before `group.wait()` returns, read after.
    var data = Data()
}

/// Waits (polling, up to 60 s) for `process` to exit; see `runProgram` for why not
/// `waitUntilExit`.
func pollUntilExit(_ process: Process) {
    _ = reapExit(process)
}
