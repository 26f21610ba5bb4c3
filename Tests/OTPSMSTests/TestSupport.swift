import Foundation
import Logging
import OTPCore
import OTPSMS
import OTPTestSupport
import Synchronization
import Testing
import TwilioStandIn

/// A clock that stands still except when the sender waits: `sleep` advances it at once, so
/// back-off costs no real time and expiry decisions are exact.
final class VirtualClock: Sendable {
    private struct State {
        var now: Date
        var sleeps: [Duration] = []
    }

    private let state: Mutex<State>

    init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        state = Mutex(State(now: start))
    }

    @Sendable func now() -> Date { state.withLock { $0.now } }

    @Sendable func sleep(_ duration: Duration) async throws {
        try Task.checkCancellation()
        state.withLock {
            $0.sleeps.append(duration)
            $0.now += Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }
    }

    /// Every back-off the sender waited, in order.
    var sleeps: [Duration] { state.withLock { $0.sleeps } }
}

enum Fixture {
    static let number = "+14155552671"
    static let code = "428913"
    /// The text with the code; `+`, spaces, `&`, `=` and a non-ASCII letter check the form encoding.
    static let body = "Your otpd code is \(code) + expires in 5 min & is for you=only. Señor"

    static func message(to number: String = Fixture.number, expiresIn seconds: Double = 300, clock: VirtualClock)
        -> SMSMessage
    {
        SMSMessage(
            to: try! PhoneNumber(parsing: number), body: body, purpose: .login, challengeID: "ch_test",
            expiresAt: clock.now().addingTimeInterval(seconds))
    }

    static func configuration(
        _ standIn: TwilioStandIn, credentials: TwilioConfiguration.Credentials? = nil,
        sender: TwilioConfiguration.Sender = .from("+15005550006"), statusCallbackURL: String? = nil,
        requestTimeout: Duration = .seconds(5), maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(500),
        maxBackoff: Duration = .seconds(4), maxConcurrentRequests: Int = 16
    ) -> TwilioConfiguration {
        TwilioConfiguration(
            accountSID: standIn.accountSID, credentials: credentials ?? .authToken(standIn.authToken), sender: sender,
            baseURL: standIn.baseURL, statusCallbackURL: statusCallbackURL, requestTimeout: requestTimeout,
            maxAttempts: maxAttempts, initialBackoff: initialBackoff, maxBackoff: maxBackoff,
            maxConcurrentRequests: maxConcurrentRequests)
    }
}

/// Runs `body` with a started stand-in, and stops it afterwards whatever happens.
func withStandIn<T>(
    apiKeys: [String: String] = [:], _ body: (TwilioStandIn) async throws -> T
) async throws -> T {
    let standIn = TwilioStandIn(apiKeys: apiKeys)
    try await standIn.start()
    do {
        let result = try await body(standIn)
        await standIn.stop()
        return result
    } catch {
        await standIn.stop()
        throw error
    }
}

/// Runs `body` with a Twilio sender on the virtual clock, and shuts it down afterwards.
func withSender<T>(
    _ configuration: TwilioConfiguration, clock: VirtualClock, logger: Logger = quietLogger,
    _ body: (TwilioSender) async throws -> T
) async throws -> T {
    let sender = try TwilioSender(configuration: configuration, logger: logger, now: clock.now, sleep: clock.sleep)
    do {
        let result = try await body(sender)
        try await sender.shutdown()
        return result
    } catch {
        try? await sender.shutdown()
        throw error
    }
}

/// Sends and returns the error, failing the test if the send succeeded.
func sendError(_ sender: some SMSSender, _ message: SMSMessage, sourceLocation: SourceLocation = #_sourceLocation)
    async -> SMSSendError?
{
    do {
        let receipt = try await sender.send(message)
        Issue.record("expected a failure, got \(receipt)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// A logger that drops everything (tests that check logging use ``LogCapture``).
let quietLogger = Logger(label: "otpd.sms.test") { _ in SwiftLogNoOpLogHandler() }
