public import Logging
import Synchronization

/// Every log event, rendered as text (message, the handler's and the event's metadata), so tests
/// can check what was and was not logged.
public final class LogCapture: Sendable {
    public struct Entry: Sendable {
        public var level: Logger.Level
        public var message: String
        /// `key=value` pairs, sorted by key.
        public var metadata: String
        public var text: String { "\(level) \(message) \(metadata)" }
    }

    private let entries = Mutex<[Entry]>([])

    public init() {}

    /// A logger at trace level that records into this capture.
    public func logger(label: String = "otpd.test") -> Logger {
        var logger = Logger(label: label) { _ in CapturingLogHandler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    func append(_ entry: Entry) { entries.withLock { $0.append(entry) } }

    public var all: [Entry] { entries.withLock { $0 } }

    /// All entries, one per line.
    public var text: String { all.map(\.text).joined(separator: "\n") }
}

/// The handler behind `LogCapture.logger(label:)`.
struct CapturingLogHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        capture.append(.init(level: event.level, message: event.message.description, metadata: rendered))
    }
}
