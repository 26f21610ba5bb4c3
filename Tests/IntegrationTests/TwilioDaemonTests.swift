import Foundation
import OTPClient
import OTPCore
import OTPTestSupport
import Testing
import TwilioStandIn

#if canImport(Glibc)
    import Glibc
#endif

/// The real otpd with its Twilio sender pointed at the Twilio stand-in on 127.0.0.1.
@Suite("Twilio through the daemon", .serialized)
struct TwilioDaemonTests {
    static let from = "+15005550006"
    static let callbackURL = "https://shop.example/otpd/twilio-status?site=1"

    /// Starts the stand-in and a daemon configured to send through it.
    private func start(timeoutSeconds: Int = 1) async throws -> (TwilioStandIn, DaemonProcess) {
        let twilio = TwilioStandIn()
        let port = try await twilio.start()
        let directory = try TemporaryDirectory()
        let tokenFile = directory.file("twilio-token")
        #expect(
            FileManager.default.createFile(
                atPath: tokenFile, contents: Data(twilio.authToken.utf8), attributes: [.posixPermissions: 0o600]))
        let config = """
            [sms]
            sender = "twilio"
            resend_cooldown_seconds = 0
            per_account_per_hour = 1000
            per_phone_per_day = 1000
            verifications_per_phone_per_day = 1000
            [[twilio]]
            account_sid = "\(twilio.accountSID)"
            auth_token_file = "\(tokenFile)"
            from = "\(Self.from)"
            base_url = "http://127.0.0.1:\(port)"
            status_callback_url = "\(Self.callbackURL)"
            timeout_seconds = \(timeoutSeconds)
            max_attempts = 3
            """
        let daemon = try DaemonProcess(config: config)
        try await daemon.start()
        return (twilio, daemon)
    }

    private func stop(_ twilio: TwilioStandIn, _ daemon: DaemonProcess) async {
        await daemon.cleanUp()
        await twilio.stop()
    }

    @Test func aCodeGoesThroughTwilioAndVerifies() async throws {
        let (twilio, daemon) = try await start()
        let client = daemon.client()
        _ = try await client.setPhone(SetPhoneRequest(accountId: "a", phoneNumber: "+1 555 123 4567"))
        let challenge = try await client.startChallenge(StartChallengeRequest(accountId: "a", purpose: .verifyPhone))
        let message = try #require(twilio.messages.last)
        #expect(message.to == "+15551234567")
        #expect(message.from == Self.from)
        #expect(message.authUser == twilio.accountSID)
        #expect(message.statusCallback == Self.callbackURL)
        let validity = try #require(message.validityPeriod)
        #expect((295...300).contains(validity), "ValidityPeriod is the code's remaining lifetime")
        let code = try #require(message.body.split(separator: " ").first { $0.count == 6 && $0.allSatisfy(\.isNumber) })
        let verified = try await client.verify(
            VerifyRequest(accountId: "a", purpose: .verifyPhone, code: String(code), challengeId: challenge.challengeId)
        )
        #expect(verified.success)

        let deliveries = try await client.listDeliveries(ListDeliveriesRequest(accountId: "a")).deliveries
        #expect(deliveries.first?.messageSid == message.sid)
        #expect(deliveries.first?.provider == "twilio")
        #expect(deliveries.first?.attempts == 1)
        #expect(!daemon.log().contains(String(code)))
        #expect(!daemon.log().contains(twilio.authToken))
        await client.close()
        await stop(twilio, daemon)
    }

    @Test func permanentErrorsAreNotRetriedAndReachTheCaller() async throws {
        let (twilio, daemon) = try await start()
        let client = daemon.client()
        let number = "+15557654321"
        twilio.fail(number, with: .unsubscribed)
        _ = try await client.setPhone(SetPhoneRequest(accountId: "b", phoneNumber: number))
        let error = await #expect(throws: RPCError.self) {
            _ = try await client.startChallenge(StartChallengeRequest(accountId: "b", purpose: .verifyPhone))
        }
        #expect(error?.code == .failedPrecondition)
        #expect(error?.message == "This phone number cannot receive text messages")
        #expect(twilio.requestCount(to: number) == 1, "not retried")
        let delivery = try #require(
            try await client.listDeliveries(ListDeliveriesRequest(accountId: "b")).deliveries.first)
        #expect(delivery.status == "rejected")
        #expect(delivery.errorCode == 21610)
        // Remembered against the number: the next code is not paid for again.
        _ = await #expect(throws: RPCError.self) {
            _ = try await client.startChallenge(StartChallengeRequest(accountId: "b", purpose: .verifyPhone))
        }
        #expect(twilio.requestCount(to: number) == 1)
        #expect(try await client.getStatus(GetStatusRequest(accountId: "b")).consecutiveFailures == 0)
        await client.close()
        await stop(twilio, daemon)
    }

    @Test func temporaryErrorsAreRetriedABoundedNumberOfTimes() async throws {
        let (twilio, daemon) = try await start()
        let client = daemon.client()
        let busy = "+15550001111"
        twilio.fail(busy, with: .tooManyRequests)
        _ = try await client.setPhone(SetPhoneRequest(accountId: "c", phoneNumber: busy))
        let error = await #expect(throws: RPCError.self) {
            _ = try await client.startChallenge(StartChallengeRequest(accountId: "c", purpose: .verifyPhone))
        }
        #expect(error?.code == .unavailable)
        #expect(twilio.requestCount(to: busy) == 3, "max_attempts = 3")
        let delivery = try #require(
            try await client.listDeliveries(ListDeliveriesRequest(accountId: "c")).deliveries.first)
        #expect(delivery.status == "error")
        #expect(delivery.attempts == 3)

        // A 500 then success: the retry delivers.
        let flaky = "+15550002222"
        twilio.fail(flaky, with: .serverError, times: 1)
        _ = try await client.setPhone(SetPhoneRequest(accountId: "d", phoneNumber: flaky))
        _ = try await client.startChallenge(StartChallengeRequest(accountId: "d", purpose: .verifyPhone))
        #expect(twilio.requestCount(to: flaky) == 2)
        #expect(twilio.messages(to: flaky).count == 1)

        // The metrics count each outcome once and each HTTP request.
        let metrics = try await client.getMetrics().text
        #expect(
            metrics.contains("otpd_sms_sends_total{provider=\"twilio\",outcome=\"temporary\",country_code=\"1\"} 1"))
        #expect(metrics.contains("otpd_sms_sends_total{provider=\"twilio\",outcome=\"accepted\",country_code=\"1\"} 1"))
        #expect(metrics.contains("otpd_twilio_request_duration_seconds_count 5"), "\(metrics)")
        await client.close()
        await stop(twilio, daemon)
    }

    @Test func aWrongTokenIsAConfigurationErrorThatNeverLeaks() async throws {
        let (twilio, daemon) = try await start()
        let client = daemon.client()
        let number = "+15550003333"
        twilio.fail(number, with: .authenticationFailed)
        _ = try await client.setPhone(SetPhoneRequest(accountId: "e", phoneNumber: number))
        let error = await #expect(throws: RPCError.self) {
            _ = try await client.startChallenge(StartChallengeRequest(accountId: "e", purpose: .verifyPhone))
        }
        #expect(error?.code == .unavailable)
        #expect(twilio.requestCount(to: number) == 1)
        let log = daemon.log()
        #expect(log.contains(" error "), "logged at error level")
        #expect(!log.contains(twilio.authToken))
        await client.close()
        await stop(twilio, daemon)
    }

    @Test func deliveryReportsAreCheckedAndAppliedIdempotently() async throws {
        let (twilio, daemon) = try await start()
        let client = daemon.client()
        _ = try await client.setPhone(SetPhoneRequest(accountId: "f", phoneNumber: "+15551112222"))
        _ = try await client.startChallenge(StartChallengeRequest(accountId: "f", purpose: .verifyPhone))
        let sid = try #require(twilio.messages.last?.sid)

        func report(_ status: String, errorCode: String? = nil, signWith token: String? = nil, tamper: Bool = false)
            -> ReportDeliveryRequest
        {
            var parameters = [("MessageSid", sid), ("MessageStatus", status), ("AccountSid", twilio.accountSID)]
            if let errorCode { parameters.append(("ErrorCode", errorCode)) }
            let signature = TwilioSignatureForTests.sign(
                url: Self.callbackURL, parameters: parameters, token: token ?? twilio.authToken)
            if tamper { parameters[1].1 = "delivered" }
            return ReportDeliveryRequest(
                url: Self.callbackURL, parameters: parameters.map { FormParameter(name: $0.0, value: $0.1) },
                signature: signature)
        }

        #expect(try await client.reportDelivery(report("sent")).updated)
        #expect(!(try await client.reportDelivery(report("sent")).updated), "a repeat changes nothing")
        #expect(try await client.reportDelivery(report("undelivered", errorCode: "30003")).status == "undelivered")
        #expect(!(try await client.reportDelivery(report("sent")).updated), "never backwards")

        let forged = await #expect(throws: RPCError.self) {
            _ = try await client.reportDelivery(report("delivered", signWith: "0123456789abcdef0123456789abcdef"))
        }
        #expect(forged?.code == .permissionDenied)
        let altered = await #expect(throws: RPCError.self) {
            _ = try await client.reportDelivery(report("failed", tamper: true))
        }
        #expect(altered?.code == .permissionDenied)

        let delivery = try #require(
            try await client.listDeliveries(ListDeliveriesRequest(accountId: "f")).deliveries.first)
        #expect(delivery.status == "undelivered")
        #expect(delivery.errorCode == 30003)
        let events = try await client.listEvents(ListEventsRequest(accountId: "f")).events
        #expect(events.contains { $0.kind == "sms_delivery_failed" })
        // Every authentic report is counted by its status; forged ones are not.
        let metrics = try await client.getMetrics().text
        #expect(metrics.contains("otpd_sms_delivery_reports_total{status=\"sent\"} 3"), "\(metrics)")
        #expect(metrics.contains("otpd_sms_delivery_reports_total{status=\"undelivered\"} 1"))
        #expect(!metrics.contains("status=\"delivered\"") && !metrics.contains("status=\"failed\""))
        await client.close()
        await stop(twilio, daemon)
    }

    /// A hanging provider costs only the send that waits for it: other accounts' verifications
    /// are all answered while that send is still in flight.
    @Test func aHangingProviderDoesNotBlockOtherRequests() async throws {
        // Each attempt may wait 5 s: the window in which every other call must be answered.
        let (twilio, daemon) = try await start(timeoutSeconds: 5)
        let client = daemon.client()
        // An account with an authenticator-free login path: SMS on.
        _ = try await client.setPhone(SetPhoneRequest(accountId: "g", phoneNumber: "+15553334444"))
        let enrol = try await client.startChallenge(StartChallengeRequest(accountId: "g", purpose: .verifyPhone))
        let code = try #require(
            twilio.messages.last?.body.split(separator: " ").first { $0.count == 6 && $0.allSatisfy(\.isNumber) })
        #expect(
            try await client.verify(
                VerifyRequest(accountId: "g", purpose: .verifyPhone, code: String(code), challengeId: enrol.challengeId)
            ).success)

        let slow = "+15559998888"
        twilio.fail(slow, with: .slowAnswer(after: .seconds(10)))
        _ = try await client.setPhone(SetPhoneRequest(accountId: "h", phoneNumber: slow))
        let hanging = Task {
            try? await client.startChallenge(StartChallengeRequest(accountId: "h", purpose: .verifyPhone))
        }
        for _ in 0..<100 where twilio.requestsInFlight == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(twilio.requestsInFlight == 1)
        let other = daemon.client()
        for _ in 0..<20 {
            _ = try await other.verify(VerifyRequest(accountId: "g", purpose: .login, code: "000000"))
        }
        #expect(twilio.requestsInFlight == 1, "every other call was answered while the send still hung")
        _ = await hanging.value
        await other.close()
        await client.close()
        await stop(twilio, daemon)
    }
}

extension TwilioDaemonTests {
    @Test func otpctlSMSTestDeliveriesAndReportDelivery() async throws {
        let (twilio, daemon) = try await start()
        let test = try runProgram(Binaries.otpctl, ["sms", "test", "+15551230000", "--socket", daemon.socket])
        #expect(test.status == 0, "\(test.stderr)")
        #expect(test.stdout.contains("Sent through twilio"))
        #expect(twilio.messages(to: "+15551230000").count == 1)
        #expect(twilio.messages(to: "+15551230000").first?.body.contains("test message") == true)

        let client = daemon.client()
        _ = try await client.setPhone(SetPhoneRequest(accountId: "k", phoneNumber: "+15551239999"))
        _ = try await client.startChallenge(StartChallengeRequest(accountId: "k", purpose: .verifyPhone))
        await client.close()
        let sid = try #require(twilio.messages.last?.sid)
        let json = try runProgram(Binaries.otpctl, ["deliveries", "k", "--json", "--socket", daemon.socket])
        #expect(json.status == 0)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(rows.first?["message_sid"] as? String == sid)
        #expect(rows.first?["destination_masked"] as? String == "+1******9999")

        let parameters = [("MessageSid", sid), ("MessageStatus", "delivered")]
        let signature = TwilioSignatureForTests.sign(
            url: Self.callbackURL, parameters: parameters, token: twilio.authToken)
        let arguments = [
            "report-delivery", Self.callbackURL, "--field", "MessageSid=\(sid)", "--field",
            "MessageStatus=delivered", "--socket", daemon.socket,
        ]
        let accepted = try runProgram(Binaries.otpctl, arguments + ["--signature", signature])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        #expect(accepted.stdout.contains("is now delivered"))
        let forged = try runProgram(Binaries.otpctl, arguments + ["--signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="])
        #expect(forged.status == 1)
        #expect(forged.stderr.contains("PERMISSION_DENIED"))
        await stop(twilio, daemon)
    }
}

/// Twilio's signature, computed independently of the daemon's code (with openssl), so the test
/// does not check the implementation against itself.
enum TwilioSignatureForTests {
    static func sign(url: String, parameters: [(String, String)], token: String) -> String {
        let text = url + parameters.sorted { $0.0 < $1.0 }.map { $0.0 + $0.1 }.joined()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["dgst", "-sha1", "-hmac", token, "-binary"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try? process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try? input.fileHandleForWriting.close()
        let digest = output.fileHandleForReading.readDataToEndOfFile()
        pollUntilExit(process)
        return digest.base64EncodedString()
    }
}
