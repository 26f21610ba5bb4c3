public import NIOCore
internal import OTPProtocol

/// Splits the inbound byte stream into frame payloads, refusing a bad flag byte or an oversize
/// length as soon as the 5 header bytes are in (nothing of an oversize frame is buffered).
public struct FrameToPayloadDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    /// The largest payload accepted.
    public let maximumPayload: Int
    /// A frame must arrive whole within this time after its first byte, or the connection closes.
    public let frameTimeout: TimeAmount
    private var frameTimer: Scheduled<Void>?

    public init(maximumPayload: Int, frameTimeout: TimeAmount) {
        self.maximumPayload = maximumPayload
        self.frameTimeout = frameTimeout
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes > 0 else { return .needMoreData }
        guard let header = buffer.viewBytes(at: buffer.readerIndex, length: Frame.headerSize) else {
            armFrameTimer(context: context)
            return .needMoreData
        }
        let length = try Frame.payloadLength(header: header, maximumPayload: maximumPayload)
        guard buffer.readableBytes >= Frame.headerSize + length else {
            armFrameTimer(context: context)
            return .needMoreData
        }
        buffer.moveReaderIndex(forwardBy: Frame.headerSize)
        frameTimer?.cancel()
        frameTimer = nil
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: length)!))
        return .continue
    }

    public mutating func decoderRemoved(context: ChannelHandlerContext) {
        frameTimer?.cancel()
        frameTimer = nil
    }

    /// Starts the clock on a partly received frame; a slow-loris client loses its connection.
    private mutating func armFrameTimer(context: ChannelHandlerContext) {
        guard frameTimer == nil else { return }
        let channel = context.channel
        frameTimer = context.eventLoop.scheduleTask(in: frameTimeout) {
            channel.close(promise: nil)
        }
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let expected: Int
            if let header = buffer.viewBytes(at: buffer.readerIndex, length: Frame.headerSize) {
                expected = Frame.headerSize + (try Frame.payloadLength(header: header, maximumPayload: maximumPayload))
            } else {
                expected = Frame.headerSize
            }
            throw FrameError.truncated(received: buffer.readableBytes, expected: expected)
        }
        return .needMoreData
    }
}
