import Foundation
public import Logging
public import OTPCore

#if canImport(Glibc)
    import Glibc
#endif

/// The development sender: appends each message as one JSON line to a file created with mode
/// 0600 (it holds codes), and logs one line with the number masked and no text.
///
/// Lines look like `{"at":"2026-11-27T10:00:00Z","body":"...","challenge_id":"ch_...",
/// "expires_at":"...","id":"ob_...","purpose":"verify_phone","to":"+15551234567"}`.
public final class OutboxSender: SMSSender, @unchecked Sendable {
    // @unchecked Sendable: `path` and `logger` are immutable; every file write happens while
    // holding `lock`, so appends from concurrent sends never interleave.
    public let name = "outbox"
    private let path: String
    private let logger: Logger
    private let lock = NSLock()

    /// - Parameter path: the outbox file; created with mode 0600 when missing.
    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    public func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt {
        let id = "ob_" + UUID().uuidString.lowercased()
        let formatter = ISO8601DateFormatter()
        let line: [String: String] = [
            "id": id, "to": message.to.e164, "body": message.body, "purpose": message.purpose.rawValue,
            "challenge_id": message.challengeID, "expires_at": formatter.string(from: message.expiresAt),
            "at": formatter.string(from: Date()),
        ]
        guard var data = try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]) else {
            throw .configuration(reason: "cannot encode the outbox line")
        }
        data.append(0x0A)
        try append(data)
        logger.info(
            "sms written to outbox",
            metadata: [
                "sms.to": "\(message.to.masked)", "sms.purpose": "\(message.purpose.rawValue)", "sms.id": "\(id)",
            ])
        return SMSReceipt(provider: name, messageID: id)
    }

    private func append(_ data: Data) throws(SMSSendError) {
        lock.lock()
        defer { lock.unlock() }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw .configuration(reason: "cannot open outbox \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else {
            throw .temporary(reason: "cannot write outbox \(path): \(String(cString: strerror(errno)))")
        }
    }
}
