public import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A local stand-in for Twilio's Programmable Messaging API, for tests.
///
/// An HTTP/1.1 server on 127.0.0.1 (a random free port) that answers
/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` the way the real API does: it checks
/// Basic auth (the account SID with the auth token, or a known API key SID with its secret), the
/// path, the method, the form fields (`To`, exactly one of `From`/`MessagingServiceSid`, `Body`,
/// `ValidityPeriod`, `StatusCallback`), answers 201 with Twilio's message JSON, and refuses what
/// Twilio would refuse with Twilio's error JSON (`code`, `message`, `more_info`, `status`).
///
/// Every request is recorded (``requests``), every accepted message too (``messages``). Per
/// destination number it can be told to fail (``fail(_:with:times:)``), always or for the first
/// N requests only. The order of checks is: auth, path, method, form fields, then the failure
/// set for the `To` number, then acceptance.
///
/// Deliberately stricter than Twilio in one place: a request with both `From` and
/// `MessagingServiceSid` is refused (Twilio accepts it if the number belongs to the service),
/// because otpd never means to send both.
///
/// All methods are thread-safe. Call ``stop()`` when done: it releases the stand-in's thread.
public final class TwilioStandIn: Sendable {
    /// How to answer requests for one destination number instead of accepting them.
    public struct Failure: Sendable, Equatable, CustomStringConvertible {
        enum Behaviour: Sendable, Equatable {
            case error(status: Int, code: Int?, message: String)
            case slow(TimeAmount)
            case drop
        }

        let behaviour: Behaviour

        /// HTTP 400, code 21211: `Invalid 'To' Phone Number`.
        public static let invalidToNumber = error(status: 400, code: 21211, message: "Invalid 'To' Phone Number")
        /// HTTP 400, code 21610: the recipient replied STOP.
        public static let unsubscribed = error(
            status: 400, code: 21610, message: "Attempt to send to unsubscribed recipient")
        /// HTTP 400, code 21612: Twilio cannot route to the number.
        public static let unroutable = error(
            status: 400, code: 21612,
            message: "The 'To' phone number is not currently reachable via SMS")
        /// HTTP 401, code 20003: authentication failed.
        public static let authenticationFailed = error(status: 401, code: 20003, message: "Authenticate")
        /// HTTP 429, code 20429: too many requests (nothing was sent).
        public static let tooManyRequests = error(status: 429, code: 20429, message: "Too Many Requests")
        /// HTTP 500, code 20500: an internal error at Twilio.
        public static let serverError = error(status: 500, code: 20500, message: "Internal Server Error")
        /// HTTP 503 without a Twilio error body.
        public static let serviceUnavailable = error(status: 503, code: nil, message: "Service Unavailable")
        /// Closes the connection after reading the request, without answering.
        public static let dropConnection = Failure(behaviour: .drop)

        /// Accepts the message (recording it, like Twilio would) but answers only after `delay`;
        /// set it longer than the client's timeout to provoke a timeout.
        public static func slowAnswer(after delay: Duration) -> Failure {
            let (seconds, attoseconds) = delay.components
            return Failure(behaviour: .slow(.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)))
        }

        /// Any Twilio error: HTTP `status` with `{"code": code, "message": message, ...}`; with
        /// `code` nil the body has no Twilio code (like a bare 502 from a proxy).
        public static func error(status: Int, code: Int?, message: String) -> Failure {
            Failure(behaviour: .error(status: status, code: code, message: message))
        }

        public var description: String {
            switch behaviour {
            case .error(let status, let code, _): "HTTP \(status)" + (code.map { "/\($0)" } ?? "")
            case .slow(let delay): "slow answer after \(delay.nanoseconds / 1_000_000) ms"
            case .drop: "dropped connection"
            }
        }
    }

    /// A message the stand-in accepted (answered, or will answer, 201).
    public struct RecordedMessage: Sendable, Equatable {
        /// The `SM...` sid it answered with.
        public var sid: String
        /// The account SID of the path.
        public var accountSID: String
        /// The user of the Basic auth header (the account SID or an API key SID).
        public var authUser: String
        public var to: String
        public var from: String?
        public var messagingServiceSID: String?
        /// The `Body` field, decoded.
        public var body: String
        /// `ValidityPeriod`, when given.
        public var validityPeriod: Int?
        /// `StatusCallback`, when given.
        public var statusCallback: String?
        /// The status it answered with: `queued`, or `accepted` with a Messaging Service.
        public var status: String
    }

    /// One HTTP request as received, whatever the answer.
    public struct RecordedRequest: Sendable, Equatable {
        public var method: String
        /// The request target as sent, query included.
        public var uri: String
        /// The user of the Basic auth header, when it could be decoded.
        public var authUser: String?
        public var contentType: String?
        /// The raw body as sent (form-encoded).
        public var rawBody: String
        /// The decoded form fields in order, names paired with values.
        public var form: [Field]
        /// The `To` field, when present.
        public var to: String?
        /// The status answered; nil for a dropped connection.
        public var responseStatus: Int?
        /// When the request was complete.
        public var receivedAt: Date

        public struct Field: Sendable, Equatable {
            public var name: String
            public var value: String
        }

        /// The last value of form field `name`.
        public func field(_ name: String) -> String? { form.last { $0.name == name }?.value }
    }

    /// The account whose path and credentials are accepted.
    public let accountSID: String
    /// The account's auth token (Basic auth password with the account SID as user).
    public let authToken: String
    /// API keys of the account: SID (`SK...`) to secret.
    public let apiKeys: [String: String]

    private let state = NIOLockedValueBox(State())
    private let server = NIOLockedValueBox<Server?>(nil)

    private struct Server {
        var group: MultiThreadedEventLoopGroup
        var channel: any Channel
        var port: Int
    }

    struct Rule {
        var failure: Failure
        /// nil: every request; n: the next n requests, then accept.
        var remaining: Int?
    }

    struct State {
        var rules: [String: Rule] = [:]
        var messages: [RecordedMessage] = []
        var requests: [RecordedRequest] = []
        var inFlight = 0
        var peakInFlight = 0
    }

    /// - Parameters:
    ///   - accountSID: the account in the path and the Basic auth user (default: a random `AC` SID).
    ///   - authToken: the account's auth token (default: 32 random hex digits).
    ///   - apiKeys: API key SIDs (`SK...`) of the account, with their secrets.
    public init(
        accountSID: String = TwilioStandIn.randomSID(prefix: "AC"),
        authToken: String = TwilioStandIn.randomHex(count: 32),
        apiKeys: [String: String] = [:]
    ) {
        self.accountSID = accountSID
        self.authToken = authToken
        self.apiKeys = apiKeys
    }

    /// A Twilio-style SID: `prefix` and 32 lowercase hex digits.
    public static func randomSID(prefix: String) -> String { prefix + randomHex(count: 32) }

    /// `count` random lowercase hex digits.
    public static func randomHex(count: Int) -> String {
        String((0..<count).map { _ in "0123456789abcdef".randomElement()! })
    }

    // MARK: - Lifecycle

    /// Starts listening on 127.0.0.1 with a port chosen by the OS, and returns that port.
    /// Calling it again while running returns the same port.
    @discardableResult
    public func start() async throws -> Int {
        if let port = self.port { return port }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let core = self
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(StandInHandler(standIn: core))
                }
            }
        do {
            let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
            guard let port = channel.localAddress?.port else {
                try? await channel.close()
                try? await group.shutdownGracefully()
                throw StandInError(description: "the listening socket has no port")
            }
            server.withLockedValue { $0 = Server(group: group, channel: channel, port: port) }
            return port
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Stops listening, closes every connection (pending slow answers are never sent) and
    /// releases the threads. Safe to call more than once.
    public func stop() async {
        guard
            let running = server.withLockedValue({ value -> Server? in
                defer { value = nil }
                return value
            })
        else { return }
        try? await running.channel.close()
        try? await running.group.shutdownGracefully()
    }

    /// The port while running.
    public var port: Int? { server.withLockedValue { $0?.port } }

    /// `http://127.0.0.1:PORT`, to use as the sender's base URL (after ``start()``).
    public var baseURL: String { "http://127.0.0.1:\(port ?? 0)" }

    // MARK: - Failures

    /// Answers requests whose `To` is `number` with `failure`: every one (`times` nil), or the
    /// next `times` ones and then accepts again.
    public func fail(_ number: String, with failure: Failure, times: Int? = nil) {
        state.withLockedValue { $0.rules[number] = Rule(failure: failure, remaining: times) }
    }

    /// Accepts requests for `number` again.
    public func clearFailure(for number: String) {
        state.withLockedValue { _ = $0.rules.removeValue(forKey: number) }
    }

    // MARK: - Records

    /// Every accepted message, in order.
    public var messages: [RecordedMessage] { state.withLockedValue { $0.messages } }

    /// The accepted messages to `number`, in order.
    public func messages(to number: String) -> [RecordedMessage] {
        state.withLockedValue { $0.messages.filter { $0.to == number } }
    }

    /// Every request received (complete requests, whatever the answer), in order.
    public var requests: [RecordedRequest] { state.withLockedValue { $0.requests } }

    /// How many requests had `To` = `number` (each HTTP attempt counts).
    public func requestCount(to number: String) -> Int {
        state.withLockedValue { $0.requests.count { $0.to == number } }
    }

    /// The most requests that were waiting for their answer at the same time.
    public var peakConcurrentRequests: Int { state.withLockedValue { $0.peakInFlight } }

    /// Requests received but not answered yet.
    public var requestsInFlight: Int { state.withLockedValue { $0.inFlight } }

    /// Forgets recorded messages and requests and the peak of concurrent requests (not the
    /// failures).
    public func resetRecords() {
        state.withLockedValue {
            $0.messages.removeAll()
            $0.requests.removeAll()
            $0.peakInFlight = $0.inFlight
        }
    }

    /// Decides and records the answer to one request exactly as over HTTP, without the network
    /// (for checking the stand-in's own rules): the status and JSON body, or nil where the
    /// connection would be dropped. A slow answer is returned at once.
    public func answer(method: String, uri: String, headers: [(String, String)], body: String)
        -> (status: Int, body: String)?
    {
        switch handle(Request(method: method, uri: uri, headers: headers, body: Array(body.utf8))) {
        case .drop: nil
        case .answer(let answer, _): (answer.status, answer.json.serialized)
        }
    }

    // MARK: - Handling (called by the channel handler)

    func beginAnswer() {
        state.withLockedValue {
            $0.inFlight += 1
            $0.peakInFlight = max($0.peakInFlight, $0.inFlight)
        }
    }

    func endAnswer() {
        state.withLockedValue { $0.inFlight -= 1 }
    }

    /// What to do with one complete request.
    enum Decision {
        case answer(Answer, delay: TimeAmount?)
        case drop
    }

    struct Answer {
        var status: Int
        var json: JSON
        var headers: [(String, String)] = []
    }

    struct Request {
        var method: String
        var uri: String
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }
    }

    func handle(_ request: Request) -> Decision {
        let rawBody = String(decoding: request.body, as: UTF8.self)
        let contentType = request.header("Content-Type")
        let isForm =
            contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
            == "application/x-www-form-urlencoded"
        let form = isForm ? FormCoding.decode(rawBody) : nil
        let fields = (form ?? []).map { RecordedRequest.Field(name: $0.0, value: $0.1) }
        let credentials = Self.basicCredentials(request.header("Authorization"))
        var record = RecordedRequest(
            method: request.method, uri: request.uri, authUser: credentials?.user, contentType: contentType,
            rawBody: rawBody, form: fields, to: fields.last { $0.name == "To" }?.value, responseStatus: nil,
            receivedAt: Date())

        let decision = decide(request, form: fields, formIsValid: form != nil, credentials: credentials)
        if case .answer(let answer, _) = decision { record.responseStatus = answer.status }
        state.withLockedValue { $0.requests.append(record) }
        return decision
    }

    private func decide(
        _ request: Request, form: [RecordedRequest.Field], formIsValid: Bool,
        credentials: (user: String, password: String)?
    ) -> Decision {
        // 1. Authentication, like Twilio: before anything else.
        guard let credentials, isAuthentic(credentials) else {
            return .answer(
                Self.error(status: 401, code: 20003, message: "Authenticate")
                    .adding(header: ("WWW-Authenticate", "Basic realm=\"Twilio API\"")), delay: nil)
        }
        // 2. The path: this account's Messages resource.
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        let expectedPath = "/2010-04-01/Accounts/\(accountSID)/Messages.json"
        guard path == expectedPath else {
            return .answer(
                Self.error(status: 404, code: 20404, message: "The requested resource \(path) was not found"),
                delay: nil)
        }
        // 3. The method.
        guard request.method == "POST" else {
            return .answer(Self.error(status: 405, code: 20004, message: "Method not allowed"), delay: nil)
        }
        guard formIsValid else {
            // Twilio reads no fields from a body it cannot parse as a form.
            return .answer(
                Self.error(status: 400, code: 21604, message: "A 'To' phone number is required."), delay: nil)
        }
        // 4. The fields.
        func value(_ name: String) -> String? { form.last { $0.name == name }?.value }
        guard let to = value("To"), !to.isEmpty else {
            return .answer(
                Self.error(status: 400, code: 21604, message: "A 'To' phone number is required."), delay: nil)
        }
        guard Self.isE164(to) else {
            return .answer(
                Self.error(status: 400, code: 21211, message: "Invalid 'To' Phone Number: \(to)"), delay: nil)
        }
        let from = value("From").flatMap { $0.isEmpty ? nil : $0 }
        let service = value("MessagingServiceSid").flatMap { $0.isEmpty ? nil : $0 }
        switch (from, service) {
        case (nil, nil):
            return .answer(
                Self.error(
                    status: 400, code: 21603,
                    message: "A 'From' phone number or a 'MessagingServiceSid' is required."), delay: nil)
        case (.some, .some):
            return .answer(
                Self.error(
                    status: 400, code: 21603,
                    message: "Specify either a 'From' phone number or a 'MessagingServiceSid', not both."),
                delay: nil)
        case (let from?, nil):
            guard Self.isE164(from) else {
                return .answer(
                    Self.error(status: 400, code: 21212, message: "Invalid 'From' Phone Number: \(from)"), delay: nil)
            }
        case (nil, let service?):
            guard Self.isSID(service, prefix: "MG") else {
                return .answer(
                    Self.error(
                        status: 400, code: 21701,
                        message: "The Messaging Service Sid \(service) is invalid."), delay: nil)
            }
        }
        guard let body = value("Body"), !body.isEmpty else {
            return .answer(Self.error(status: 400, code: 21602, message: "Message body is required."), delay: nil)
        }
        guard body.count <= 1600 else {
            return .answer(
                Self.error(
                    status: 400, code: 21617,
                    message: "The concatenated message body exceeds the 1600 character limit."), delay: nil)
        }
        var validityPeriod: Int?
        if let raw = value("ValidityPeriod") {
            guard let seconds = Int(raw), raw.allSatisfy(\.isASCIIDigit), (1...36000).contains(seconds) else {
                return .answer(
                    Self.error(
                        status: 400, code: 21623,
                        message: "ValidityPeriod must be an integer between 1 and 36000 seconds."), delay: nil)
            }
            validityPeriod = seconds
        }
        let statusCallback = value("StatusCallback").flatMap { $0.isEmpty ? nil : $0 }
        if let statusCallback {
            guard let url = URL(string: statusCallback), url.scheme == "http" || url.scheme == "https",
                url.host != nil
            else {
                return .answer(
                    Self.error(status: 400, code: 21609, message: "Invalid StatusCallback url."), delay: nil)
            }
        }

        // 5. A failure set for this number.
        var delay: TimeAmount?
        let failure = state.withLockedValue { state -> Failure? in
            guard var rule = state.rules[to] else { return nil }
            if let remaining = rule.remaining {
                guard remaining > 0 else { return nil }
                rule.remaining = remaining - 1
                state.rules[to] = rule
            }
            return rule.failure
        }
        switch failure?.behaviour {
        case .error(let status, let code, let message)?:
            return .answer(Self.error(status: status, code: code, message: message), delay: nil)
        case .drop?:
            return .drop
        case .slow(let amount)?:
            delay = amount
        case nil:
            break
        }

        // 6. Accepted.
        let sid = Self.randomSID(prefix: "SM")
        let status = service == nil ? "queued" : "accepted"
        let message = RecordedMessage(
            sid: sid, accountSID: accountSID, authUser: credentials.user, to: to, from: from,
            messagingServiceSID: service, body: body, validityPeriod: validityPeriod,
            statusCallback: statusCallback, status: status)
        state.withLockedValue { $0.messages.append(message) }
        let now = Self.rfc2822(Date())
        let uri = "/2010-04-01/Accounts/\(accountSID)/Messages/\(sid).json"
        let json = JSON.object([
            ("account_sid", .string(accountSID)),
            ("api_version", .string("2010-04-01")),
            ("body", .string(body)),
            ("date_created", .string(now)),
            ("date_sent", .null),
            ("date_updated", .string(now)),
            ("direction", .string("outbound-api")),
            ("error_code", .null),
            ("error_message", .null),
            ("from", from.map(JSON.string) ?? .null),
            ("messaging_service_sid", service.map(JSON.string) ?? .null),
            ("num_media", .string("0")),
            ("num_segments", .string(String(Self.segments(body)))),
            ("price", .null),
            ("price_unit", .string("USD")),
            ("sid", .string(sid)),
            ("status", .string(status)),
            (
                "subresource_uris",
                .object([("media", .string("/2010-04-01/Accounts/\(accountSID)/Messages/\(sid)/Media.json"))])
            ),
            ("to", .string(to)),
            ("uri", .string(uri)),
        ])
        return .answer(Answer(status: 201, json: json), delay: delay)
    }

    private func isAuthentic(_ credentials: (user: String, password: String)) -> Bool {
        if credentials.user == accountSID { return credentials.password == authToken }
        if let secret = apiKeys[credentials.user] { return credentials.password == secret }
        return false
    }

    // MARK: - Helpers

    static func error(status: Int, code: Int?, message: String) -> Answer {
        var fields: [(String, JSON)] = [("code", code.map(JSON.int) ?? .null), ("message", .string(message))]
        if let code { fields.append(("more_info", .string("https://www.twilio.com/docs/errors/\(code)"))) }
        fields.append(("status", .int(status)))
        return Answer(status: status, json: .object(fields))
    }

    static func basicCredentials(_ header: String?) -> (user: String, password: String)? {
        guard let header, header.count > 6, header.prefix(6).lowercased() == "basic " else { return nil }
        guard let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let decoded = String(data: data, encoding: .utf8),
            let colon = decoded.firstIndex(of: ":")
        else { return nil }
        return (String(decoded[..<colon]), String(decoded[decoded.index(after: colon)...]))
    }

    /// `+`, then 8 to 15 ASCII digits, the first not 0.
    static func isE164(_ value: String) -> Bool {
        let utf8 = Array(value.utf8)
        guard utf8.count >= 9, utf8.count <= 16, utf8[0] == UInt8(ascii: "+"), utf8[1] != UInt8(ascii: "0") else {
            return false
        }
        return utf8.dropFirst().allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// `prefix` and 32 hex digits.
    static func isSID(_ value: String, prefix: String) -> Bool {
        guard value.hasPrefix(prefix) else { return false }
        let rest = value.utf8.dropFirst(prefix.utf8.count)
        return rest.count == 32 && rest.allSatisfy { Character(Unicode.Scalar($0)).isHexDigit }
    }

    /// Segments Twilio bills for `body`: GSM-7 (160 septets alone, 153 per part) when every
    /// character is in the GSM 03.38 basic or extension table, else UCS-2 (70, or 67 per part).
    static func segments(_ body: String) -> Int {
        let basic = Set(
            "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
                .unicodeScalars)
        let extended = Set("^{}\\[~]|€\u{0C}".unicodeScalars)
        var septets = 0
        var gsm = true
        for scalar in body.unicodeScalars {
            if basic.contains(scalar) {
                septets += 1
            } else if extended.contains(scalar) {
                septets += 2
            } else {
                gsm = false
                break
            }
        }
        if gsm { return septets <= 160 ? 1 : (septets + 152) / 153 }
        let units = body.utf16.count
        return units <= 70 ? 1 : (units + 66) / 67
    }

    static func rfc2822(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(secondsFromGMT: 0)
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return formatter.string(from: date)
    }
}

/// A failure of the stand-in itself.
public struct StandInError: Error, CustomStringConvertible {
    public var description: String
}

extension TwilioStandIn.Answer {
    func adding(header: (String, String)) -> Self {
        var copy = self
        copy.headers.append(header)
        return copy
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// `application/x-www-form-urlencoded` decoding (WHATWG URL standard): fields split on `&`,
/// name and value on the first `=`, `+` means a space, `%XX` a byte of UTF-8.
public enum FormCoding {
    /// The fields of `body` in order, or nil when a `%` escape or the UTF-8 is invalid.
    public static func decode(_ body: String) -> [(String, String)]? {
        var fields: [(String, String)] = []
        for part in body.split(separator: "&", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = unescape(pieces[0]), let value = unescape(pieces.count > 1 ? pieces[1] : "") else {
                return nil
            }
            fields.append((name, value))
        }
        return fields
    }

    private static func unescape(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A JSON value, written with its keys in the given order.
enum JSON: Sendable {
    case string(String)
    case int(Int)
    case null
    indirect case object([(String, JSON)])

    var serialized: String {
        switch self {
        case .string(let text): Self.quote(text)
        case .int(let number): String(number)
        case .null: "null"
        case .object(let fields):
            "{" + fields.map { Self.quote($0.0) + ": " + $0.1.serialized }.joined(separator: ", ") + "}"
        }
    }

    private static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
