import AsyncHTTPClient
public import Foundation
public import Logging
import NIOCore
import NIOHTTP1
public import OTPCore
import OTPMetrics
import Synchronization

// MARK: - Configuration

/// The settings of a ``TwilioSender``. Check them with ``validate()`` (``TwilioSender/init(configuration:logger:now:)``
/// does); its `description` never contains a credential.
public struct TwilioConfiguration: Sendable, CustomStringConvertible {
    /// How requests authenticate (HTTP Basic).
    public enum Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// The account SID as user and its auth token as password.
        case authToken(String)
        /// An API key (`SK` + 32 hex) as user and its secret as password; preferred, since a key
        /// can be revoked on its own.
        case apiKey(sid: String, secret: String)

        /// Names the kind (and the API key SID), never the secret.
        public var description: String {
            switch self {
            case .authToken: "auth token"
            case .apiKey(let sid, _): "API key \(sid)"
            }
        }

        /// Same as ``description``: never the secret.
        public var debugDescription: String { description }

        /// No children, so `dump` and reflection cannot reach the secret.
        public var customMirror: Mirror { Mirror(self, children: [:]) }
    }

    /// Who the message is from.
    public enum Sender: Sendable, Equatable, CustomStringConvertible {
        /// A Twilio number in E.164 form, e.g. `+15005550006` (sent as `From`).
        case from(String)
        /// A Messaging Service, `MG` + 32 hex (sent as `MessagingServiceSid`); Twilio picks the number.
        case messagingService(String)

        public var description: String {
            switch self {
            case .from(let number): "from \(number)"
            case .messagingService(let sid): "messaging service \(sid)"
            }
        }
    }

    /// Twilio's API: `https://api.twilio.com`.
    public static let defaultBaseURL = "https://api.twilio.com"

    /// Scheme, host and optional port, without a path: `https://...`, or `http://` for a loopback
    /// host only (tests). Credentials are never sent over plain HTTP to another host.
    public var baseURL: String
    /// `AC` + 32 hex: the account in the request path (and the Basic auth user with an auth token).
    public var accountSID: String
    public var credentials: Credentials
    public var sender: Sender
    /// Sent as `StatusCallback` when set: where Twilio posts delivery reports (absolute http(s) URL).
    public var statusCallbackURL: String?
    /// The longest one HTTP attempt may take (connect, send, answer). 0.1 s to 60 s; default 5 s.
    public var requestTimeout: Duration
    /// The most HTTP attempts per message, retries included. 1 to 10; default 3.
    public var maxAttempts: Int
    /// The wait before the first retry; it doubles for each further retry, up to ``maxBackoff``,
    /// and a random part of up to half of it is taken off ("equal jitter"). Default 0.5 s.
    public var initialBackoff: Duration
    /// The longest wait between two attempts (before jitter). Default 4 s.
    public var maxBackoff: Duration
    /// The most HTTP requests this sender has in flight at once; further sends wait (without
    /// holding a thread) until one finishes. 1 to 1024; default 16.
    public var maxConcurrentRequests: Int

    public init(
        accountSID: String,
        credentials: Credentials,
        sender: Sender,
        baseURL: String = TwilioConfiguration.defaultBaseURL,
        statusCallbackURL: String? = nil,
        requestTimeout: Duration = .seconds(5),
        maxAttempts: Int = 3,
        initialBackoff: Duration = .milliseconds(500),
        maxBackoff: Duration = .seconds(4),
        maxConcurrentRequests: Int = 16
    ) {
        self.accountSID = accountSID
        self.credentials = credentials
        self.sender = sender
        self.baseURL = baseURL
        self.statusCallbackURL = statusCallbackURL
        self.requestTimeout = requestTimeout
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxConcurrentRequests = maxConcurrentRequests
    }

    /// Account, sender, credential kind and base URL; never a secret.
    public var description: String {
        "Twilio(account: \(accountSID), \(sender), \(credentials), base: \(baseURL))"
    }

    /// Whether Twilio may be told to post delivery reports to `url`: an absolute `https://` URL
    /// with a host, of at most 2048 bytes. Never plain http: each report carries the full phone
    /// number (docs/SECURITY.md §21).
    public static func isAcceptableStatusCallbackURL(_ url: String) -> Bool {
        guard url.utf8.count <= 2048, let components = URLComponents(string: url),
            components.scheme?.lowercased() == "https", let host = components.host
        else { return false }
        return !host.isEmpty
    }

    /// Throws the first problem found, in the order of the properties. Never echoes a secret.
    public func validate() throws(TwilioConfigurationError) {
        guard Self.isSID(accountSID, prefix: "AC") else { throw .invalidAccountSID }
        switch credentials {
        case .authToken(let token):
            guard Self.isPlausibleSecret(token) else { throw .invalidSecret("the auth token") }
        case .apiKey(let sid, let secret):
            guard Self.isSID(sid, prefix: "SK") else { throw .invalidAPIKeySID }
            guard Self.isPlausibleSecret(secret) else { throw .invalidSecret("the API key secret") }
        }
        switch sender {
        case .from(let number):
            guard let parsed = try? PhoneNumber(parsing: number), parsed.e164 == number else {
                throw .invalidFromNumber
            }
        case .messagingService(let sid):
            guard Self.isSID(sid, prefix: "MG") else { throw .invalidMessagingServiceSID }
        }
        _ = try normalizedBaseURL()
        if let statusCallbackURL {
            guard Self.isAcceptableStatusCallbackURL(statusCallbackURL) else { throw .invalidStatusCallbackURL }
        }
        guard requestTimeout >= .milliseconds(100), requestTimeout <= .seconds(60) else {
            throw .invalidRequestTimeout
        }
        guard (1...10).contains(maxAttempts) else { throw .invalidMaxAttempts }
        guard initialBackoff >= .zero, maxBackoff >= initialBackoff, maxBackoff <= .seconds(60) else {
            throw .invalidBackoff
        }
        guard (1...1024).contains(maxConcurrentRequests) else { throw .invalidMaxConcurrentRequests }
    }

    /// `baseURL` without a trailing `/`, after checking it.
    func normalizedBaseURL() throws(TwilioConfigurationError) -> String {
        guard let url = URLComponents(string: baseURL), let scheme = url.scheme?.lowercased(),
            let host = url.host, !host.isEmpty, url.user == nil, url.password == nil, url.query == nil,
            url.fragment == nil, url.path.isEmpty || url.path == "/"
        else { throw .invalidBaseURL }
        let loopback = ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased())
        guard scheme == "https" || (scheme == "http" && loopback) else { throw .insecureBaseURL }
        return baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
    }

    /// `prefix` followed by exactly 32 hex digits.
    static func isSID(_ value: String, prefix: String) -> Bool {
        guard value.hasPrefix(prefix) else { return false }
        let rest = value.utf8.dropFirst(prefix.utf8.count)
        return rest.count == 32
            && rest.allSatisfy {
                ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                    || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f"))
                    || ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "F"))
            }
    }

    /// Non-empty, at most 256 bytes, printable ASCII without spaces (a trailing newline from a
    /// token file is the usual mistake).
    static func isPlausibleSecret(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.count <= 256 && value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}

/// What is wrong with a ``TwilioConfiguration``. The description names the setting and the
/// expected form, never a secret.
public enum TwilioConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidAccountSID
    case invalidAPIKeySID
    /// The auth token or API key secret (named in the payload) is empty, too long, or contains
    /// spaces or control characters.
    case invalidSecret(String)
    case invalidFromNumber
    case invalidMessagingServiceSID
    case invalidBaseURL
    case insecureBaseURL
    case invalidStatusCallbackURL
    case invalidRequestTimeout
    case invalidMaxAttempts
    case invalidBackoff
    case invalidMaxConcurrentRequests

    public var description: String {
        switch self {
        case .invalidAccountSID:
            "the Twilio account SID must be AC followed by 32 hex digits"
        case .invalidAPIKeySID:
            "the Twilio API key SID must be SK followed by 32 hex digits"
        case .invalidSecret(let what):
            "\(what) is empty, longer than 256 bytes, or contains spaces or control characters "
                + "(a trailing newline in its file?)"
        case .invalidFromNumber:
            "the Twilio 'from' number must be in E.164 form: + and 8 to 15 digits, no spaces"
        case .invalidMessagingServiceSID:
            "the Twilio messaging service SID must be MG followed by 32 hex digits"
        case .invalidBaseURL:
            "the Twilio base URL must be scheme://host[:port] without user, path, query or fragment"
        case .insecureBaseURL:
            "the Twilio base URL must use https (plain http is allowed only for a loopback host)"
        case .invalidStatusCallbackURL:
            "the Twilio status callback must be an absolute https:// URL with a host, of at most 2048 bytes "
                + "(delivery reports carry full phone numbers)"
        case .invalidRequestTimeout:
            "the Twilio request timeout must be between 0.1 and 60 seconds"
        case .invalidMaxAttempts:
            "the Twilio max attempts must be between 1 and 10"
        case .invalidBackoff:
            "the Twilio back-off must be at least 0, and the maximum back-off at least the initial one "
                + "and at most 60 seconds"
        case .invalidMaxConcurrentRequests:
            "the Twilio max concurrent requests must be between 1 and 1024"
        }
    }
}

// MARK: - Sender

/// Sends text messages through Twilio's Programmable Messaging API
/// (`POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`).
///
/// Each ``send(_:)``:
/// - posts `To`, `From` or `MessagingServiceSid`, `Body`, `ValidityPeriod` (the code's remaining
///   lifetime in whole seconds, clamped to 1...36000) and `StatusCallback` when configured, form
///   encoded, with HTTP Basic auth;
/// - starts an attempt only when a whole ``TwilioConfiguration/requestTimeout`` still fits before
///   the message's `expiresAt` (by the injected clock), so it never sends a code that would
///   arrive dead and never outlives the code;
/// - retries, with doubling back-off and jitter, only temporary failures (HTTP 429 / code 20429,
///   408, 5xx, timeouts, connection errors), at most ``TwilioConfiguration/maxAttempts`` times;
/// - holds one of ``TwilioConfiguration/maxConcurrentRequests`` permits per HTTP request (not
///   during back-off), so a slow Twilio cannot pile up connections;
/// - returns an ``SMSReceipt`` (`provider` "twilio", `messageID` the `SM...` sid, the answered
///   `status`, `attempts`) or throws an ``SMSSendError`` whose `kind`, `providerCode` and
///   `attempts` follow ``classify(httpStatus:code:)``.
///
/// Logging (through the `Logger` given to `init`): one line per outcome and per retried attempt,
/// with the number masked, the challenge id, HTTP status and Twilio error code. Never the
/// message text (it holds the code), the full number, the auth token or API secret, nor
/// Twilio's error message (it may quote the number). Authentication failures (20003) and other
/// configuration errors are logged at `error` level with the account SID.
///
/// Call ``shutdown()`` once when done (before the last reference goes away).
public final class TwilioSender: SMSSender {
    public let name = "twilio"
    /// The validated configuration.
    public let configuration: TwilioConfiguration

    private let client: HTTPClient
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let sleep: @Sendable (Duration) async throws -> Void
    private let limiter: RequestLimiter
    private let url: String
    private let authorization: String
    private let timeoutSeconds: Double
    private let isShutDown = Mutex(false)

    /// Validates `configuration` and creates the HTTP client (on the shared singleton event loop
    /// group; no threads of its own).
    ///
    /// - Parameters:
    ///   - logger: where outcomes are logged (see the type's documentation for what).
    ///   - now: the clock that `SMSMessage.expiresAt` is measured against: pass the daemon's
    ///     clock so the validity period and the retry cut-off agree with the code's expiry.
    /// - Throws: the first problem of `configuration`.
    public convenience init(
        configuration: TwilioConfiguration, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }
    ) throws(TwilioConfigurationError) {
        try self.init(
            configuration: configuration, logger: logger, now: now, sleep: { try await Task.sleep(for: $0) })
    }

    /// As the public initializer, with the back-off wait replaceable (tests pass a virtual clock).
    package init(
        configuration: TwilioConfiguration, logger: Logger, now: @escaping @Sendable () -> Date,
        sleep: @escaping @Sendable (Duration) async throws -> Void
    ) throws(TwilioConfigurationError) {
        try configuration.validate()
        let base = try configuration.normalizedBaseURL()
        self.configuration = configuration
        self.logger = logger
        self.now = now
        self.sleep = sleep
        self.limiter = RequestLimiter(limit: configuration.maxConcurrentRequests)
        self.url = base + "/2010-04-01/Accounts/\(configuration.accountSID)/Messages.json"
        let (user, password) =
            switch configuration.credentials {
            case .authToken(let token): (configuration.accountSID, token)
            case .apiKey(let sid, let secret): (sid, secret)
            }
        self.authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        self.timeoutSeconds = configuration.requestTimeout.seconds
        let timeout = TimeAmount.nanoseconds(Int64(timeoutSeconds * 1e9))
        var clientConfiguration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: timeout, read: timeout),
            connectionPool: .init(
                idleTimeout: .seconds(60),
                concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConcurrentRequests),
            decompression: .disabled)
        clientConfiguration.httpVersion = .automatic
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
    }

    /// Closes the HTTP connections; call it once sends have finished. Sends after it fail at once
    /// as temporary errors, without a request. Safe to call more than once.
    public func shutdown() async throws {
        let first = isShutDown.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        try await client.shutdown()
    }

    /// Sends `message` as described for the type. Never throws anything but ``SMSSendError``.
    public func send(_ message: SMSMessage) async throws(SMSSendError) -> SMSReceipt {
        guard !isShutDown.withLock({ $0 }) else {
            throw fail(
                message, .temporary, reason: "the Twilio sender is shut down", code: nil, httpStatus: nil,
                attempts: 0)
        }
        let body = message.body
        guard !body.isEmpty, body.count <= 1600 else {
            throw fail(
                message, .configuration, reason: "the message text is empty or longer than 1600 characters",
                code: nil, httpStatus: nil, attempts: 0)
        }
        var attempts = 0
        var lastCode: Int?
        var lastReason = "the code expires before an attempt could finish"
        while true {
            // Never start an attempt that could not finish before the code expires.
            guard remainingLifetime(of: message) >= timeoutSeconds else {
                throw fail(
                    message, .temporary,
                    reason: attempts == 0
                        ? lastReason
                        : "gave up: \(lastReason); "
                            + "the code expires before another attempt could finish",
                    code: lastCode, httpStatus: nil, attempts: attempts)
            }
            guard await limiter.acquire() else {
                throw fail(
                    message, .temporary, reason: "cancelled", code: lastCode, httpStatus: nil, attempts: attempts)
            }
            // Waiting for a permit took time: check again.
            let remaining = remainingLifetime(of: message)
            guard remaining >= timeoutSeconds else {
                limiter.release()
                continue
            }
            attempts += 1
            let outcome = await attempt(message, validityPeriod: Self.validityPeriod(remaining: remaining))
            limiter.release()
            switch outcome {
            case .accepted(let sid, let status):
                logger.info(
                    "sms accepted by twilio",
                    metadata: metadata(for: message).merging([
                        "twilio.message_sid": "\(sid)", "twilio.status": "\(status)", "sms.attempts": "\(attempts)",
                    ]) { $1 })
                return SMSReceipt(provider: name, messageID: sid, status: status, attempts: attempts)
            case .failed(let kind, let reason, let code, let httpStatus, let retry):
                guard retry else {
                    throw fail(message, kind, reason: reason, code: code, httpStatus: httpStatus, attempts: attempts)
                }
                lastCode = code
                lastReason = reason
                guard attempts < configuration.maxAttempts else {
                    throw fail(
                        message, .temporary, reason: "gave up after \(attempts) attempts: \(reason)",
                        code: code, httpStatus: httpStatus, attempts: attempts)
                }
                let delay = Self.backoff(
                    retry: attempts, initial: configuration.initialBackoff, maximum: configuration.maxBackoff,
                    random: Double.random(in: 0...1))
                guard remainingLifetime(of: message) >= delay.seconds + timeoutSeconds else {
                    throw fail(
                        message, .temporary,
                        reason: "gave up: \(reason); the code expires before "
                            + "another attempt could finish", code: code, httpStatus: httpStatus, attempts: attempts)
                }
                logger.warning(
                    "twilio attempt failed, retrying",
                    metadata: metadata(for: message).merging([
                        "sms.attempt": "\(attempts)", "sms.retry_in_ms": "\(Int(delay.seconds * 1000))",
                        "sms.reason": "\(reason)", "http.status": "\(httpStatus.map(String.init) ?? "none")",
                        "twilio.error_code": "\(code.map(String.init) ?? "none")",
                    ]) { $1 })
                do {
                    try await sleep(delay)
                } catch {
                    throw fail(
                        message, .temporary, reason: "cancelled", code: code, httpStatus: httpStatus,
                        attempts: attempts)
                }
            }
        }
    }

    // MARK: - Classification

    /// How a Twilio answer is treated: the error kind, whether it is retried, and a fixed
    /// reason for the log and the delivery log (never Twilio's own message text).
    ///
    /// | HTTP status / Twilio code                 | kind          | retried | because            |
    /// |-------------------------------------------|---------------|---------|--------------------|
    /// | 429, or code 20429 (too many requests)    | temporary     | yes     | never processed    |
    /// | 408, 5xx (any code)                       | temporary     | yes     | Twilio's trouble   |
    /// | 401, or code 20003 (authentication)       | configuration | no      | SID, token or key  |
    /// | 21211 invalid `To` number                 | undeliverable | no      | the number         |
    /// | 21408 region not enabled (geo permission) | undeliverable | no      | the number's country (1) |
    /// | 21610 recipient replied STOP              | undeliverable | no      | opted out (2)      |
    /// | 21612 not reachable / unroutable          | undeliverable | no      | the number         |
    /// | 21614 not a mobile number                 | undeliverable | no      | the number         |
    /// | 21635 landline                            | undeliverable | no      | the number         |
    /// | 21212 invalid `From` number               | configuration | no      | otpd's sender      |
    /// | 21606 `From` cannot send SMS (there)      | configuration | no      | otpd's sender      |
    /// | 21608 unverified number, trial account    | configuration | no      | the account (3)    |
    /// | any other 4xx, 3xx or other status        | configuration | no      | otpd's request (4) |
    ///
    /// (1) An administrator can enable the country in Twilio's geo permissions; until then no
    /// number there can be reached, so it is reported against the number, like Twilio does.
    /// (2) Must be honoured: never retried, never failed over.
    /// (3) The account must be upgraded; the user's number is not at fault.
    /// (4) A request Twilio refuses for an unknown reason is otpd's to fix: logged at `error`.
    ///
    /// Transport failures (timeouts, refused or dropped connections) are temporary and retried.
    public static func classify(httpStatus: Int, code: Int?)
        -> (kind: SMSSendError.Kind, retried: Bool, reason: String)
    {
        switch (httpStatus, code) {
        case (429, _), (_, 20429):
            (.temporary, true, "Twilio is rate limiting requests (429)")
        case (401, _), (_, 20003):
            (
                .configuration, false,
                "Twilio refused the credentials (check the account SID and the auth token or API key)"
            )
        case (408, _):
            (.temporary, true, "Twilio timed out reading the request (408)")
        case (500...599, _):
            (.temporary, true, "Twilio answered HTTP \(httpStatus)")
        case (_, 21211?):
            (.undeliverable, false, "Twilio says the number is not a valid phone number")
        case (_, 21408?):
            (.undeliverable, false, "sending to this number's region is not enabled in the Twilio account")
        case (_, 21610?):
            (.undeliverable, false, "the recipient has opted out of messages (replied STOP)")
        case (_, 21612?):
            (.undeliverable, false, "Twilio cannot route a message to this number")
        case (_, 21614?):
            (.undeliverable, false, "the number is not a mobile number")
        case (_, 21635?):
            (.undeliverable, false, "the number is a landline")
        case (_, 21212?):
            (.configuration, false, "Twilio refused the configured 'from' number as invalid")
        case (_, 21606?):
            (.configuration, false, "the configured 'from' number cannot send this message")
        case (_, 21608?):
            (.configuration, false, "the Twilio account is a trial account and the number is not verified")
        case (400...499, let code?):
            (.configuration, false, "Twilio refused the request (HTTP \(httpStatus), code \(code))")
        case (400...499, nil):
            (.configuration, false, "Twilio refused the request (HTTP \(httpStatus))")
        default:
            (.configuration, false, "unexpected answer from Twilio (HTTP \(httpStatus))")
        }
    }

    // MARK: - One attempt

    private enum Outcome {
        case accepted(sid: String, status: String)
        case failed(kind: SMSSendError.Kind, reason: String, code: Int?, httpStatus: Int?, retry: Bool)
    }

    private struct Created: Decodable {
        var sid: String?
        var status: String?
    }

    private struct ErrorBody: Decodable {
        var code: Int?
    }

    private func attempt(_ message: SMSMessage, validityPeriod: Int) async -> Outcome {
        var fields: [(String, String)] = [("To", message.to.e164)]
        switch configuration.sender {
        case .from(let number): fields.append(("From", number))
        case .messagingService(let sid): fields.append(("MessagingServiceSid", sid))
        }
        fields.append(("Body", message.body))
        fields.append(("ValidityPeriod", String(validityPeriod)))
        if let callback = configuration.statusCallbackURL { fields.append(("StatusCallback", callback)) }

        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: authorization)
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "otpd")
        request.body = .bytes(ByteBuffer(string: Self.formEncode(fields)))

        let response: HTTPClientResponse
        let started = ContinuousClock.now
        // Every request's time to its whole answer (or its failure), retries counted one by one.
        defer { OTPMetrics.twilioRequest(ContinuousClock.now - started) }
        do {
            response = try await client.execute(request, timeout: configuration.requestTimeout.timeAmount)
        } catch {
            return .failed(
                kind: .temporary, reason: Self.describeTransportError(error), code: nil, httpStatus: nil, retry: true)
        }
        let status = Int(response.status.code)
        let data: Data
        do {
            data = Data(try await response.body.collect(upTo: 64 * 1024).readableBytesView)
        } catch {
            // Twilio has answered: after a 2xx the message exists, so it must not be sent again.
            let accepted = (200...299).contains(status)
            return .failed(
                kind: .temporary,
                reason: "Twilio answered HTTP \(status) but the answer could not be read: "
                    + Self.describeTransportError(error),
                code: nil, httpStatus: status, retry: !accepted)
        }
        if (200...299).contains(status) {
            guard let created = try? JSONDecoder().decode(Created.self, from: data), let sid = created.sid,
                TwilioConfiguration.isSID(sid, prefix: "SM") || TwilioConfiguration.isSID(sid, prefix: "MM")
            else {
                // The message may well have been created: retrying could text the code twice.
                return .failed(
                    kind: .temporary,
                    reason: "Twilio accepted the request (HTTP \(status)) but its answer has no message sid",
                    code: nil, httpStatus: status, retry: false)
            }
            return .accepted(sid: sid, status: created.status.flatMap { $0.isEmpty ? nil : $0 } ?? "queued")
        }
        let code = (try? JSONDecoder().decode(ErrorBody.self, from: data))?.code
        let verdict = Self.classify(httpStatus: status, code: code)
        return .failed(
            kind: verdict.kind, reason: verdict.reason, code: code ?? (status == 401 ? 20003 : nil), httpStatus: status,
            retry: verdict.retried)
    }

    // MARK: - Helpers

    /// Logs the final failure and builds the error.
    private func fail(
        _ message: SMSMessage, _ kind: SMSSendError.Kind, reason: String, code: Int?, httpStatus: Int?, attempts: Int
    ) -> SMSSendError {
        var meta = metadata(for: message)
        meta["sms.reason"] = "\(reason)"
        meta["sms.attempts"] = "\(attempts)"
        meta["http.status"] = "\(httpStatus.map(String.init) ?? "none")"
        meta["twilio.error_code"] = "\(code.map(String.init) ?? "none")"
        switch kind {
        case .configuration:
            meta["twilio.account_sid"] = "\(configuration.accountSID)"
            if case .apiKey(let sid, _) = configuration.credentials { meta["twilio.api_key_sid"] = "\(sid)" }
            logger.error("twilio configuration error: sms not sent", metadata: meta)
        case .undeliverable:
            logger.notice("sms not sent: twilio cannot deliver to this number", metadata: meta)
        case .temporary:
            logger.warning("sms not sent: twilio temporarily unavailable", metadata: meta)
        }
        return SMSSendError(kind: kind, reason: reason, provider: name, providerCode: code, attempts: attempts)
    }

    private func metadata(for message: SMSMessage) -> Logger.Metadata {
        [
            "sms.provider": "twilio", "sms.to": "\(message.to.masked)", "sms.challenge": "\(message.challengeID)",
            "sms.purpose": "\(message.purpose.rawValue)",
        ]
    }

    private func remainingLifetime(of message: SMSMessage) -> Double {
        message.expiresAt.timeIntervalSince(now())
    }

    /// Whole seconds left, clamped to Twilio's 1...36000.
    static func validityPeriod(remaining: Double) -> Int {
        guard remaining.isFinite else { return 1 }
        return Int(min(36000, max(1, remaining.rounded(.down))))
    }

    /// The wait before retry number `retry` (1 for the first retry): `initial` doubled
    /// `retry - 1` times, capped at `maximum`, minus up to half of it at random (`random` in 0...1).
    package static func backoff(retry: Int, initial: Duration, maximum: Duration, random: Double) -> Duration {
        let base = min(maximum.seconds, initial.seconds * pow(2, Double(max(0, min(retry - 1, 30)))))
        let seconds = base / 2 + base / 2 * min(1, max(0, random))
        return .nanoseconds(Int64(seconds * 1e9))
    }

    /// `application/x-www-form-urlencoded`: every byte outside `A-Z a-z 0-9 - . _ ~` percent-encoded
    /// from UTF-8 (so a space is `%20` and `+` is `%2B`).
    package static func formEncode(_ fields: [(String, String)]) -> String {
        fields.map { escape($0.0) + "=" + escape($0.1) }.joined(separator: "&")
    }

    private static func escape(_ text: String) -> String { PercentEncoding.encode(text) }

    /// A fixed description of a failure below HTTP (no addresses, no request details).
    private static func describeTransportError(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout: return "Twilio did not answer in time"
            case .connectTimeout, .getConnectionFromPoolTimeout: return "could not connect to Twilio in time"
            case .remoteConnectionClosed: return "Twilio closed the connection without answering"
            case .cancelled: return "the request was cancelled"
            case .alreadyShutdown: return "the Twilio sender is shut down"
            default: return "HTTP error talking to Twilio"
            }
        }
        if error is CancellationError { return "the request was cancelled" }
        return "could not reach Twilio (connection error)"
    }
}

// MARK: - Concurrency limit

/// A counting semaphore for async code: ``acquire()`` suspends (without blocking a thread) while
/// all permits are taken; ``release()`` hands the permit to the longest waiter.
package final class RequestLimiter: Sendable {
    private struct State {
        var available: Int
        var nextID: UInt64 = 0
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
    }

    private let state: Mutex<State>

    package init(limit: Int) {
        state = Mutex(State(available: limit))
    }

    /// Takes a permit, waiting for one if needed; false (and no permit) when the task is cancelled.
    package func acquire() async -> Bool {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let granted: Bool? = state.withLock { state in
                    if Task.isCancelled { return false }
                    if state.available > 0 {
                        state.available -= 1
                        return true
                    }
                    state.waiters.append((id, continuation))
                    return nil
                }
                if let granted { continuation.resume(returning: granted) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).continuation
            }
            waiter?.resume(returning: false)
        }
    }

    /// Returns a permit taken by a successful ``acquire()``.
    package func release() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard !state.waiters.isEmpty else {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst().continuation
        }
        next?.resume(returning: true)
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    var timeAmount: TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }
}
