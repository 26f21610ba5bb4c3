import OTPProtocol
import Testing

@Suite("protobuf-c bridge")
struct BridgeTests {
    @Test func envelopeRoundTrip() throws {
        let request = Request(
            callId: .max, method: TwoFactorMethod.verify.rawValue, deadlineMs: 1500, payload: [0, 1, 2, 255])
        #expect(try Request(serialized: request.serialized()) == request)
        let response = Response(callId: 7, status: Status(code: 3, message: "bad"), payload: [9])
        #expect(try Response(serialized: response.serialized()) == response)
    }

    @Test func emptyMessagesEncodeToNothingAndDecode() throws {
        #expect(Request().serialized() == [])
        #expect(try Request(serialized: []) == Request())
        #expect(try HealthRequest(serialized: []) == HealthRequest())
    }

    /// Every message of the contract, filled with non-default values, survives a round trip;
    /// every type of `allWireMessageTypes` has a sample here (a new message needs one).
    @Test func everyMessageRoundTrips() throws {
        let status = AccountStatus(
            accountId: "acct-ü", phoneMasked: "+1******4567", phoneVerified: true, pendingPhoneMasked: "+4******0000",
            smsEnabled: true, totpEnabled: true, backupCodesRemaining: 7, preferredMethod: .totp, setupRequired: true,
            locked: true, lockedUntil: -5, consecutiveFailures: 3)
        let proof = Proof(kind: .totpCode("123456"))
        let event = Event(id: 1, accountId: "a", kind: "k", outcome: "o", detail: "d", destinationMasked: "m", atMs: 99)
        let parameter = FormParameter(name: "MessageStatus", value: "delivered")
        let delivery = Delivery(
            id: 1, accountId: "a", challengeId: "c", purpose: "login", destinationMasked: "m", provider: "twilio",
            messageSid: "SM1", status: "sent", errorCode: -30_003, attempts: 2, createdAt: 3, updatedAt: 4)
        let messages: [any WireMessage] = [
            Request(callId: 1, method: "m", deadlineMs: 2, payload: [3]),
            Response(callId: 1, status: Status(code: 8, message: "slow down"), payload: [1]),
            Status(code: 16, message: "x"), ErrorDetail(retryAfterSeconds: 30, lockedUntil: 1_700_000_000), proof,
            HealthRequest(), HealthResponse(status: "SERVING"), ServerInfoRequest(),
            ServerInfoResponse(
                version: "1", uptimeSeconds: 2, databasePath: "/x", schemaVersion: 3, connections: 4, maxConnections: 5,
                smsSender: "outbox", startedAt: 6),
            GetStatusRequest(accountId: "a"), status,
            SetPhoneRequest(accountId: "a", phoneNumber: "+1 555", proof: proof),
            SetPhoneResponse(status: status, pending: true),
            StartChallengeRequest(accountId: "a", purpose: .changePhone),
            StartChallengeResponse(challengeId: "c", expiresAt: 1, destinationMasked: "m", resendAt: 2, codeLength: 6),
            VerifyRequest(accountId: "a", purpose: .login, code: "123456", challengeId: "c"),
            VerifyResponse(
                success: true, factor: .sms, attemptsLeft: 4, lockedUntil: 5, proofToken: "p", proofExpiresAt: 6,
                status: status),
            BeginTotpEnrollmentRequest(accountId: "a", proof: proof, label: "shop"),
            BeginTotpEnrollmentResponse(secretBase32: "ABC", otpauthUri: "otpauth://totp/x", expiresAt: 3),
            ConfirmTotpEnrollmentRequest(accountId: "a", code: "1"),
            ConfirmTotpEnrollmentResponse(success: true, status: status, proofToken: "p", proofExpiresAt: 2),
            DisableFactorRequest(accountId: "a", factor: .totp, proof: proof), DisableFactorResponse(status: status),
            GenerateBackupCodesRequest(accountId: "a", proof: proof),
            GenerateBackupCodesResponse(codes: ["a", "", "ü"], generatedAt: 4),
            RedeemBackupCodeRequest(accountId: "a", code: "c"),
            RedeemBackupCodeResponse(success: true, remaining: 3, low: true, lockedUntil: 1),
            SetPreferredMethodRequest(accountId: "a", method: .sms, proof: proof),
            SetPreferredMethodResponse(status: status),
            event, ListEventsRequest(accountId: "a", pageSize: 5, beforeId: 9),
            ListEventsResponse(events: [event, event], nextBeforeId: 3),
            UnlockAccountRequest(accountId: "a", actor: "admin", reason: "phone lost"),
            UnlockAccountResponse(status: status), ResetAccountRequest(accountId: "a", actor: "b", reason: "c"),
            ResetAccountResponse(status: status), parameter,
            ReportDeliveryRequest(url: "https://shop/cb?x=1", parameters: [parameter, parameter], signature: "s"),
            ReportDeliveryResponse(updated: true, messageSid: "SM1", status: "delivered"), delivery,
            ListDeliveriesRequest(accountId: "a", pageSize: 5, beforeId: 9),
            ListDeliveriesResponse(deliveries: [delivery], nextBeforeId: 1),
            SendTestSmsRequest(phoneNumber: "+15551234567"),
            SendTestSmsResponse(provider: "twilio", messageSid: "SM2", status: "queued", attempts: 1),
            ListSmsBreakersRequest(),
            SmsBreaker(scope: "+1415", state: .watched, texts: 1, verified: 1, pausedUntil: 0, trips: 0),
            ListSmsBreakersResponse(breakers: [
                SmsBreaker(scope: "+4479112", state: .tripped, texts: 12, verified: 1, pausedUntil: 7, trips: 2),
                SmsBreaker(scope: "+44", state: .exempt),
            ]),
            UpdateSmsBreakerRequest(scope: "+44", action: .removeExemption, actor: "ops", reason: "r"),
            UpdateSmsBreakerResponse(breaker: SmsBreaker(scope: "+1", state: .watched, texts: 3)),
        ]
        for message in messages {
            try roundTrip(message)
        }
        let sampled = Set(messages.map { ObjectIdentifier(type(of: $0)) })
        for type in allWireMessageTypes {
            #expect(sampled.contains(ObjectIdentifier(type)), "no sample of \(type.schema.name)")
        }
    }

    /// `Proof`'s `oneof kind`: each case round-trips, also when its value is empty (set is not
    /// the same as absent), none set is `nil`, and of several on the wire the last one wins.
    @Test func proofOneofRoundTrips() throws {
        for kind: Proof.Kind? in [.token("pf_1"), .totpCode("123456"), .backupCode("abcd-efgh"), .token(""), nil] {
            try roundTrip(SetPhoneRequest(accountId: "a", proof: Proof(kind: kind)))
            #expect(try Proof(serialized: Proof(kind: kind).serialized()).kind == kind)
        }
        #expect(Proof().serialized() == [])
        #expect(Proof(kind: .token("")).serialized() == [0x0A, 0x00], "an empty token is still sent")
        #expect(Proof(kind: .backupCode("b")).serialized() == [0x1A, 0x01, 0x62], "field 3, same number as before")
        #expect(try Proof(serialized: [0x0A, 0x01, 0x61, 0x12, 0x01, 0x62]).kind == .totpCode("b"))
        #expect(try Proof(serialized: [0x12, 0x00]).kind == .totpCode(""))
        #expect(throws: RPCError.self) { try Proof(serialized: [0x12, 0x02, 0x61, 0x00]) }
    }

    private func roundTrip<M: WireMessage>(_ message: M) throws {
        let bytes = message.serialized()
        #expect(
            !bytes.isEmpty || M.self == HealthRequest.self || M.self == ServerInfoRequest.self
                || M.self == ListSmsBreakersRequest.self)
        let decoded = try M(serialized: bytes)
        #expect(decoded == message, "\(M.self)")
    }

    @Test func nonASCIIAndLargeStrings() throws {
        for text in [
            "ü", "日本語", "🔐 emoji", String(repeating: "é", count: 30_000), String(repeating: "x", count: 65_000),
        ] {
            let message = Status(code: 1, message: text)
            #expect(try Status(serialized: message.serialized()).message == text)
        }
    }

    /// Hand-made wire bytes: field 2 (message) of a Status, a length-delimited string.
    private func statusBytes(message: [UInt8]) -> [UInt8] {
        [0x08, 0x03, 0x12, UInt8(message.count)] + message
    }

    @Test func rejectsInvalidUTF8() {
        for bad: [UInt8] in [[0xFF], [0xC3], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0x61, 0xF8, 0x88, 0x80, 0x80, 0x80]] {
            #expect(throws: RPCError.self) { try Status(serialized: statusBytes(message: bad)) }
        }
    }

    @Test func rejectsNUL() throws {
        #expect(try Status(serialized: statusBytes(message: [0x61, 0x62])).message == "ab")
        #expect(throws: RPCError.self) { try Status(serialized: statusBytes(message: [0x61, 0x00, 0x62])) }
        #expect(throws: RPCError.self) { try Status(serialized: statusBytes(message: [0x00])) }
    }

    @Test func rejectsBadStringsInNestedMessages() {
        // Response.status (field 2) holding a Status whose message has a NUL.
        let inner = statusBytes(message: [0x61, 0x00])
        let outer: [UInt8] = [0x08, 0x01, 0x12, UInt8(inner.count)] + inner
        #expect(throws: RPCError.self) { try Response(serialized: outer) }
        // Repeated strings are checked too.
        let codes: [UInt8] = [0x0A, 0x02, 0x61, 0xFF]
        #expect(throws: RPCError.self) { try GenerateBackupCodesResponse(serialized: codes) }
    }

    @Test func rejectsGarbageAndWrongWireTypes() {
        let cases: [[UInt8]] = [
            [0xFF],  // truncated varint key
            [0x0A, 0x05, 0x61],  // length beyond the end
            [0x08],  // varint missing
            [0x12, 0x01],  // string missing
            [0x0B],  // start group
            [0x0F],  // wire type 7
            [0x11, 1, 2, 3],  // fixed64 cut short
            [0x00, 0x01],  // field number 0
            [0x10, 0x01],  // field 2 (method, a string) sent as a varint
            Array(repeating: 0xFF, count: 11),  // varint longer than 10 bytes
        ]
        for bytes in cases {
            #expect(throws: RPCError.self, "\(bytes)") { try Request(serialized: bytes) }
        }
    }

    @Test func unknownEnumValuesAreInvalidArgument() {
        // VerifyRequest.purpose = 99
        let error = #expect(throws: RPCError.self) { try VerifyRequest(serialized: [0x10, 99]) }
        #expect(error?.code == .invalidArgument)
    }

    @Test func unknownFieldsAreIgnored() throws {
        // field 15 varint on a HealthRequest: forward compatible.
        #expect(try HealthRequest(serialized: [0x78, 0x01]) == HealthRequest())
    }

    @Test func errorResponsesCarryDetail() throws {
        let error = RPCError(code: .resourceExhausted, message: "wait", detail: ErrorDetail(retryAfterSeconds: 30))
        let response = try Response(serialized: Response(callId: 4, error: error).serialized())
        #expect(response.error == error)
        #expect(Response(callId: 1, message: HealthResponse(status: "SERVING")).error == nil)
    }
}
