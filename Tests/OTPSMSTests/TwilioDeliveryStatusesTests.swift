import OTPCore
import OTPSMS
import Testing

@Suite("Twilio delivery statuses")
struct TwilioDeliveryStatusesTests {
    let statuses = TwilioDeliveryStatuses()

    @Test func statusesRankInTheOrderAMessageGoesThroughThem() {
        let order = [
            ["accepted", "queued", "scheduled"], ["sending"], ["sent"],
            ["delivered", "undelivered", "failed", "canceled"], ["read"],
        ]
        for (index, group) in order.enumerated() {
            for status in group { #expect(statuses.rank(status) == index + 1, "\(status)") }
        }
        #expect(statuses.rank("teleported") == 0)
        #expect(statuses.rank("") == 0)
        #expect(statuses.rank("Delivered") == 0, "Twilio's statuses are lower case")
    }

    @Test func onlyUndeliveredAndFailedAreFailures() {
        #expect(statuses.failureOutcome("undelivered") == .undelivered)
        #expect(statuses.failureOutcome("failed") == .failed)
        for status in ["accepted", "queued", "scheduled", "sending", "sent", "delivered", "canceled", "read", "x"] {
            #expect(statuses.failureOutcome(status) == nil, "\(status)")
        }
    }
}
