import Foundation
import OTPClient
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The metrics through the real daemon: `GET /metrics` scraped over HTTP and parsed with the
/// Prometheus client library's own parser (`Tests/Tools/scrape-metrics.py`, Debian's
/// python3-prometheus-client); each instrument moves when its event happens, and no label
/// carries anything but its fixed set of values.
@Suite("metrics", .serialized)
struct MetricsTests {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct Scrape {
        var status: Int
        var contentType: String
        var samples: [Sample]

        /// The sum of the samples named `name` whose labels include `labels`.
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
            samples.filter { sample in
                sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value }
            }.reduce(0) { $0 + $1.value }
        }

        func has(_ name: String) -> Bool { samples.contains { $0.name == name } }
    }

    static let scraper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tools/scrape-metrics.py").path

    /// Runs the scraper on `source` (a URL, or "-" with `input`).
    static func scrape(_ source: String) throws -> Scrape {
        let result = try runProgram("/usr/bin/python3", [scraper, source])
        #expect(result.status == 0, "the scrape failed: \(result.stderr)")
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        let rows = object["samples"] as? [[Any]] ?? []
        return Scrape(
            status: object["status"] as? Int ?? 0, contentType: object["content_type"] as? String ?? "",
            samples: rows.compactMap { row in
                guard row.count == 3, let name = row[0] as? String, let labels = row[1] as? [String: String],
                    let value = row[2] as? Double ?? (row[2] as? Int).map(Double.init)
                else { return nil }
                return Sample(name: name, labels: labels, value: value)
            })
    }

    /// The fixed values of every label (docs/OPERATIONS.md, "Metrics"); `country_code` is 1-3
    /// digits and `provider` a sender's name.
    static let labelValues: [String: Set<String>] = [
        "method": Set(TwoFactorMethod.allCases.map(\.name)),
        "status": [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
            "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
            "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
        ],
        "outcome": [
            "success", "wrong", "expired", "replay", "locked", "malformed", "accepted", "undeliverable", "temporary",
            "configuration",
        ],
        "factor": ["sms", "totp", "backup"],
        "budget": [
            "resend_cooldown", "account", "phone_verification", "phone_verified", "country", "global", "breaker",
        ],
        "scope": ["country", "range"],
        "kind": ["proof", "code_refused"],
        "provider": ["outbox", "twilio"],
        "le": [],  // histogram bounds: numbers
    ]

    @Test func everyInstrumentMovesWithItsEventAndNoLabelLeaksAnything() async throws {
        let port = try freeTCPPort()
        let daemon = try DaemonProcess(
            config: """
                [metrics]
                listen = "127.0.0.1:\(port)"

                [lockout]
                threshold = 3
                """)
        defer { Task { await daemon.cleanUp() } }
        try await daemon.start()
        let url = "http://127.0.0.1:\(port)/metrics"
        let before = try Self.scrape(url)
        #expect(before.status == 200)
        #expect(before.contentType.hasPrefix("text/plain; version=0.0.4"))
        #expect(before.value("otpd_lockouts_total") == 0)

        let client = daemon.client()
        // A number saved and verified: one text, one wrong code, one malformed, one success.
        let account = "metrics-admin-7"
        _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: "+15551230077"))
        let challenge = try await client.startChallenge(
            StartChallengeRequest(accountId: account, purpose: .verifyPhone))
        let code = try daemon.code(for: challenge.challengeId)
        let wrong = code == "000000" ? "111111" : "000000"
        for typed in [wrong, "12", code] {
            _ = try await client.verify(
                VerifyRequest(
                    accountId: account, purpose: .verifyPhone, code: typed, challengeId: challenge.challengeId))
        }
        // A second text within the resend cooldown is refused by that budget.
        _ = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .login))
        await #expect(throws: RPCError.self) {
            _ = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .login))
        }
        // Backup codes: one redeemed, one unknown.
        let proof = try await client.verify(
            VerifyRequest(accountId: account, purpose: .manageFactors, code: "000000", challengeId: ""))
        #expect(!proof.success)
        let other = "metrics-locked-9"
        try await daemon.enrollPhone(client, other, number: "+447700900123")
        for _ in 0..<4 {
            _ = try await client.redeemBackupCode(
                RedeemBackupCodeRequest(accountId: other, code: "AAAA-BBBB-CCCC-DDDD"))
        }

        // An authenticator code used again: the confirmation already took its step.
        let totpAccount = "metrics-totp-3"
        let enrollment = try await client.beginTotpEnrollment(BeginTotpEnrollmentRequest(accountId: totpAccount))
        let first = try totpCode(enrollment.secretBase32)
        #expect(
            try await client.confirmTotpEnrollment(ConfirmTotpEnrollmentRequest(accountId: totpAccount, code: first))
                .success)
        #expect(!(try await client.verify(VerifyRequest(accountId: totpAccount, purpose: .login, code: first)).success))

        let after = try Self.scrape(url)
        // Set when the daemon starts, then every 10 s: a debug daemon holds 15-60 MiB.
        #expect((15_000_000...60_000_000).contains(after.value("otpd_resident_memory_bytes")))
        #expect(after.value("otpd_calls_total", ["method": "Verify", "status": "OK"]) == 6)
        #expect(after.value("otpd_calls_total", ["method": "StartChallenge", "status": "RESOURCE_EXHAUSTED"]) == 1)
        #expect(after.value("otpd_call_duration_seconds_count", ["method": "Verify"]) == 6)
        #expect(after.value("otpd_verifications_total", ["outcome": "replay", "factor": "totp"]) == 1)
        #expect(after.value("otpd_verifications_total", ["outcome": "success", "factor": "sms"]) == 2)
        #expect(after.value("otpd_verifications_total", ["outcome": "wrong", "factor": "sms"]) == 1)
        #expect(after.value("otpd_verifications_total", ["outcome": "malformed", "factor": "sms"]) == 1)
        #expect(after.value("otpd_verifications_total", ["outcome": "wrong", "factor": "totp"]) == 1)
        // Threshold 3: the third wrong backup code locks, the fourth meets the lock.
        #expect(after.value("otpd_verifications_total", ["outcome": "wrong", "factor": "backup"]) == 3)
        #expect(after.value("otpd_verifications_total", ["outcome": "locked", "factor": "backup"]) == 1)
        #expect(after.value("otpd_lockouts_total") == 1)
        #expect(
            after.value("otpd_sms_sends_total", ["provider": "outbox", "outcome": "accepted", "country_code": "1"]) == 2
        )
        #expect(
            after.value("otpd_sms_sends_total", ["provider": "outbox", "outcome": "accepted", "country_code": "44"])
                == 1)
        #expect(after.value("otpd_sms_budget_refusals_total", ["budget": "resend_cooldown"]) == 1)
        #expect(
            after.value("otpd_store_commit_duration_seconds_count")
                > before.value("otpd_store_commit_duration_seconds_count"))
        #expect(after.value("otpd_store_batch_transactions_sum") >= after.value("otpd_store_batch_transactions_count"))
        #expect(after.value("otpd_connections") >= 1)
        #expect(after.has("otpd_store_wal_bytes") && after.has("otpd_calls_in_flight"))
        #expect(after.has("otpd_notification_backlog_events"))

        // Nothing personal in any label: every value is from its fixed set.
        for sample in after.samples {
            for (key, value) in sample.labels {
                switch key {
                case "le": #expect(value == "+Inf" || Double(value) != nil, "\(sample.name) le=\(value)")
                case "country_code":
                    #expect(value.count <= 3 && value.allSatisfy(\.isNumber), "\(sample.name) \(key)=\(value)")
                default:
                    #expect(Self.labelValues[key]?.contains(value) == true, "\(sample.name) \(key)=\(value)")
                }
                #expect(!value.contains("metrics-") && !value.contains("555") && !value.contains(code))
            }
        }

        // The same text through the socket (otpctl metrics), for hosts without a scraper.
        let ctl = try runProgram(Binaries.otpctl, ["metrics", "--socket", daemon.socket])
        #expect(ctl.status == 0, "\(ctl.stderr)")
        #expect(ctl.stdout.contains("otpd_lockouts_total 1"))
        // Only /metrics is served.
        #expect(try Self.scrape("http://127.0.0.1:\(port)/other").status == 404)
    }

    /// A TCP connection to 127.0.0.1:`port` that waits at most 5 s for a read.
    static func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        try #require(connected)
        return fd
    }

    /// Any local process can reach the endpoint: idle connections beyond the cap are closed at
    /// once, so they cannot use up the daemon's file descriptors; once they go, scrapes work.
    @Test func theEndpointHoldsABoundedNumberOfConnections() async throws {
        let port = try freeTCPPort()
        let daemon = try DaemonProcess(config: "[metrics]\nlisten = \"127.0.0.1:\(port)\"\n")
        defer { Task { await daemon.cleanUp() } }
        try await daemon.start()
        let held = try (0..<16).map { _ in try Self.connect(port) }
        let extra = try Self.connect(port)
        var byte: UInt8 = 0
        #expect(recv(extra, &byte, 1, 0) == 0, "the 17th connection was not closed")
        close(extra)
        held.forEach { close($0) }
        // The server notices the closes on its event loop; give it a moment before the scrape.
        try await Task.sleep(for: .seconds(1))
        let status = try Self.scrape("http://127.0.0.1:\(port)/metrics").status
        #expect(status == 200)
    }

    /// The endpoint stays on this host unless the operator says otherwise.
    @Test func aNonLoopbackAddressIsRefusedUnlessAllowed() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let config = directory.file("otpd.toml")
        for (listen, allowed, expected) in [
            ("0.0.0.0:9464", false, Int32(2)), ("192.0.2.10:9464", false, 2), ("[::]:9464", false, 2),
            ("0.0.0.0:9464", true, 0), ("127.0.0.1:9464", false, 0), ("[::1]:9464", false, 0),
            ("localhost:9464", false, 0), ("127.0.0.1:0", false, 2), ("127.0.0.1", false, 2),
        ] {
            try "[metrics]\nlisten = \"\(listen)\"\nallow_non_loopback = \(allowed)\n".write(
                toFile: config, atomically: true, encoding: .utf8)
            let result = try runProgram(Binaries.otpd, ["--config", config, "--check-config"])
            #expect(result.status == expected, "\(listen) allowed=\(allowed): \(result.stdout) \(result.stderr)")
            if expected == 2, !allowed, listen.hasSuffix(":9464") {
                #expect(result.stderr.contains("not a loopback address"), "\(result.stderr)")
            }
        }
    }
}
