internal import CProtobufC
internal import COTPProto

/// The envelope is decoded and encoded on every call, so it has a typed path through the
/// generated protobuf-c structs (no field dictionaries, no intermediate copies). It follows the
/// same rules as the generic bridge: strings are checked for UTF-8 and NUL on the wire first.
extension Request {
    /// Decodes a request envelope straight from received bytes.
    public init(bytes: UnsafeRawBufferPointer) throws(RPCError) {
        let schema = Request.schema
        try ProtobufBridge.checkStrings(bytes, schema.descriptor, name: "otp.v1.Request")
        var empty: UInt8 = 0
        let decoded: UnsafeMutablePointer<Otp__V1__Request>? = withUnsafeMutablePointer(to: &empty) { fallback in
            let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(fallback)
            return otp__v1__request__unpack(nil, bytes.count, base)
        }
        guard let decoded else { throw RPCError(code: .invalidArgument, message: "undecodable otp.v1.Request") }
        defer { otp__v1__request__free_unpacked(decoded, nil) }
        let message = decoded.pointee
        let payload: [UInt8] =
            if message.payload.len > 0, let data = message.payload.data {
                Array(UnsafeBufferPointer(start: data, count: message.payload.len))
            } else {
                []
            }
        self.init(
            callId: message.call_id, method: message.method.map { String(cString: $0) } ?? "",
            deadlineMs: message.deadline_ms, payload: payload)
    }
}

extension Response {
    /// Builds the response envelope once and hands `body` its encoded size and a function that
    /// packs it into a buffer of at least that size (returning the bytes written). The server
    /// encodes every answer through this: one protobuf-c size computation, one pack.
    public static func packed<T>(
        callID: UInt64, code: Int32, message: String, payload: [UInt8],
        _ body: (_ size: Int, _ pack: (UnsafeMutableRawBufferPointer) -> Int) -> T
    ) -> T {
        withEnvelope(callID: callID, code: code, message: message, payload: payload) { response in
            let size = otp__v1__response__get_packed_size(response)
            return body(size) { out in
                precondition(out.count >= size, "buffer too small for the response")
                return otp__v1__response__pack(response, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    /// The encoded size of a response with these parts.
    public static func encodedSize(callID: UInt64, code: Int32, message: String, payload: [UInt8]) -> Int {
        packed(callID: callID, code: code, message: message, payload: payload) { size, _ in size }
    }

    /// Encodes a response with these parts into `out`, which must hold `encodedSize(...)`
    /// bytes; returns the bytes written.
    public static func encode(
        callID: UInt64, code: Int32, message: String, payload: [UInt8], into out: UnsafeMutableRawBufferPointer
    ) -> Int {
        packed(callID: callID, code: code, message: message, payload: payload) { _, pack in pack(out) }
    }

    private static func withEnvelope<T>(
        callID: UInt64, code: Int32, message: String, payload: [UInt8],
        _ body: (UnsafePointer<Otp__V1__Response>) -> T
    ) -> T {
        var response = Otp__V1__Response()
        otp__v1__response__init(&response)
        response.call_id = callID
        var status = Otp__V1__Status()
        otp__v1__status__init(&status)
        status.code = code
        return message.withCString { text in
            status.message = UnsafeMutablePointer(mutating: text)
            return withUnsafeMutablePointer(to: &status) { statusPointer in
                if code != 0 || !message.isEmpty { response.status = statusPointer }
                return payload.withUnsafeBufferPointer { bytes in
                    if let base = bytes.baseAddress, bytes.count > 0 {
                        response.payload = ProtobufCBinaryData(len: bytes.count, data: UnsafeMutablePointer(mutating: base))
                    }
                    return withUnsafePointer(to: &response) { body($0) }
                }
            }
        }
    }
}
