import Foundation
import OTPCore
import OTPStore
import OTPTestSupport
import Testing

/// Accepts the signature "ok".
struct AcceptingVerifier: DeliveryReportVerifier {
    func isAuthentic(url: String, parameters: [(name: String, value: String)], signature: String) -> Bool {
        signature == "ok"
    }
}

/// A made-up provider: accepted < late < lost (lost is a failure).
struct MadeUpStatuses: DeliveryStatusOrder {
    func rank(_ status: String) -> Int { ["accepted": 1, "late": 2, "lost": 3][status] ?? 0 }
    func failureOutcome(_ status: String) -> EventOutcome? { status == "lost" ? .undelivered : nil }
}

@Suite("delivery reports")
struct DeliveryReportTests {
    func service(_ fixture: Fixture, statuses: (any DeliveryStatusOrder)?) throws -> TwoFactorService {
        try TwoFactorService(
            store: fixture.store, sender: fixture.sender, keys: fixture.keys,
            policy: TwoFactorPolicy(), clock: fixture.clock, random: SeededRandom(seed: 7),
            reportVerifier: AcceptingVerifier(), deliveryStatuses: statuses)
    }

    func report(_ status: String, sid: String = "m1") -> [(name: String, value: String)] {
        [("MessageSid", sid), ("MessageStatus", status), ("ErrorCode", "30003")]
    }

    @Test func theProvidersOrderDecidesAndAReportNeverMovesADeliveryBack() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        try await fixture.enrollPhone("a")  // message m1, accepted
        let service = try service(fixture, statuses: MadeUpStatuses())
        let url = "https://shop.example/sms-status"

        #expect(try await service.reportDelivery(url: url, parameters: report("late"), signature: "ok").updated)
        let back = try await service.reportDelivery(url: url, parameters: report("accepted"), signature: "ok")
        #expect(!back.updated && back.status == "late")
        let unknown = try await service.reportDelivery(url: url, parameters: report("unheard-of"), signature: "ok")
        #expect(!unknown.updated)
        #expect(try await service.reportDelivery(url: url, parameters: report("lost"), signature: "ok").updated)

        let events = try await service.listEvents(accountID: "a", pageSize: 10, beforeID: nil).events
        let failed = events.filter { $0.kind == .smsDeliveryFailed }
        #expect(failed.count == 1)
        #expect(failed.first?.outcome == .undelivered)
        #expect(failed.first?.detail == "verify_phone message m1, error 30003")
        let log = try await service.listDeliveries(accountID: "a", pageSize: 10, beforeID: nil).deliveries
        #expect(log.first?.status == "lost")
    }

    @Test func withoutTheProvidersStatusesReportsAreRefused() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        let service = try service(fixture, statuses: nil)
        await #expect {
            _ = try await service.reportDelivery(url: "https://x", parameters: report("late"), signature: "ok")
        } throws: { ($0 as? TwoFactorError)?.kind == .failedPrecondition }
    }
}
