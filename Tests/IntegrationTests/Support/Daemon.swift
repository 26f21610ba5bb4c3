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
