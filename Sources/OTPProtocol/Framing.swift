/// The frame format: 1 flag byte (0 = uncompressed, anything else is refused), a 4-byte
/// big-endian length, then that many bytes of protobuf (gRPC's Length-Prefixed-Message).
public enum Frame {
    /// Bytes before the payload: flag + length.
    public static let headerSize = 5
    /// The default largest payload accepted: 64 KiB.
    public static let defaultMaximumPayload = 64 * 1024

    /// Checks a frame header and returns the payload length it announces.
    ///
    /// - Throws: `FrameError.badFlag` for a flag other than 0; `FrameError.tooLarge` when the
    ///   length exceeds `maximumPayload`.
    public static func payloadLength<Header: Collection<UInt8>>(
        header: Header, maximumPayload: Int
    ) throws(FrameError) -> Int {
        precondition(header.count >= headerSize, "a frame header is 5 bytes")
        var index = header.startIndex
        let flag = header[index]
        var length: UInt32 = 0
        for _ in 0..<4 {
            index = header.index(after: index)
            length = length << 8 | UInt32(header[index])
        }
        return try payloadLength(flag: flag, length: length, maximumPayload: maximumPayload)
    }

    /// Checks a frame header already split into its flag byte and its big-endian length, and
    /// returns the payload length.
    ///
    /// - Throws: as `payloadLength(header:maximumPayload:)`.
    public static func payloadLength(flag: UInt8, length: UInt32, maximumPayload: Int) throws(FrameError) -> Int {
        guard flag == 0 else { throw .badFlag(flag) }
        guard UInt64(length) <= UInt64(maximumPayload) else {
            throw .tooLarge(length: UInt64(length), maximum: maximumPayload)
        }
        return Int(length)
    }

    /// The 5 header bytes for a payload of `length` bytes.
    public static func header(length: Int) -> [UInt8] {
        precondition(length >= 0 && UInt64(length) <= UInt64(UInt32.max))
        let value = UInt32(length)
        return [0, UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    /// A whole frame holding `payload`.
    public static func encode(_ payload: [UInt8]) -> [UInt8] {
        header(length: payload.count) + payload
    }
}

/// Why a byte stream is not a valid sequence of frames.
public enum FrameError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The flag byte was not 0.
    case badFlag(UInt8)
    /// The announced length is larger than the maximum.
    case tooLarge(length: UInt64, maximum: Int)
    /// The stream ended inside a frame.
    case truncated(received: Int, expected: Int)

    public var description: String {
        switch self {
        case .badFlag(let flag): "frame flag byte is \(flag); only 0 (uncompressed) is supported"
        case .tooLarge(let length, let maximum): "frame of \(length) bytes exceeds the maximum of \(maximum)"
        case .truncated(let received, let expected):
            "stream ended inside a frame (\(received) of \(expected) bytes)"
        }
    }

    /// The status an error response for this failure carries.
    public var rpcError: RPCError {
        switch self {
        case .tooLarge: RPCError(code: .resourceExhausted, message: description)
        case .badFlag, .truncated: RPCError(code: .invalidArgument, message: description)
        }
    }
}

/// Splits a byte stream into frame payloads. Pure and incremental: feed bytes as they arrive,
/// take out whole payloads; a malformed header is reported as soon as its 5 bytes are in.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    /// The largest payload accepted.
    public let maximumPayload: Int

    public init(maximumPayload: Int = Frame.defaultMaximumPayload) {
        self.maximumPayload = maximumPayload
    }

    /// Appends received bytes.
    public mutating func append<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete payload, or `nil` when more bytes are needed.
    public mutating func next() throws(FrameError) -> [UInt8]? {
        let available = buffer.count - start
        guard available >= Frame.headerSize else { return nil }
        let length = try Frame.payloadLength(
            header: buffer[start..<start + Frame.headerSize], maximumPayload: maximumPayload)
        guard available >= Frame.headerSize + length else { return nil }
        let payloadStart = start + Frame.headerSize
        let payload = Array(buffer[payloadStart..<payloadStart + length])
        start = payloadStart + length
        if start > 4096 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return payload
    }

    /// Call at end of stream: throws when a frame was cut off.
    public func finish() throws(FrameError) {
        let available = buffer.count - start
        guard available > 0 else { return }
        if available < Frame.headerSize {
            throw .truncated(received: available, expected: Frame.headerSize)
        }
        let length = try Frame.payloadLength(
            header: buffer[start..<start + Frame.headerSize], maximumPayload: maximumPayload)
        throw .truncated(received: available, expected: Frame.headerSize + length)
    }
}
