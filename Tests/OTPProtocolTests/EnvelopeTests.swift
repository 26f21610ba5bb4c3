import OTPProtocol
import Testing

/// The typed envelope path must agree with the generic bridge byte for byte.
@Suite("typed envelope path")
struct EnvelopeTests {
    @Test(arguments: [
        Request(), Request(callId: 1, method: "/otp.v1.TwoFactor/Health"),
        Request(callId: .max, method: "/otp.v1.TwoFactor/Verify", deadlineMs: .max, payload: [0, 1, 2, 255]),
        Request(callId: 7, method: "ünïcode/方法", deadlineMs: 5, payload: [UInt8](repeating: 9, count: 70_000)),
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
