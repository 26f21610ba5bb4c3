import OTPProtocol
import Testing

/// The typed envelope path must agree with the generic bridge byte for byte.
@Suite("typed envelope path")
struct EnvelopeTests {
    @Test(arguments: [
        Request(), Request(callId: 1, method: "/otp.v1.TwoFactor/Health"),
        Request(callId: .max, method: "/otp.v1.TwoFactor/Verify", deadlineMs: .max, payload: [0, 1, 2, 255]),
        Request(callId: 7, method: "ünïcode/方法", deadlineMs: 5, payload: [UInt8](repeating: 9, count: 70_000)),
        // Around the decoder's stack arena: fields that fit, straddle it, and overflow it.
        Request(callId: 8, method: String(repeating: "m", count: 900), payload: [UInt8](repeating: 1, count: 60)),
        Request(callId: 9, method: String(repeating: "m", count: 500), payload: [UInt8](repeating: 2, count: 600)),
        Request(callId: 10, method: String(repeating: "m", count: 5000), payload: [UInt8](repeating: 3, count: 3)),
    ])
    func requestsDecodeLikeTheGenericBridge(_ request: Request) throws {
        let bytes = request.serialized()
        let typed = try bytes.withUnsafeBytes { buffer in try Request(bytes: buffer) }
        #expect(typed == request)
        #expect(try Request(serialized: bytes) == typed)
    }

    @Test func requestsWithBadStringsAreRefusedOnTheTypedPath() {
        for method: [UInt8] in [[0xC3, 0x28], [0x61, 0x00, 0x62], [0xFF]] {
            let bytes: [UInt8] = [0x08, 0x01, 0x12, UInt8(method.count)] + method
            #expect(throws: RPCError.self) { try bytes.withUnsafeBytes { try Request(bytes: $0) } }
        }
        for garbage: [[UInt8]] in [[[0xFF]], [[0x12, 0x05, 0x61]], [[0x0B]]] {
            for bytes in garbage {
                #expect(throws: RPCError.self) { try bytes.withUnsafeBytes { try Request(bytes: $0) } }
            }
        }
    }

    /// The decoder's own UTF-8 check must agree with the standard library on every kind of
    /// malformed sequence (overlong forms, surrogates, scalars past U+10FFFF, truncated and
    /// stray continuation bytes) and on random bytes biased towards multi-byte sequences.
    @Test func methodStringsAreCheckedLikeTheStandardLibraryDoes() throws {
        var cases: [[UInt8]] = [
            [], [0x41], [0x00], [0x41, 0x00], [0xC0, 0x80], [0xC1, 0xBF], [0xC2, 0x80], [0xDF, 0xBF],
            [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80],
            [0xED, 0xBF, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF], [0xF0, 0x8F, 0xBF, 0xBF],
            [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80],
            [0xF8, 0x88, 0x80, 0x80, 0x80], [0xFF], [0xFE], [0x80], [0xBF], [0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x98],
            [0x61, 0xC3, 0xA9, 0x62], [0xE2, 0x82, 0xAC, 0x00], [0xF0, 0x9F, 0x98, 0x80, 0x80],
        ]
        var random = SplitMix64(seed: 0x6f74_7064)
        let alphabet: [UInt8] = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5,
            0xFF,
        ]
        for _ in 0..<20_000 {
            let count = Int(random.next() % 7)
            cases.append((0..<count).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
        }
        for method in cases {
            let bytes: [UInt8] = [0x08, 0x01, 0x12, UInt8(method.count)] + method
            let valid = !method.contains(0) && String(validating: method, as: UTF8.self) != nil
            let typed = try? bytes.withUnsafeBytes { try Request(bytes: $0) }
            let generic = try? Request(serialized: bytes)
            #expect((typed != nil) == valid, "typed path on \(method)")
            #expect((generic != nil) == valid, "generic path on \(method)")
            if valid { #expect(typed?.method == String(decoding: method, as: UTF8.self)) }
        }
    }

    @Test func methodsAreFoundByTheirExactWireBytes() {
        for method in TwoFactorMethod.allCases {
            let wire = Array(method.rawValue.utf8)
            #expect(wire.withUnsafeBytes { TwoFactorMethod(utf8: $0) } == method)
            let nearMisses = [
                wire.dropLast(), wire + [0x78], [0x78] + wire.dropFirst(), wire.map { $0 == 0x2F ? 0x2E : $0 },
            ]
            for near in nearMisses {
                #expect(Array(near).withUnsafeBytes { TwoFactorMethod(utf8: $0) } == nil)
            }
        }
        #expect([UInt8]().withUnsafeBytes { TwoFactorMethod(utf8: $0) } == nil)
    }

    @Test(arguments: [
        (UInt64(0), Int32(0), "", [UInt8]()), (UInt64(42), Int32(0), "", [UInt8]([1, 2, 3])),
        (UInt64.max, Int32(8), "slow down ü", ErrorDetail(retryAfterSeconds: 30).serialized()),
        (UInt64(3), Int32(12), "unknown method", [UInt8]()),
    ])
    func responsesEncodeLikeTheGenericBridge(_ callID: UInt64, _ code: Int32, _ message: String, _ payload: [UInt8])
        throws
    {
        let generic = Response(
            callId: callID, status: code == 0 && message.isEmpty ? nil : Status(code: code, message: message),
            payload: payload)
        let size = Response.encodedSize(callID: callID, code: code, message: message, payload: payload)
        var typed = [UInt8](repeating: 0, count: size)
        let written = typed.withUnsafeMutableBytes {
            Response.encode(callID: callID, code: code, message: message, payload: payload, into: $0)
        }
        #expect(written == size)
        #expect(typed == generic.serialized())
        #expect(try Response(serialized: typed) == generic)
    }
}
