import Foundation
import OTPCore
import OTPStore
import OTPTestSupport
import Testing

/// A call whose caller stopped waiting (deadline passed, connection closed).
@Suite struct CancellationTests {
    /// Takes a text, then waits until its caller is cancelled (or 10 s pass): the text has gone
    /// to the provider whatever the caller does next.
    final class SlowSender: SMSSender {
        let name = "slow"
        func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt {
            try? await Task.sleep(for: .seconds(10))
            return SMSReceipt(provider: name, messageID: "SM-slow")
        }
    }

    @Test func aCancelledCallChangesNothingAndSaysSo() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        let call = Task { () async -> TwoFactorError? in
            withUnsafeCurrentTask { $0?.cancel() }
            do throws(TwoFactorError) {
                _ = try await f.service.setPhone(accountID: "a", number: "+15551234567", proof: nil)
                return nil
            } catch {
                return error
            }
        }
        let error = await call.value
        // Not "storage is unavailable": nothing failed, the caller left.
        #expect(error?.kind == .cancelled)
        #expect(try await f.service.status(accountID: "a").phoneMasked.isEmpty)
    }

    /// The text went out; the caller gave up meanwhile. Its delivery record and audit event are
    /// still written (before, the cancelled caller's transaction was refused and they were lost).
    @Test func aTextSentForACallerWhoLeftIsStillRecorded() async throws {
        let f = try await Fixture()
        defer { f.tearDown() }
        let service = try f.service(sending: SlowSender())
        _ = try await service.setPhone(accountID: "a", number: "+15551234567", proof: nil)
        let call = Task { try await service.startChallenge(accountID: "a", purpose: .verifyPhone) }
        try await Task.sleep(for: .milliseconds(200))
        call.cancel()
        _ = await call.result
        let deliveries = try await service.listDeliveries(accountID: "a", pageSize: 10, beforeID: nil).deliveries
        #expect(deliveries.map(\.messageSID) == ["SM-slow"])
        let events = try await service.listEvents(accountID: "a", pageSize: 10, beforeID: nil).events
        #expect(events.contains { $0.kind == .codeSent })
        #expect(service.unrecordedEvents == 0)
    }
}
