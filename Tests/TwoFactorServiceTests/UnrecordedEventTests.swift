import Foundation
import Logging
import OTPCore
import OTPStore
import Synchronization
import Testing

/// A text that went out but whose record storage refused: counted and logged, never silent.
@Suite struct UnrecordedEventTests {
    typealias Record = (level: Logger.Level, message: String, metadata: Logger.Metadata)

    /// The records a `CapturingLogHandler` kept.
    final class Records: Sendable {
        let all = Mutex<[Record]>([])
    }

    /// Keeps every log record.
    struct CapturingLogHandler: LogHandler {
        let records: Records
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(
            level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
            function: String, line: UInt
        ) {
            records.all.withLock { $0.append((level, message.description, metadata ?? [:])) }
        }
    }

    /// Hands the text over, then closes the database under the service: the delivery record
    /// and the audit event that follow cannot be stored.
    final class ClosingSender: SMSSender {
        let name = "closing"
        let database: SQLiteStore
        init(database: SQLiteStore) { self.database = database }
        func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt {
            database.close()
            return SMSReceipt(provider: name, messageID: "SM-closing")
        }
    }

    @Test func aRecordThatCannotBeStoredIsCountedAndLoggedWithItsKind() async throws {
        let f = try Fixture()
        defer { f.tearDown() }
        _ = try await f.service.setPhone(accountID: "a", number: "+15551234567", proof: nil)
        let records = Records()
        let handler = CapturingLogHandler(records: records)
        let service = try TwoFactorService(
            store: try SQLiteTwoFactorStore(store: f.database), sender: ClosingSender(database: f.database),
            keys: f.keys, policy: TwoFactorPolicy(), clock: f.clock, logger: Logger(label: "test") { _ in handler })
        _ = try await service.startChallenge(accountID: "a", purpose: .verifyPhone)
        #expect(service.unrecordedEvents == 1)
        let logged = records.all.withLock { $0 }
        #expect(logged.count == 1)
        #expect(logged.first?.level == .error)
        #expect(logged.first?.metadata["event.kind"] == "code_sent")
        #expect(logged.first?.metadata["unrecorded_events"] == "1")
        let text = logged.map { "\($0.message) \($0.metadata)" }.joined()
        #expect(!text.contains("5551234567") && !text.contains("4567"), "\(text)")
    }
}
