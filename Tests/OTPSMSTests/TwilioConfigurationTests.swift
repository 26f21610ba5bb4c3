import Foundation
import Logging
import OTPCore
import Testing
import TwilioStandIn

@testable import OTPSMS

@Suite("Twilio configuration and request encoding")
struct TwilioConfigurationTests {
    static let account = "AC" + String(repeating: "0123456789abcdef", count: 2)
    static let key = "SK" + String(repeating: "fedcba9876543210", count: 2)
    static let service = "MG" + String(repeating: "00112233445566778899aabbccddeeff", count: 1)
    static let token = "s3cr3tT0ken0000000000000000000aa"

    static func valid() -> TwilioConfiguration {
        TwilioConfiguration(accountSID: account, credentials: .authToken(token), sender: .from("+15005550006"))
    }

    @Test func theDefaultsAreTheDocumentedOnes() throws {
        let configuration = Self.valid()
        #expect(configuration.baseURL == "https://api.twilio.com")
        #expect(configuration.requestTimeout == .seconds(5))
        #expect(configuration.maxAttempts == 3)
        #expect(configuration.initialBackoff == .milliseconds(500))
        #expect(configuration.maxConcurrentRequests == 16)
        #expect(configuration.statusCallbackURL == nil)
        try configuration.validate()
        var withKey = configuration
        withKey.credentials = .apiKey(sid: Self.key, secret: Self.token)
        withKey.sender = .messagingService(Self.service)
        try withKey.validate()
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        var name: String
        var change: @Sendable (inout TwilioConfiguration) -> Void
        var error: TwilioConfigurationError
        var testDescription: String { name }
    }

    static let invalid: [Invalid] = [
        Invalid(name: "short account SID", change: { $0.accountSID = "AC123" }, error: .invalidAccountSID),
        Invalid(name: "API key SID as account", change: { $0.accountSID = key }, error: .invalidAccountSID),
        Invalid(
            name: "non-hex account SID", change: { $0.accountSID = "AC" + String(repeating: "g", count: 32) },
            error: .invalidAccountSID),
        Invalid(
            name: "empty token", change: { $0.credentials = .authToken("") }, error: .invalidSecret("the auth token")),
        Invalid(
            name: "token with newline", change: { $0.credentials = .authToken(token + "\n") },
            error: .invalidSecret("the auth token")),
        Invalid(
            name: "bad key SID", change: { $0.credentials = .apiKey(sid: account, secret: token) },
            error: .invalidAPIKeySID),
        Invalid(
            name: "key secret with space", change: { $0.credentials = .apiKey(sid: key, secret: "a b") },
            error: .invalidSecret("the API key secret")),
        Invalid(name: "from without +", change: { $0.sender = .from("15005550006") }, error: .invalidFromNumber),
        Invalid(name: "from with spaces", change: { $0.sender = .from("+1 500 555 0006") }, error: .invalidFromNumber),
        Invalid(
            name: "bad service SID", change: { $0.sender = .messagingService("MG123") },
            error: .invalidMessagingServiceSID),
        Invalid(
            name: "http to a remote host", change: { $0.baseURL = "http://api.twilio.com" }, error: .insecureBaseURL),
        Invalid(
            name: "base URL with a path", change: { $0.baseURL = "https://api.twilio.com/2010-04-01" },
            error: .invalidBaseURL),
        Invalid(
            name: "base URL with credentials", change: { $0.baseURL = "https://u:p@api.twilio.com" },
            error: .invalidBaseURL),
        Invalid(name: "base URL without scheme", change: { $0.baseURL = "api.twilio.com" }, error: .invalidBaseURL),
        Invalid(
            name: "relative status callback", change: { $0.statusCallbackURL = "/twilio/status" },
            error: .invalidStatusCallbackURL),
        Invalid(
            name: "plain http status callback", change: { $0.statusCallbackURL = "http://shop.example/twilio" },
            error: .invalidStatusCallbackURL),
        Invalid(name: "zero timeout", change: { $0.requestTimeout = .zero }, error: .invalidRequestTimeout),
        Invalid(name: "zero attempts", change: { $0.maxAttempts = 0 }, error: .invalidMaxAttempts),
        Invalid(name: "eleven attempts", change: { $0.maxAttempts = 11 }, error: .invalidMaxAttempts),
        Invalid(name: "negative back-off", change: { $0.initialBackoff = .seconds(-1) }, error: .invalidBackoff),
        Invalid(name: "cap below initial", change: { $0.maxBackoff = .milliseconds(100) }, error: .invalidBackoff),
        Invalid(
            name: "zero concurrency", change: { $0.maxConcurrentRequests = 0 }, error: .invalidMaxConcurrentRequests),
    ]

    @Test(arguments: invalid)
    func anInvalidSettingIsRefusedWithAClearError(_ invalid: Invalid) {
        var configuration = Self.valid()
        invalid.change(&configuration)
        #expect(throws: invalid.error) { try configuration.validate() }
        #expect(throws: invalid.error) {
            _ = try TwilioSender(configuration: configuration, logger: quietLogger)
        }
        #expect(!invalid.error.description.contains(Self.token))
    }

    @Test func loopbackMayUsePlainHTTP() throws {
        for base in ["http://127.0.0.1:8080", "http://localhost:1234/", "http://[::1]:99"] {
            var configuration = Self.valid()
            configuration.baseURL = base
            try configuration.validate()
        }
    }

    @Test func credentialsNeverShowTheirSecret() {
        var configuration = Self.valid()
        var dumped = ""
        dump(configuration, to: &dumped)
        let shown = [
            "\(configuration)", String(describing: configuration.credentials),
            String(reflecting: configuration.credentials),
            String(reflecting: configuration), dumped,
        ]
        for text in shown { #expect(!text.contains(Self.token), "\(text)") }
        configuration.credentials = .apiKey(sid: Self.key, secret: Self.token)
        #expect(!"\(configuration)".contains(Self.token))
        #expect("\(configuration)".contains(Self.key))
    }

    @Test func formEncodingEscapesEverythingButUnreservedCharacters() {
        #expect(
            TwilioSender.formEncode([("Body", "a+b c&d=e/f%ñ~-._"), ("To", "+14155552671")])
                == "Body=a%2Bb%20c%26d%3De%2Ff%25%C3%B1~-._&To=%2B14155552671")
        // What the stand-in (a WHATWG form decoder) reads back is the original text.
        let text = "Code 123456 + 1 = 2 & ok? 🙂 Ünïcode"
        let decoded = FormCoding.decode(TwilioSender.formEncode([("Body", text)]))
        #expect(decoded?.first?.1 == text)
    }

    @Test func backOffDoublesUpToTheCapWithJitter() {
        let half = Duration.milliseconds(500)
        let cap = Duration.seconds(4)
        #expect(TwilioSender.backoff(retry: 1, initial: half, maximum: cap, random: 1) == .milliseconds(500))
        #expect(TwilioSender.backoff(retry: 1, initial: half, maximum: cap, random: 0) == .milliseconds(250))
        #expect(TwilioSender.backoff(retry: 2, initial: half, maximum: cap, random: 1) == .seconds(1))
        #expect(TwilioSender.backoff(retry: 3, initial: half, maximum: cap, random: 1) == .seconds(2))
        #expect(TwilioSender.backoff(retry: 5, initial: half, maximum: cap, random: 1) == .seconds(4))
        #expect(TwilioSender.backoff(retry: 50, initial: half, maximum: cap, random: 0) == .seconds(2))
    }

    @Test func theClassificationTable() {
        typealias Row = (status: Int, code: Int?, kind: SMSSendError.Kind, retried: Bool)
        let rows: [Row] = [
            (429, 20429, .temporary, true), (429, nil, .temporary, true), (400, 20429, .temporary, true),
            (500, 20500, .temporary, true), (502, nil, .temporary, true), (503, nil, .temporary, true),
            (408, nil, .temporary, true),
            (401, 20003, .configuration, false), (401, nil, .configuration, false), (403, 20003, .configuration, false),
            (400, 21211, .undeliverable, false), (400, 21408, .undeliverable, false),
            (400, 21610, .undeliverable, false),
            (400, 21612, .undeliverable, false), (400, 21614, .undeliverable, false),
            (400, 21635, .undeliverable, false),
            (400, 21212, .configuration, false), (400, 21606, .configuration, false),
            (400, 21608, .configuration, false),
            (400, 21617, .configuration, false), (404, 20404, .configuration, false), (400, nil, .configuration, false),
            (302, nil, .configuration, false),
        ]
        for row in rows {
            let verdict = TwilioSender.classify(httpStatus: row.status, code: row.code)
            #expect(verdict.kind == row.kind, "\(row.status)/\(String(describing: row.code))")
            #expect(verdict.retried == row.retried, "\(row.status)/\(String(describing: row.code))")
        }
    }
}

@Suite("Twilio stand-in rules")
struct TwilioStandInTests {
    let standIn = TwilioStandIn()

    var path: String { "/2010-04-01/Accounts/\(standIn.accountSID)/Messages.json" }

    func headers(user: String? = nil, password: String? = nil, form: Bool = true) -> [(String, String)] {
        let credentials = "\(user ?? standIn.accountSID):\(password ?? standIn.authToken)"
        var headers = [("Authorization", "Basic " + Data(credentials.utf8).base64EncodedString())]
        if form { headers.append(("Content-Type", "application/x-www-form-urlencoded")) }
        return headers
    }

    func post(_ body: String, headers: [(String, String)]? = nil, uri: String? = nil, method: String = "POST")
        -> (status: Int, code: Int?)
    {
        let answer = standIn.answer(method: method, uri: uri ?? path, headers: headers ?? self.headers(), body: body)
        guard let answer else { return (0, nil) }
        let json = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]
        return (answer.status, json?["code"] as? Int)
    }

    static let good = "To=%2B14155552671&From=%2B15005550006&Body=Your%20code%20is%20123456&ValidityPeriod=300"

    @Test func aGoodRequestIsAcceptedWithTheDocumentedJSON() throws {
        let answer = try #require(standIn.answer(method: "POST", uri: path, headers: headers(), body: Self.good))
        #expect(answer.status == 201)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
        let sid = try #require(json["sid"] as? String)
        #expect(sid.hasPrefix("SM") && sid.count == 34)
        #expect(json["status"] as? String == "queued")
        #expect(json["to"] as? String == "+14155552671")
        #expect(json["from"] as? String == "+15005550006")
        #expect(json["body"] as? String == "Your code is 123456")
        #expect(json["num_segments"] as? String == "1")
        #expect(json["direction"] as? String == "outbound-api")
        #expect(json["error_code"] is NSNull)
        #expect(json["price"] is NSNull)
        let created = try #require(json["date_created"] as? String)
        #expect(
            created.range(
                of: #"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$"#, options: .regularExpression
            ) != nil)
        #expect(standIn.messages.first?.validityPeriod == 300)
        #expect(standIn.messages.first?.sid == sid)
    }

    @Test func aMessagingServiceMessageIsAccepted() throws {
        let service = TwilioStandIn.randomSID(prefix: "MG")
        let answer = try #require(
            standIn.answer(
                method: "POST", uri: path, headers: headers(),
                body: "To=%2B14155552671&MessagingServiceSid=\(service)&Body=hi"))
        #expect(answer.status == 201)
        #expect(answer.body.contains(#""status": "accepted""#))
        #expect(answer.body.contains(#""from": null"#))
    }

    @Test func requestsTwilioWouldRefuseAreRefusedTheSameWay() {
        let other = TwilioStandIn.randomSID(prefix: "AC")
        #expect(post(Self.good, headers: headers(password: "wrong")) == (401, 20003))
        #expect(post(Self.good, headers: [("Content-Type", "application/x-www-form-urlencoded")]) == (401, 20003))
        #expect(post(Self.good, uri: "/2010-04-01/Accounts/\(other)/Messages.json") == (404, 20404))
        #expect(post(Self.good, uri: "/2010-04-01/Accounts/\(standIn.accountSID)/Calls.json") == (404, 20404))
        #expect(post(Self.good, method: "PUT") == (405, 20004))
        #expect(post(Self.good, headers: headers(form: false)) == (400, 21604))
        #expect(post("From=%2B15005550006&Body=x") == (400, 21604))
        #expect(post("To=14155552671&From=%2B15005550006&Body=x") == (400, 21211))
        #expect(post("To=%2B1415555267a&From=%2B15005550006&Body=x") == (400, 21211))
        #expect(post("To=%2B14155552671&Body=x") == (400, 21603))
        let service = TwilioStandIn.randomSID(prefix: "MG")
        #expect(post("To=%2B14155552671&From=%2B15005550006&MessagingServiceSid=\(service)&Body=x") == (400, 21603))
        #expect(post("To=%2B14155552671&From=abc&Body=x") == (400, 21212))
        #expect(post("To=%2B14155552671&MessagingServiceSid=MG1&Body=x") == (400, 21701))
        #expect(post("To=%2B14155552671&From=%2B15005550006") == (400, 21602))
        #expect(
            post("To=%2B14155552671&From=%2B15005550006&Body=" + String(repeating: "x", count: 1601)) == (400, 21617))
        #expect(post("To=%2B14155552671&From=%2B15005550006&Body=" + String(repeating: "x", count: 1600)).status == 201)
        for period in ["0", "36001", "-5", "1.5", "abc"] {
            #expect(post("To=%2B14155552671&From=%2B15005550006&Body=x&ValidityPeriod=\(period)") == (400, 21623))
        }
        #expect(post("To=%2B14155552671&From=%2B15005550006&Body=x&ValidityPeriod=36000").status == 201)
        #expect(post("To=%2B14155552671&From=%2B15005550006&Body=x&StatusCallback=nope") == (400, 21609))
        #expect(standIn.requests.count == 23)
        #expect(standIn.messages.count == 2)
    }

    @Test func anAPIKeyAuthenticatesForItsAccount() {
        let key = TwilioStandIn.randomSID(prefix: "SK")
        let standIn = TwilioStandIn(apiKeys: [key: "secret"])
        let path = "/2010-04-01/Accounts/\(standIn.accountSID)/Messages.json"
        func status(_ user: String, _ password: String) -> Int? {
            standIn.answer(
                method: "POST", uri: path,
                headers: [
                    ("Authorization", "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ], body: Self.good)?.status
        }
        #expect(status(key, "secret") == 201)
        #expect(status(key, "wrong") == 401)
        #expect(status(standIn.accountSID, "secret") == 401)
        #expect(standIn.messages.first?.authUser == key)
    }

    @Test func failuresApplyPerNumberAndCanStopAfterNRequests() {
        standIn.fail("+14155552671", with: .tooManyRequests, times: 2)
        standIn.fail("+14155552672", with: .dropConnection)
        #expect(post(Self.good) == (429, 20429))
        #expect(post(Self.good) == (429, 20429))
        #expect(post(Self.good).status == 201)
        #expect(post(Self.good.replacingOccurrences(of: "2671", with: "2672")).status == 0)
        #expect(post(Self.good.replacingOccurrences(of: "2671", with: "2673")).status == 201)
        #expect(standIn.requestCount(to: "+14155552671") == 3)
        #expect(standIn.requestCount(to: "+14155552672") == 1)
        standIn.clearFailure(for: "+14155552672")
        #expect(post(Self.good.replacingOccurrences(of: "2671", with: "2672")).status == 201)
    }

    @Test func segmentsFollowGSMAndUCS2Limits() throws {
        func segments(_ body: String) throws -> String? {
            let encoded = TwilioSender.formEncode([("To", "+14155552671"), ("From", "+15005550006"), ("Body", body)])
            let answer = try #require(standIn.answer(method: "POST", uri: path, headers: headers(), body: encoded))
            let json = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]
            return json?["num_segments"] as? String
        }
        #expect(try segments(String(repeating: "a", count: 160)) == "1")
        #expect(try segments(String(repeating: "a", count: 161)) == "2")
        #expect(try segments(String(repeating: "é", count: 160)) == "1")  // é is GSM-7
        #expect(try segments(String(repeating: "ł", count: 70)) == "1")  // ł is not
        #expect(try segments(String(repeating: "ł", count: 71)) == "2")
    }
}
