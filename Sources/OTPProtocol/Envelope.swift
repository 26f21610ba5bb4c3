internal import COTPProto
internal import CProtobufC

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

// The envelope is decoded and encoded on every call, so it has a typed path through the
// generated protobuf-c structs (no field dictionaries, no intermediate copies). It follows the
// same rules as the generic bridge: strings are checked for UTF-8 and NUL on the wire first.

/// A request envelope's fields, viewed in place inside the decoded message: the server reads
/// these on every call without making a `String` or an `Array`. The buffers are valid only
/// inside the closure given to `Request.withFields(bytes:_:)`.
public struct RequestFields {
    public var callID: UInt64
    /// The method name's UTF-8 bytes (already checked to be valid UTF-8 without NUL).
    public var method: UnsafeRawBufferPointer
    public var deadlineMs: UInt32
    public var payload: UnsafeRawBufferPointer
}

extension Request {
    /// Decodes a request envelope straight from received bytes.
    public init(bytes: UnsafeRawBufferPointer) throws(RPCError) {
        var request = Request()
        try Request.withFields(bytes: bytes) { fields in
            request = Request(
                callId: fields.callID, method: String(decoding: fields.method, as: UTF8.self),
                deadlineMs: fields.deadlineMs, payload: Array(fields.payload))
        }
        self = request
    }

    /// Decodes a request envelope and hands its fields to `body` as views into the decoded
    /// message, which is freed when `body` returns. Refuses what `Request(serialized:)`
    /// refuses: malformed wire bytes, and strings that are not UTF-8 or hold a NUL.
    ///
    /// protobuf-c unpacks into a small arena on the stack, so a typical envelope costs no
    /// heap allocation; fields that do not fit are allocated and freed as usual. (Not generic:
    /// a generic function called from another module would look up its metadata every call.)
    public static func withFields(
        bytes: UnsafeRawBufferPointer, _ body: (RequestFields) -> Void
    ) throws(RPCError) {
        try ProtobufBridge.checkStrings(bytes, Request.schema.descriptor, name: "otp.v1.Request")
        try withUnsafeTemporaryAllocation(byteCount: UnpackArena.capacity, alignment: 16) {
            (space) throws(RPCError) in
            var arena = UnpackArena(space)
            try arena.withAllocator { (allocator) throws(RPCError) in
                var empty: UInt8 = 0
                let decoded: UnsafeMutablePointer<Otp__V1__Request>? = withUnsafeMutablePointer(to: &empty) {
                    fallback in
                    let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(fallback)
                    return otp__v1__request__unpack(allocator, bytes.count, base)
                }
                guard let decoded else { throw RPCError(code: .invalidArgument, message: "undecodable otp.v1.Request") }
                defer { otp__v1__request__free_unpacked(decoded, allocator) }
                let message = decoded.pointee
                let method =
                    message.method.map { UnsafeRawBufferPointer(start: $0, count: strlen($0)) }
                    ?? UnsafeRawBufferPointer(start: nil, count: 0)
                let payload = UnsafeRawBufferPointer(start: message.payload.data, count: message.payload.len)
                body(
                    RequestFields(
                        callID: message.call_id, method: method, deadlineMs: message.deadline_ms, payload: payload))
            }
        }
    }
}

/// A bump allocator over caller-provided (stack) memory for protobuf-c's unpack: allocations
/// that fit are carved from the space and their frees do nothing; larger ones fall through to
/// `malloc`/`free`. The space must outlive every use of the allocator, which `withAllocator`
/// guarantees by scoping it.
struct UnpackArena {
    /// Bytes of stack space: a request envelope (about 60 bytes) with a method name and a
    /// payload of a few hundred bytes fits.
    static let capacity = 1024

    private var state: State

    struct State {
        var base: UnsafeMutableRawPointer
        var used: Int
        var capacity: Int
    }

    init(_ space: UnsafeMutableRawBufferPointer) {
        state = State(base: space.baseAddress!, used: 0, capacity: space.count)
    }

    mutating func withAllocator(
        _ body: (UnsafeMutablePointer<ProtobufCAllocator>) throws(RPCError) -> Void
    ) throws(RPCError) {
        try withUnsafeMutablePointer(to: &state) { (statePointer) throws(RPCError) in
            var allocator = ProtobufCAllocator(
                alloc: { data, size in
                    let state = data!.assumingMemoryBound(to: UnpackArena.State.self)
                    let start = (state.pointee.used + 15) & ~15
                    if size <= state.pointee.capacity - start {
                        state.pointee.used = start + size
                        return state.pointee.base + start
                    }
                    return malloc(max(size, 1))
                },
                free: { data, pointer in
                    guard let pointer else { return }
                    let state = data!.assumingMemoryBound(to: UnpackArena.State.self)
                    let base = state.pointee.base
                    if pointer >= base && pointer < base + state.pointee.capacity { return }
                    releaseToMalloc(pointer)
                },
                allocator_data: UnsafeMutableRawPointer(statePointer))
            try withUnsafeMutablePointer(to: &allocator) { (pointer) throws(RPCError) in try body(pointer) }
        }
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
                        response.payload = ProtobufCBinaryData(
                            len: bytes.count, data: UnsafeMutablePointer(mutating: base))
                    }
                    return withUnsafePointer(to: &response) { body($0) }
                }
            }
        }
    }
}

/// Gives memory from `malloc` back (the arena's overflow). A named function, because inside the
/// allocator's `free:` closure the bare name would not read as the C library's `free`.
private func releaseToMalloc(_ pointer: UnsafeMutableRawPointer) {
    free(pointer)
}
