import Foundation
import Logging
import OTPCore
import OTPTestSupport
import Synchronization
import Testing
import TwilioStandIn

@testable import OTPSMS

@Suite("Twilio sender against the stand-in")
struct TwilioSenderTests {
    // MARK: - The request

    @Test func anAuthTokenRequestCarriesPathAuthAndEveryField() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            let configuration = Fixture.configuration(
                standIn, sender: .from("+15005550006"), statusCallbackURL: "https://shop.example/twilio/status?x=1")
            let receipt = try await withSender(configuration, clock: clock) { sender in
                try await sender.send(Fixture.message(expiresIn: 300, clock: clock))
            }
            let message = try #require(standIn.messages.first)
            #expect(standIn.messages.count == 1)
            #expect(message.accountSID == standIn.accountSID)
            #expect(message.authUser == standIn.accountSID)
            #expect(message.to == Fixture.number)
            #expect(message.from == "+15005550006")
            #expect(message.messagingServiceSID == nil)
            #expect(message.body == Fixture.body)
            #expect(message.validityPeriod == 300)
            #expect(message.statusCallback == "https://shop.example/twilio/status?x=1")
            #expect(receipt == SMSReceipt(provider: "twilio", messageID: message.sid, status: "queued", attempts: 1))
            #expect(receipt.messageID.hasPrefix("SM") && receipt.messageID.count == 34)

            let request = try #require(standIn.requests.first)
            #expect(request.method == "POST")
            #expect(request.uri == "/2010-04-01/Accounts/\(standIn.accountSID)/Messages.json")
            #expect(request.contentType == "application/x-www-form-urlencoded")
            #expect(request.responseStatus == 201)
            // `+` and spaces are percent-encoded, so a decoder that reads `+` as a space still
            // gets the text right.
            #expect(request.rawBody.contains("To=%2B14155552671"))
            #expect(request.rawBody.contains("Body=Your%20otpd%20code%20is%20428913%20%2B%20expires"))
            #expect(request.rawBody.contains("%26%20is%20for%20you%3Donly.%20Se%C3%B1or"))
            #expect(!request.rawBody.contains("+"))
            #expect(request.form.map(\.name) == ["To", "From", "Body", "ValidityPeriod", "StatusCallback"])
        }
    }

    @Test func anAPIKeyRequestWithAMessagingServiceUsesTheKeyAndTheService() async throws {
        let keySID = TwilioStandIn.randomSID(prefix: "SK")
        let secret = TwilioStandIn.randomHex(count: 32)
        let serviceSID = TwilioStandIn.randomSID(prefix: "MG")
        try await withStandIn(apiKeys: [keySID: secret]) { standIn in
            let clock = VirtualClock()
            let configuration = Fixture.configuration(
                standIn, credentials: .apiKey(sid: keySID, secret: secret), sender: .messagingService(serviceSID))
            let receipt = try await withSender(configuration, clock: clock) { sender in
                try await sender.send(Fixture.message(clock: clock))
            }
            let message = try #require(standIn.messages.first)
            #expect(message.authUser == keySID)
            #expect(message.accountSID == standIn.accountSID)
            #expect(message.messagingServiceSID == serviceSID)
            #expect(message.from == nil)
            #expect(message.body == Fixture.body)
            #expect(receipt.status == "accepted")
            #expect(receipt.messageID == message.sid)
            #expect(
                standIn.requests.first?.form.map(\.name) == ["To", "MessagingServiceSid", "Body", "ValidityPeriod"])
        }
    }

    @Test(arguments: [(300.0, 300), (299.7, 299), (5.2, 5), (7 * 86400.0, 36000)])
    func theValidityPeriodIsTheCodesRemainingLifetime(lifetime: Double, expected: Int) async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            _ = try await withSender(Fixture.configuration(standIn), clock: clock) { sender in
                try await sender.send(Fixture.message(expiresIn: lifetime, clock: clock))
            }
            #expect(standIn.messages.first?.validityPeriod == expected)
        }
    }

    @Test func aRetryAnnouncesTheShorterRemainingLifetime() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: .serverError, times: 1)
            let configuration = Fixture.configuration(standIn, initialBackoff: .seconds(2), maxBackoff: .seconds(2))
            _ = try await withSender(configuration, clock: clock) { sender in
                try await sender.send(Fixture.message(expiresIn: 300, clock: clock))
            }
            let waited = try #require(clock.sleeps.first)
            #expect(clock.sleeps.count == 1)
            #expect(standIn.messages.first?.validityPeriod == Int((300 - waited.inSeconds).rounded(.down)))
        }
    }

    @Test func theStandInsAccountMustMatch() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            var configuration = Fixture.configuration(standIn)
            configuration.credentials = .authToken(TwilioStandIn.randomHex(count: 32))
            let error = try await withSender(configuration, clock: clock) { sender in
                await sendError(sender, Fixture.message(clock: clock))
            }
            #expect(error?.kind == .configuration)
            #expect(error?.providerCode == 20003)
            #expect(error?.attempts == 1)
            #expect(standIn.requestCount(to: Fixture.number) == 1)
            #expect(standIn.messages.isEmpty)
        }
    }

    // MARK: - Errors

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        var failure: TwilioStandIn.Failure
        var kind: SMSSendError.Kind
        var code: Int?
        /// HTTP requests expected with maxAttempts 3.
        var requests: Int
        var testDescription: String { "\(failure) -> \(kind)" }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(failure: .invalidToNumber, kind: .undeliverable, code: 21211, requests: 1),
        ErrorCase(failure: .unsubscribed, kind: .undeliverable, code: 21610, requests: 1),
        ErrorCase(failure: .unroutable, kind: .undeliverable, code: 21612, requests: 1),
        ErrorCase(
            failure: .error(status: 400, code: 21614, message: "not a mobile"), kind: .undeliverable, code: 21614,
            requests: 1),
        ErrorCase(
            failure: .error(status: 400, code: 21635, message: "landline"), kind: .undeliverable, code: 21635,
            requests: 1),
        ErrorCase(
            failure: .error(status: 400, code: 21408, message: "region"), kind: .undeliverable, code: 21408, requests: 1
        ),
        ErrorCase(failure: .authenticationFailed, kind: .configuration, code: 20003, requests: 1),
        ErrorCase(
            failure: .error(status: 400, code: 21212, message: "bad from"), kind: .configuration, code: 21212,
            requests: 1),
        ErrorCase(
            failure: .error(status: 400, code: 21606, message: "from cannot"), kind: .configuration, code: 21606,
            requests: 1),
        ErrorCase(
            failure: .error(status: 400, code: 21608, message: "trial"), kind: .configuration, code: 21608, requests: 1),
        ErrorCase(
            failure: .error(status: 403, code: 20008, message: "other"), kind: .configuration, code: 20008, requests: 1),
        ErrorCase(failure: .tooManyRequests, kind: .temporary, code: 20429, requests: 3),
        ErrorCase(failure: .serverError, kind: .temporary, code: 20500, requests: 3),
        ErrorCase(failure: .serviceUnavailable, kind: .temporary, code: nil, requests: 3),
        ErrorCase(failure: .dropConnection, kind: .temporary, code: nil, requests: 3),
    ]

    @Test(arguments: errorCases)
    func eachErrorClassIsRetriedOrNotAsSpecified(_ errorCase: ErrorCase) async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: errorCase.failure)
            let error = try await withSender(Fixture.configuration(standIn, maxAttempts: 3), clock: clock) { sender in
                await sendError(sender, Fixture.message(clock: clock))
            }
            let failure = try #require(error)
            #expect(failure.kind == errorCase.kind)
            #expect(failure.providerCode == errorCase.code)
            #expect(failure.provider == "twilio")
            #expect(failure.attempts == errorCase.requests)
            #expect(standIn.requestCount(to: Fixture.number) == errorCase.requests)
            #expect(clock.sleeps.count == errorCase.requests - 1)
            // Back-off doubles from 0.5 s, with up to half taken off at random.
            for (index, wait) in clock.sleeps.enumerated() {
                let full = 0.5 * Double(1 << index)
                #expect(wait.inSeconds >= full / 2 - 0.001 && wait.inSeconds <= full + 0.001)
            }
            #expect(standIn.messages.isEmpty)
        }
    }

    @Test(arguments: [TwilioStandIn.Failure.tooManyRequests, .serverError, .dropConnection])
    func aTemporaryFailureThenSuccessIsSent(_ failure: TwilioStandIn.Failure) async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: failure, times: 2)
            let receipt = try await withSender(Fixture.configuration(standIn, maxAttempts: 3), clock: clock) { sender in
                try await sender.send(Fixture.message(clock: clock))
            }
            #expect(receipt.attempts == 3)
            #expect(standIn.requestCount(to: Fixture.number) == 3)
            #expect(standIn.messages.count == 1)
            #expect(receipt.messageID == standIn.messages.first?.sid)
        }
    }

    @Test func retriesStopWhenTheCodeWouldExpireFirst() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: .serverError)
            // Each wait is 1 to 2 s and each attempt may take 5 s: with 7 s left a second
            // attempt always fits (wait + 5 <= 7), a third never does (two waits + 5 > 7).
            let configuration = Fixture.configuration(
                standIn, requestTimeout: .seconds(5), maxAttempts: 10, initialBackoff: .seconds(2),
                maxBackoff: .seconds(2))
            let error = try await withSender(configuration, clock: clock) { sender in
                await sendError(sender, Fixture.message(expiresIn: 7, clock: clock))
            }
            #expect(error?.kind == .temporary)
            #expect(error?.attempts == 2)
            #expect(error?.reason.contains("expires") == true)
            #expect(standIn.requestCount(to: Fixture.number) == 2)
        }
    }

    @Test func aCodeThatExpiresWithinOneTimeoutIsNotSentAtAll() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            let error = try await withSender(Fixture.configuration(standIn, requestTimeout: .seconds(5)), clock: clock)
            {
                sender in
                await sendError(sender, Fixture.message(expiresIn: 4.9, clock: clock))
            }
            #expect(error?.kind == .temporary)
            #expect(error?.attempts == 0)
            #expect(standIn.requests.isEmpty)
        }
    }

    @Test func aSlowAnswerTimesOutAsTemporaryAfterBoundedAttempts() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: .slowAnswer(after: .seconds(3)))
            let configuration = Fixture.configuration(standIn, requestTimeout: .milliseconds(400), maxAttempts: 2)
            let error = try await withSender(configuration, clock: clock) { sender in
                await sendError(sender, Fixture.message(clock: clock))
            }
            #expect(error?.kind == .temporary)
            #expect(error?.attempts == 2)
            #expect(error?.reason.contains("in time") == true)
            #expect(standIn.requestCount(to: Fixture.number) == 2)
            // "in time" is the request timeout's reason: each attempt was cut short at 400 ms
            // rather than waiting for the 3 s answer. (No wall-clock bound here: on a shared
            // machine under load even 400 ms twice was seen to take 11 s.)
        }
    }

    @Test func anUnreachableServerIsTemporary() async throws {
        // A port that was just listening and is now closed.
        let (accountSID, token, baseURL) = try await withStandIn { ($0.accountSID, $0.authToken, $0.baseURL) }
        let clock = VirtualClock()
        let configuration = TwilioConfiguration(
            accountSID: accountSID, credentials: .authToken(token), sender: .from("+15005550006"), baseURL: baseURL,
            requestTimeout: .seconds(2), maxAttempts: 2)
        let error = try await withSender(configuration, clock: clock) { sender in
            await sendError(sender, Fixture.message(clock: clock))
        }
        #expect(error?.kind == .temporary)
        #expect(error?.attempts == 2)
    }

    @Test func otherNumbersAreNotAffectedByOnesFailure() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: .invalidToNumber)
            try await withSender(Fixture.configuration(standIn), clock: clock) { sender in
                _ = await sendError(sender, Fixture.message(clock: clock))
                let receipt = try await sender.send(Fixture.message(to: "+447700900123", clock: clock))
                #expect(receipt.attempts == 1)
            }
            #expect(standIn.messages.map(\.to) == ["+447700900123"])
        }
    }

    @Test func anOverlongTextIsRefusedWithoutARequest() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            var message = Fixture.message(clock: clock)
            message.body = String(repeating: "x", count: 1601)
            let error = try await withSender(Fixture.configuration(standIn), clock: clock) { sender in
                await sendError(sender, message)
            }
            #expect(error?.kind == .configuration)
            #expect(error?.attempts == 0)
            #expect(standIn.requests.isEmpty)
        }
    }

    @Test func aSenderAfterShutdownFailsAsTemporary() async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            let sender = try TwilioSender(
                configuration: Fixture.configuration(standIn, maxAttempts: 3), logger: quietLogger,
                now: clock.now, sleep: clock.sleep)
            try await sender.shutdown()
            try await sender.shutdown()  // a second call is harmless
            let error = await sendError(sender, Fixture.message(clock: clock))
            #expect(error?.kind == .temporary)
            #expect(error?.attempts == 0)
            #expect(standIn.requests.isEmpty)
        }
    }

    // MARK: - Concurrency

    @Test(arguments: [1, 2])
    func noMoreThanTheLimitOfRequestsIsInFlight(limit: Int) async throws {
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: .slowAnswer(after: .milliseconds(250)))
            let configuration = Fixture.configuration(standIn, maxConcurrentRequests: limit)
            let receipts = try await withSender(configuration, clock: clock) { sender in
                try await withThrowingTaskGroup(of: SMSReceipt.self) { group in
                    for _ in 0..<6 {
                        group.addTask { try await sender.send(Fixture.message(clock: clock)) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(receipts.count == 6)
            #expect(receipts.allSatisfy { $0.attempts == 1 })
            #expect(standIn.messages.count == 6)
            #expect(standIn.peakConcurrentRequests == limit)
        }
    }

    @Test func withoutALowLimitTheSameLoadRunsConcurrently() async throws {
        // The control for the test above: the stand-in does see concurrent requests.
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: .slowAnswer(after: .milliseconds(250)))
            try await withSender(Fixture.configuration(standIn, maxConcurrentRequests: 16), clock: clock) { sender in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<6 {
                        group.addTask { _ = try await sender.send(Fixture.message(clock: clock)) }
                    }
                    try await group.waitForAll()
                }
            }
            #expect(standIn.peakConcurrentRequests > 2)
        }
    }

    @Test func sendsWaitingForAPermitKeepTheirWholeTimeout() async throws {
        // One request at a time, each answered after 0.2 s, twelve sends: the last waits about
        // 2.2 s for its turn, longer than the 1.5 s timeout. Waiting for a permit must not count
        // against the timeout, so every send succeeds with one attempt.
        try await withStandIn { standIn in
            let clock = VirtualClock()
            standIn.fail(Fixture.number, with: .slowAnswer(after: .milliseconds(200)))
            let configuration = Fixture.configuration(
                standIn, requestTimeout: .milliseconds(1500), maxAttempts: 1, maxConcurrentRequests: 1)
            let receipts = try await withSender(configuration, clock: clock) { sender in
                try await withThrowingTaskGroup(of: SMSReceipt.self) { group in
                    for _ in 0..<12 {
                        group.addTask { try await sender.send(Fixture.message(clock: clock)) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(receipts.count == 12)
            #expect(standIn.requestCount(to: Fixture.number) == 12)
            #expect(standIn.peakConcurrentRequests == 1)
        }
    }

    @Test func theLimiterNeverGrantsMoreThanItsPermits() async {
        let limiter = RequestLimiter(limit: 3)
        let holders = HolderCount()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    guard await limiter.acquire() else { return }
                    holders.enter()
                    try? await Task.sleep(for: .milliseconds(5))
                    holders.leave()
                    limiter.release()
                }
            }
        }
        #expect(holders.peak == 3)
        #expect(holders.total == 20)
    }

    @Test func aCancelledWaiterGivesUpWithoutTakingAPermit() async throws {
        let limiter = RequestLimiter(limit: 1)
        #expect(await limiter.acquire())
        let waiter = Task { await limiter.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        #expect(await waiter.value == false)
        limiter.release()
        // The one permit is free again (the cancelled waiter did not keep it).
        #expect(await limiter.acquire())
        let second = Task { await limiter.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        limiter.release()
        #expect(await second.value)
    }

    // MARK: - Logging

    @Test func nothingLoggedOrThrownContainsTheCodeTextCredentialsOrFullNumber() async throws {
        let keySID = TwilioStandIn.randomSID(prefix: "SK")
        let secret = TwilioStandIn.randomHex(count: 32)
        try await withStandIn(apiKeys: [keySID: secret]) { standIn in
            let capture = LogCapture()
            let logger = capture.logger()
            let clock = VirtualClock()
            var errors: [SMSSendError] = []
            let numbers = ["+14155552671", "+14155552672", "+14155552673", "+14155552674", "+14155552675"]
            standIn.fail(numbers[1], with: .invalidToNumber)  // Twilio's message quotes the number
            standIn.fail(numbers[2], with: .serverError)
            standIn.fail(numbers[3], with: .dropConnection, times: 1)
            for credentials in [
                TwilioConfiguration.Credentials.authToken(standIn.authToken), .apiKey(sid: keySID, secret: secret),
            ] {
                try await withSender(
                    Fixture.configuration(standIn, credentials: credentials), clock: clock, logger: logger
                ) {
                    sender in
                    for number in numbers.prefix(4) {
                        do { _ = try await sender.send(Fixture.message(to: number, clock: clock)) } catch {
                            errors.append(try #require(error as? SMSSendError))
                        }
                    }
                }
            }
            // Wrong credentials: a configuration error at error level.
            var wrong = Fixture.configuration(standIn, credentials: .authToken(String(standIn.authToken.reversed())))
            wrong.maxAttempts = 3
            try await withSender(wrong, clock: clock, logger: logger) { sender in
                if let error = await sendError(sender, Fixture.message(to: numbers[4], clock: clock)) {
                    errors.append(error)
                }
            }
            // Failover between two senders, both failing temporarily.
            try await withSender(Fixture.configuration(standIn, maxAttempts: 1), clock: clock, logger: logger) {
                first in
                try await withSender(Fixture.configuration(standIn, maxAttempts: 1), clock: clock, logger: logger) {
                    second in
                    let failover = FailoverSender(senders: [first, second], logger: logger)
                    if let error = await sendError(failover, Fixture.message(to: numbers[2], clock: clock)) {
                        errors.append(error)
                    }
                }
            }
            #expect(capture.all.contains { $0.message.contains("trying the next") })

            let text = capture.text + "\n" + errors.map { "\($0) \($0.reason)" }.joined(separator: "\n")
            #expect(!text.isEmpty)
            let secrets = [
                Fixture.code, Fixture.body, "Your otpd code", standIn.authToken, String(standIn.authToken.reversed()),
                secret,
            ]
            for value in secrets { #expect(!text.contains(value), "logged: \(value)") }
            for number in numbers {
                #expect(!text.contains(number))
                #expect(!text.contains(String(number.dropFirst())))  // digits without +
            }
            // What should be there is there: masked numbers, the sid, and a loud configuration error.
            #expect(text.contains("+1******2671"))
            #expect(text.contains(try #require(standIn.messages.first?.sid)))
            let configurationErrors = capture.all.filter { $0.level == .error }
            #expect(configurationErrors.count == 1)
            #expect(configurationErrors.first?.text.contains(standIn.accountSID) == true)
            #expect(configurationErrors.first?.text.contains("20003") == true)
            #expect(capture.all.contains { $0.level == .warning && $0.message.contains("retrying") })
        }
    }
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Counts concurrent holders of a permit.
final class HolderCount: Sendable {
    private let state = Mutex((current: 0, peak: 0, total: 0))

    func enter() {
        state.withLock {
            $0.current += 1
            $0.total += 1
            $0.peak = max($0.peak, $0.current)
        }
    }

    func leave() { state.withLock { $0.current -= 1 } }
    var peak: Int { state.withLock { $0.peak } }
    var total: Int { state.withLock { $0.total } }
}
