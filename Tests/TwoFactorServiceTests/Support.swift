import Foundation
import Logging
import OTPCore
import OTPPostgres
import OTPStore
import OTPTestSupport
import Synchronization
import Testing

/// Captures messages instead of sending them; can be told to fail.
final class RecordingSender: SMSSender {
    let name = "recording"
    private let state = Mutex<(messages: [SMSMessage], failure: SMSSendError?)>(([], nil))

    func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt {
        let failure: SMSSendError? = state.withLock { state in
            if let failure = state.failure { return failure }
            state.messages.append(message)
            return nil
        }
        if let failure { throw failure }
        return SMSReceipt(provider: name, messageID: "m\(messages.count)")
    }

    var messages: [SMSMessage] { state.withLock { $0.messages } }

    func fail(with error: SMSSendError?) { state.withLock { $0.failure = error } }

    /// The code in the last message.
    var lastCode: String {
        guard let body = messages.last?.body else { return "" }
        return String(body.split(separator: " ").first { $0.count >= 6 && $0.allSatisfy(\.isNumber) } ?? "")
    }
}

extension TwoFactorPolicy {
    /// Moves every SMS budget and the resend cooldown out of the way, for tests that send many
    /// codes to one account on purpose (the budgets have tests of their own).
    mutating func liftSMSBudgets() {
        resendCooldown = 0
        smsPerAccountPerHour = 1000
        smsPerPhonePerDay = 1000
        smsVerificationsPerPhonePerDay = 1000
        smsGlobalPerMinute = 0
        smsPerCountryPerHour = 0
    }
}

/// The store the domain's tests run on: SQLite by default; `OTPD_TEST_STORE=postgresql` runs
/// the same tests on PostgreSQL (a throw-away cluster), as `make test` does in a second pass.
enum TestStore: String {
    case sqlite
    case postgresql

    static var current: TestStore {
        ProcessInfo.processInfo.environment["OTPD_TEST_STORE"].flatMap(TestStore.init(rawValue:)) ?? .sqlite
    }
}

/// A service on a fresh temporary database, with a manual clock and a recording sender.
struct Fixture {
    let clock = ManualClock()
    let sender = RecordingSender()
    let service: TwoFactorService
    /// The store the service runs on.
    let store: any TwoFactorStore
    /// The SQLite database underneath, for tests about SQLite itself (`Fixture(on: .sqlite)`);
    /// nil on PostgreSQL.
    let sqlite: SQLiteStore?
    let directory: String
    let keys: DaemonKeys

    /// - Parameter backend: the store; by default the one the test run is for
    ///   (``TestStore/current``). Tests that reach into SQLite itself pass `.sqlite`.
    init(on backend: TestStore = .current, configure: (inout TwoFactorPolicy) -> Void = { _ in }) async throws {
        directory = try TemporaryDirectory(prefix: "otpd-svc").path
        switch backend {
        case .sqlite:
            let database = try SQLiteStore(path: directory + "/test.sqlite", logger: Logger(label: "test"))
            sqlite = database
            store = try SQLiteTwoFactorStore(store: database)
        case .postgresql:
            let database = try PostgresTestCluster.shared().createDatabase()
            sqlite = nil
            store = try await PostgresTwoFactorStore(
                settings: try PostgresSettings(url: database.url), password: database.password,
                logger: Logger(label: "test"), connectDeadline: .seconds(30))
        }
        keys = try DaemonKeys(masterKey: (0..<32).map { UInt8($0 + 1) })
        var policy = TwoFactorPolicy()
        configure(&policy)
        service = try TwoFactorService(
            store: store, sender: sender, keys: keys, policy: policy, clock: clock, random: SeededRandom())
    }

    /// The SQLite database, for a test created with `Fixture(on: .sqlite)`.
    var database: SQLiteStore {
        get throws { try #require(sqlite, "this test needs Fixture(on: .sqlite)") }
    }

    /// Another service on the same database, clock and key, sending through `sender`.
    func service(sending sender: any SMSSender) throws -> TwoFactorService {
        try TwoFactorService(
            store: store, sender: sender, keys: keys, policy: TwoFactorPolicy(), clock: clock,
            random: SeededRandom(seed: 0xC0FFEE))
    }

    /// Waits (up to 10 s) until every event recorded so far can be read by the notification
    /// hook. At once on SQLite; on PostgreSQL the hook reads up to the oldest transaction still
    /// running in the whole cluster, which the other tests' transactions may hold back a moment.
    func settleEvents() async throws {
        for _ in 0..<200 {
            let settled = try await store.transaction { tx in
                try tx.eventsToNotify(
                    after: try tx.notificationHorizon(), through: .end, kinds: Set(EventKind.allCases), window: 1,
                    limit: 1
                ).events.isEmpty
            }
            if settled { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the events did not become readable by the hook within 10 s")
    }

    func tearDown() {
        sqlite?.close()
        (store as? PostgresTwoFactorStore)?.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Saves and verifies a number: SMS two-factor on.
    @discardableResult
    func enrollPhone(_ account: String, _ number: String = "+15551234567") async throws -> VerifyOutcome {
        _ = try await service.setPhone(accountID: account, number: number, proof: nil)
        let ticket = try await service.startChallenge(accountID: account, purpose: .verifyPhone)
        let outcome = try await service.verify(
            accountID: account, purpose: .verifyPhone, code: sender.lastCode, challengeID: ticket.challengeID)
        #expect(outcome.success)
        return outcome
    }

    /// Turns the authenticator on and returns its secret.
    func enrollTOTP(_ account: String, proof: ProofInput? = nil) async throws -> TOTP {
        let enrollment = try await service.beginTOTPEnrollment(accountID: account, label: nil, proof: proof)
        let totp = try TOTP(secret: try Base32.decode(enrollment.secretBase32))
        let confirmation = try await service.confirmTOTPEnrollment(
            accountID: account, code: totp.code(at: clock.now())!.text)
        #expect(confirmation.success)
        return totp
    }

    /// Sends a code for `purpose` and returns (challenge id, code).
    func challenge(_ account: String, _ purpose: CodePurpose) async throws -> (id: String, code: String) {
        let ticket = try await service.startChallenge(accountID: account, purpose: purpose)
        return (ticket.challengeID, sender.lastCode)
    }

    /// A wrong code of the right shape for the last challenge.
    func wrongCode(than code: String) -> String {
        code == "000000" ? "111111" : "000000"
    }
}
