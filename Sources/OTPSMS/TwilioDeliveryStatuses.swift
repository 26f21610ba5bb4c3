public import OTPCore

/// Twilio's message statuses (`MessageStatus` in a status callback), in the order a message
/// goes through them (for `TwoFactorService`'s `deliveryStatuses`).
public struct TwilioDeliveryStatuses: DeliveryStatusOrder {
    public init() {}

    /// accepted, queued, scheduled < sending < sent < delivered, undelivered, failed, canceled
    /// < read; 0 for anything else.
    public func rank(_ status: String) -> Int {
        switch status {
        case "accepted", "queued", "scheduled": 1
        case "sending": 2
        case "sent": 3
        case "delivered", "undelivered", "failed", "canceled": 4
        case "read": 5
        default: 0
        }
    }

    /// `undelivered` and `failed`: the message will not arrive.
    public func failureOutcome(_ status: String) -> EventOutcome? {
        switch status {
        case "undelivered": .undelivered
        case "failed": .failed
        default: nil
        }
    }
}
