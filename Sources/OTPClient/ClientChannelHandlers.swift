internal import NIOCore
internal import OTPProtocol

/// Splits the daemon's byte stream into response payloads.
struct ResponseFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let maximumPayload: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let header = buffer.viewBytes(at: buffer.readerIndex, length: Frame.headerSize) else {
            return .needMoreData
        }
        let length = try Frame.payloadLength(header: header, maximumPayload: maximumPayload)
        guard buffer.readableBytes >= Frame.headerSize + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: Frame.headerSize)
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: length)!))
        return .continue
    }
}

/// One call waiting to be written.
struct OutboundCall {
    let callID: UInt64
    let frame: ByteBuffer
    let timeout: TimeAmount?
    let promise: EventLoopPromise<Response>
}

/// Matches responses to calls by call id; fails every pending call when the connection ends.
final class CallMultiplexer: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutboundCall
    typealias OutboundOut = ByteBuffer

    private var pending: [UInt64: (promise: EventLoopPromise<Response>, timer: Scheduled<Void>?)] = [:]

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let call = Self.unwrapOutboundIn(data)
        var timer: Scheduled<Void>?
        if let timeout = call.timeout {
            let bound = NIOLoopBound((self, call.callID), eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(in: timeout) {
                let (handler, callID) = bound.value
                handler.pending.removeValue(forKey: callID)?.promise.fail(
                    RPCError(code: .deadlineExceeded, message: "no answer from otpd within the deadline"))
            }
        }
        pending[call.callID] = (call.promise, timer)
        context.write(Self.wrapOutboundOut(call.frame), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = Self.unwrapInboundIn(data)
        guard let response = try? Response(serialized: Array(payload.readableBytesView)) else {
            context.fireErrorCaught(RPCError(code: .internal, message: "undecodable response from otpd"))
            return
        }
        if let entry = pending.removeValue(forKey: response.callId) {
            entry.timer?.cancel()
            entry.promise.succeed(response)
        } else if response.callId == 0, let error = response.error {
            // A connection-level error (malformed frame): the daemon closes the connection.
            failAll(error)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let rpcError =
            (error as? RPCError) ?? (error as? FrameError)?.rpcError
            ?? RPCError(code: .unavailable, message: "connection to otpd failed: \(error)")
        failAll(rpcError)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RPCError(code: .unavailable, message: "connection to otpd closed"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: RPCError) {
        let entries = pending
        pending.removeAll()
        for (_, entry) in entries {
            entry.timer?.cancel()
            entry.promise.fail(error)
        }
    }
}
