import Foundation
import Logging
import OTPCore
import OTPSMS
import Synchronization
import Testing
import TwilioStandIn

/// A sender that answers from a script and counts its calls.
final class ScriptedSender: SMSSender {
    let name: String
    private let result: Result<SMSReceipt, SMSSendError>
    private let calls = Mutex(0)

    init(name: String, result: Result<SMSReceipt, SMSSendError>) {
        self.name = name
        self.result = result
    }

    var callCount: Int { calls.withLock { $0 } }

    func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt {
        calls.withLock { $0 += 1 }
        return try result.get()
    }

    static func failing(_ kind: SMSSendError.Kind, attempts: Int, code: Int? = nil, name: String = "scripted")
        -> ScriptedSender
    {
        ScriptedSender(
            name: name,
            result: .failure(
                SMSSendError(
                    kind: kind, reason: "scripted \(kind)", provider: name, providerCode: code, attempts: attempts)))
    }

    static func succeeding(attempts: Int = 1, name: String = "scripted") -> ScriptedSender {
        ScriptedSender(
            name: name,
            result: .success(SMSReceipt(provider: name, messageID: "id-\(name)", status: "queued", attempts: attempts)))
    }
}

@Suite("Failover sender")
struct FailoverSenderTests {
    private let clock = VirtualClock()

    @Test func itIsNamedAfterItsSenders() {
        let failover = FailoverSender(
            senders: [ScriptedSender.succeeding(name: "twilio"), ScriptedSender.succeeding(name: "twilio")],
            logger: quietLogger)
        #expect(failover.name == "failover(twilio,twilio)")
    }

    @Test(arguments: [SMSSendError.Kind.temporary, .configuration])
    func aTemporaryOrConfigurationFailureMovesOnToTheNextSender(_ kind: SMSSendError.Kind) async throws {
        let first = ScriptedSender.failing(kind, attempts: 3, name: "a")
        let second = ScriptedSender.succeeding(attempts: 1, name: "b")
        let failover = FailoverSender(senders: [first, second], logger: quietLogger)
        let receipt = try await failover.send(Fixture.message(clock: clock))
        #expect(receipt.provider == "b")
        #expect(receipt.messageID == "id-b")
        #expect(receipt.attempts == 4, "attempts of every sender tried")
        #expect(first.callCount == 1 && second.callCount == 1)
    }

    @Test func anUndeliverableNumberIsNotTriedElsewhere() async throws {
        let first = ScriptedSender.failing(.undeliverable, attempts: 1, code: 21610, name: "a")
        let second = ScriptedSender.succeeding(name: "b")
        let failover = FailoverSender(senders: [first, second], logger: quietLogger)
        let error = await sendError(failover, Fixture.message(clock: clock))
        #expect(error?.kind == .undeliverable)
        #expect(error?.providerCode == 21610)
        #expect(error?.attempts == 1)
        #expect(second.callCount == 0)
    }

    @Test func whenEverySenderFailsTheLastErrorCarriesAllAttempts() async throws {
        let senders = [
            ScriptedSender.failing(.configuration, attempts: 1, code: 20003, name: "a"),
            ScriptedSender.failing(.temporary, attempts: 3, code: 20429, name: "b"),
            ScriptedSender.failing(.temporary, attempts: 2, name: "c"),
        ]
        let failover = FailoverSender(senders: senders, logger: quietLogger)
        let error = await sendError(failover, Fixture.message(clock: clock))
        #expect(error?.kind == .temporary)
        #expect(error?.provider == "c")
        #expect(error?.attempts == 6)
        #expect(senders.allSatisfy { $0.callCount == 1 })
    }

    @Test func twilioToTwilioFailsOverOnATemporaryFailure() async throws {
        try await withStandIn { primary in
            try await withStandIn { secondary in
                primary.fail(Fixture.number, with: .serverError)
                let clock = VirtualClock()
                try await withSender(Fixture.configuration(primary, maxAttempts: 2), clock: clock) { first in
                    try await withSender(Fixture.configuration(secondary), clock: clock) { second in
                        let failover = FailoverSender(senders: [first, second], logger: quietLogger)
                        #expect(failover.name == "failover(twilio,twilio)")
                        let receipt = try await failover.send(Fixture.message(clock: clock))
                        #expect(receipt.attempts == 3)
                        #expect(receipt.messageID == secondary.messages.first?.sid)
                    }
                }
                #expect(primary.requestCount(to: Fixture.number) == 2)
                #expect(primary.messages.isEmpty)
                #expect(secondary.messages.map(\.to) == [Fixture.number])
            }
        }
    }

    @Test func twilioToTwilioDoesNotFailOverOnAnUndeliverableNumber() async throws {
        try await withStandIn { primary in
            try await withStandIn { secondary in
                primary.fail(Fixture.number, with: .unsubscribed)
                let clock = VirtualClock()
                let error = try await withSender(Fixture.configuration(primary), clock: clock) { first in
                    try await withSender(Fixture.configuration(secondary), clock: clock) { second in
                        await sendError(
                            FailoverSender(senders: [first, second], logger: quietLogger),
                            Fixture.message(clock: clock))
                    }
                }
                #expect(error?.kind == .undeliverable)
                #expect(error?.providerCode == 21610)
                #expect(error?.attempts == 1)
                #expect(secondary.requests.isEmpty)
            }
        }
    }
}
