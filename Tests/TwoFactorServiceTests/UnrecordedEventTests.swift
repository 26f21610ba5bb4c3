import Foundation
import Logging
import OTPCore
import OTPStore
import OTPTestSupport
import Testing

/// A text that went out but whose record storage refused: counted and logged, never silent.
@Suite struct UnrecordedEventTests {
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
        let f = try await Fixture(on: .sqlite)
        defer { f.tearDown() }
        _ = try await f.service.setPhone(accountID: "a", number: "+15551234567", proof: nil)
        let capture = LogCapture()
        let service = try TwoFactorService(
            store: f.store, sender: ClosingSender(database: f.database),
            keys: f.keys, policy: TwoFactorPolicy(), clock: f.clock, logger: capture.logger())
        _ = try await service.startChallenge(accountID: "a", purpose: .verifyPhone)
        #expect(service.unrecordedEvents == 1)
        let logged = capture.all
        #expect(logged.count == 1, "\(capture.text)")
        #expect(logged.first?.level == .error)
        #expect(logged.first?.metadata.contains("event.kind=code_sent") == true, "\(capture.text)")
        #expect(logged.first?.metadata.contains("unrecorded_events=1") == true, "\(capture.text)")
        #expect(!capture.text.contains("5551234567") && !capture.text.contains("4567"), "\(capture.text)")
    }
}
