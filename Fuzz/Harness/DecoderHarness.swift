import OTPProtocol

/// An invariant of the decoders that one input broke.
public struct HarnessViolation: Error, CustomStringConvertible {
    /// What went wrong, with the input's size.
    public let description: String
}

/// Runs one input through every decoder that a stranger's bytes reach in otpd (the frame
/// decoder, the typed and the generic envelope decoders, every message type's decoder) and
/// checks what must hold for any input:
///
/// - feeding the stream in one piece or in small chunks yields the same payloads and the same
///   error;
/// - the typed envelope path (`Request(bytes:)`) and the generic bridge agree on every payload:
///   both refuse it, or both decode the same value;
/// - every value that decodes re-encodes to bytes that decode to the same value, and a response
///   built from it decodes back to what went in.
///
/// Decoders may refuse anything; they must never crash, hang or disagree. libFuzzer drives this
/// through `otpfuzz` (`scripts/fuzz.sh`); the unit tests replay the committed seeds and
/// deterministic mutations of them.
public enum DecoderHarness {
    /// The largest frame payload the harness accepts, small so that `tooLarge` is reachable.
    public static let maximumPayload = 4096

    /// Checks every invariant for one input.
    public static func check(_ bytes: [UInt8]) throws(HarnessViolation) {
        let payloads = try checkFrameStream(bytes)
        for payload in payloads {
            try checkEnvelope(payload)
        }
        // The raw input as an envelope and as each message type, without framing.
        try checkEnvelope(bytes)
    }

    // MARK: Frames

    private static func checkFrameStream(_ bytes: [UInt8]) throws(HarnessViolation) -> [[UInt8]] {
        let whole = decodeFrames(bytes, chunk: bytes.count)
        // Chunk size from the last byte, so that mutations explore different splits.
        let chunk = 1 + Int(bytes.last ?? 0) % 7
        let chunked = decodeFrames(bytes, chunk: chunk)
        guard whole.payloads == chunked.payloads, whole.error == chunked.error else {
            throw HarnessViolation(
                description: "frame decoder: \(bytes.count) bytes in one piece gave \(whole.payloads.count) "
                    + "payloads and \(String(describing: whole.error)); in chunks of \(chunk) gave "
                    + "\(chunked.payloads.count) and \(String(describing: chunked.error))")
        }
        for payload in whole.payloads where payload.count > maximumPayload {
            throw HarnessViolation(description: "frame decoder returned \(payload.count) bytes over the maximum")
        }
        return whole.payloads
    }

    private static func decodeFrames(_ bytes: [UInt8], chunk: Int) -> (payloads: [[UInt8]], error: FrameError?) {
        var decoder = FrameDecoder(maximumPayload: maximumPayload)
        var payloads: [[UInt8]] = []
        var offset = 0
        do {
            repeat {
                let end = min(bytes.count, offset + max(chunk, 1))
                decoder.append(bytes[offset..<end])
                offset = end
                while let payload = try decoder.next() { payloads.append(payload) }
            } while offset < bytes.count
            try decoder.finish()
            return (payloads, nil)
        } catch {
            return (payloads, error)
        }
    }

    // MARK: Envelope and messages

    private static func checkEnvelope(_ payload: [UInt8]) throws(HarnessViolation) {
        let typed = Result { () throws(RPCError) -> Request in
            let copy = payload  // exactly the bytes, through the same pointer path the server uses
            do {
                return try copy.withUnsafeBytes { raw in try Request(bytes: raw) }
            } catch let error as RPCError {
                throw error
            } catch {
                throw RPCError(code: .internal, message: "\(error)")
            }
        }
        let generic = Result { () throws(RPCError) -> Request in try Request(serialized: payload) }
        switch (typed, generic) {
        case (.success(let a), .success(let b)):
            guard a == b else {
                throw HarnessViolation(
                    description: "typed and generic envelope decoders disagree on \(payload.count) bytes")
            }
            try checkResponse(for: a)
        case (.failure, .failure):
            break
        default:
            throw HarnessViolation(
                description: "typed envelope decoder \(typed.isSuccess ? "accepted" : "refused") "
                    + "\(payload.count) bytes that the generic one \(generic.isSuccess ? "accepted" : "refused")")
        }
        let body = (try? typed.get())?.payload ?? payload
        for type in allWireMessageTypes {
            try checkRoundTrip(type, body)
        }
    }

    private static func checkRoundTrip<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8]) throws(HarnessViolation) {
        guard let value = try? M(serialized: bytes) else { return }
        let encoded = value.serialized()
        guard let again = try? M(serialized: encoded), again == value else {
            throw HarnessViolation(
                description:
                    "\(M.schema.name): \(bytes.count) bytes decoded, but its re-encoding does not decode to the same value"
            )
        }
    }

    private static func checkResponse(for request: Request) throws(HarnessViolation) {
        let size = Response.encodedSize(
            callID: request.callId, code: 3, message: request.method, payload: request.payload)
        var out = [UInt8](repeating: 0, count: size)
        let written = out.withUnsafeMutableBytes { buffer in
            Response.encode(
                callID: request.callId, code: 3, message: request.method, payload: request.payload, into: buffer)
        }
        let expected = Response(
            callId: request.callId, status: Status(code: 3, message: request.method), payload: request.payload)
        guard written == size, let decoded = try? Response(serialized: out), decoded == expected else {
            throw HarnessViolation(description: "a response echoing a decoded request does not decode to itself")
        }
    }

    // MARK: Seeds

    /// Valid and nearly valid inputs that start the fuzzer in the interesting places; also
    /// committed under `Fuzz/seeds/`.
    public static func seeds() -> [(name: String, bytes: [UInt8])] {
        func request(_ method: TwoFactorMethod, _ message: some WireMessage, callId: UInt64 = 1) -> [UInt8] {
            Request(callId: callId, method: method.rawValue, deadlineMs: 250, payload: message.serialized())
                .serialized()
        }
        let health = request(.health, HealthRequest())
        let verify = request(
            .verify, VerifyRequest(accountId: "admin-7", purpose: .login, code: "123456", challengeId: "c-1"), callId: 2
        )
        let setPhone = request(
            .setPhone, SetPhoneRequest(accountId: "ädmin ✓", phoneNumber: "+1 415 555 0100"), callId: 3)
        let proof = Proof(kind: .totpCode("1"))
        let withProof = request(
            .setPhone, SetPhoneRequest(accountId: "a", phoneNumber: "+1 555", proof: proof), callId: 4)
        let response = Response(callId: 9, status: Status(code: 5, message: "not found"), payload: []).serialized()
        return [
            ("health-frame", Frame.encode(health)),
            ("verify-frame", Frame.encode(verify)),
            ("two-frames", Frame.encode(setPhone) + Frame.encode(health)),
            ("empty-frame", Frame.encode([])),
            ("bad-flag", [1] + Array(Frame.encode(health).dropFirst())),
            ("too-large", [0, 0, 0, 0x10, 0x01] + health),
            ("truncated", Array(Frame.encode(verify).dropLast(3))),
            ("response-frame", Frame.encode(response)),
            ("bare-request", verify),
            ("proof-frame", Frame.encode(withProof)),
        ]
    }
}

extension Result {
    fileprivate var isSuccess: Bool {
        if case .success = self { true } else { false }
    }
}
