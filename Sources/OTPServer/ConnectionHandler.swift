internal import Logging
internal import NIOCore
internal import OTPProtocol

/// Sent down every connection's pipeline when the daemon shuts down gracefully.
struct QuiesceEvent: Sendable {}

/// One connection, the only handler in its pipeline: splits the byte stream into frames,
/// decodes request envelopes, runs calls (many at once, answered in any order by call id),
/// enforces deadlines and the per-connection limits (frame size, frame timeout, idle timeout,
/// calls in flight), and closes the connection after an error response on malformed input.
///
/// Framing and the idle clock live here rather than in `ByteToMessageHandler` and
/// `IdleStateHandler` because every call passes through them: one handler saves two pipeline
/// hops and a clock read per call (about 10 % of the per-call CPU in `make bench`).
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The limits one connection lives by.
    struct Limits {
        /// The largest frame payload accepted.
        var maximumFrame: Int
        /// A frame must arrive whole within this time after its first byte.
        var frameTimeout: TimeAmount
        /// A connection with nothing received and no call in flight for this long is closed.
        var idleTimeout: TimeAmount
        /// Calls in flight beyond this get RESOURCE_EXHAUSTED.
        var maximumInFlight: Int
    }

    /// The idle clock ticks this many times per idle timeout; after that many quiet ticks in a
    /// row the connection closes, so it is closed between 1 and 1.25 idle timeouts of silence.
    private static let idleTicksPerTimeout: Int64 = 4

    private let router: any CallRouter
    private let peer: PeerCredentials
    private let limits: Limits
    private var logger: Logger
    /// Calls answered neither by their handler nor by their deadline yet.
    private var inFlight: [UInt64: Scheduled<Void>?] = [:]
    private var quiescing = false
    private var inputClosed = false
    private var closing = false
    private var needsFlush = false
    /// Bytes of a frame not yet received whole.
    private var partial: ByteBuffer?
    private var frameTimer: Scheduled<Void>?
    private var idleClock: RepeatedTask?
    private var readSinceTick = false
    private var quietTicks: Int64 = 0

    init(router: any CallRouter, peer: PeerCredentials, limits: Limits, logger: Logger) {
        self.router = router
        self.peer = peer
        self.limits = limits
        self.logger = logger
        self.logger[metadataKey: "peer.pid"] = "\(peer.pid)"
        self.logger[metadataKey: "peer.uid"] = "\(peer.uid)"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let tick = TimeAmount.nanoseconds(max(1, limits.idleTimeout.nanoseconds / Self.idleTicksPerTimeout))
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleClock = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
            let (handler, context) = bound.value
            handler.idleTick(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimers()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        readSinceTick = true
        var incoming = Self.unwrapInboundIn(data)
        if partial != nil {
            partial!.writeBuffer(&incoming)
            var buffer = partial.take()!
            readFrames(context: context, from: &buffer)
        } else {
            readFrames(context: context, from: &incoming)
        }
    }

    /// Handles every whole frame in `buffer` and keeps the rest for the next read.
    private func readFrames(context: ChannelHandlerContext, from buffer: inout ByteBuffer) {
        var completed = false
        while !closing, buffer.readableBytes >= Frame.headerSize,
            let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let announced = buffer.getInteger(at: buffer.readerIndex + 1, endianness: .big, as: UInt32.self)
        {
            let length: Int
            do {
                length = try Frame.payloadLength(flag: flag, length: announced, maximumPayload: limits.maximumFrame)
            } catch {
                malformed(context: context, error)
                return
            }
            guard buffer.readableBytes >= Frame.headerSize + length else { break }
            buffer.moveReaderIndex(forwardBy: Frame.headerSize)
            completed = true
            handleFrame(context: context, payload: buffer.readSlice(length: length)!)
        }
        guard !closing else { return }
        if completed {
            frameTimer?.cancel()
            frameTimer = nil
        }
        if buffer.readableBytes > 0 {
            partial = buffer
            armFrameTimer(context: context)
        }
    }

    /// Starts the clock on a partly received frame; a slow-loris client loses its connection.
    private func armFrameTimer(context: ChannelHandlerContext) {
        guard frameTimer == nil else { return }
        let channel = context.channel
        frameTimer = context.eventLoop.scheduleTask(in: limits.frameTimeout) {
            channel.close(promise: nil)
        }
    }

    private func idleTick(context: ChannelHandlerContext) {
        if readSinceTick || !inFlight.isEmpty {
            readSinceTick = false
            quietTicks = 0
            return
        }
        quietTicks += 1
        if quietTicks >= Self.idleTicksPerTimeout {
            logger.debug("closing idle connection")
            close(context: context)
        }
    }

    private func stopTimers() {
        idleClock?.cancel()
        idleClock = nil
        frameTimer?.cancel()
        frameTimer = nil
    }

    private func malformed(context: ChannelHandlerContext, _ error: FrameError) {
        logger.notice("malformed frame", metadata: ["error": "\(error)"])
        fail(context: context, error: error.rpcError)
    }

    private func handleFrame(context: ChannelHandlerContext, payload: ByteBuffer) {
        let decoded = payload.withUnsafeReadableBytes { bytes in
            Result { () throws(RPCError) in try Request(bytes: bytes) }
        }
        guard case .success(let request) = decoded else {
            fail(context: context, error: RPCError(code: .invalidArgument, message: "undecodable request envelope"))
            return
        }
        let callID = request.callId
        guard let method = TwoFactorMethod(rawValue: request.method) else {
            send(context: context, Response(callId: callID, error: RPCError(
                code: .unimplemented, message: "unknown method \(request.method.prefix(200))")))
            return
        }
        if quiescing {
            send(context: context, Response(callId: callID, error: RPCError(
                code: .unavailable, message: "otpd is shutting down")))
            return
        }
        guard inFlight[callID] == nil else {
            send(context: context, Response(callId: callID, error: RPCError(
                code: .invalidArgument, message: "call id \(callID) is already in flight on this connection")))
            return
        }
        guard inFlight.count < limits.maximumInFlight else {
            send(context: context, Response(callId: callID, error: RPCError(
                code: .resourceExhausted, message: "too many calls in flight on this connection")))
            return
        }
        let now = ContinuousClock.now
        let deadline = request.deadlineMs > 0 ? now.advanced(by: .milliseconds(request.deadlineMs)) : nil
        let callContext = CallContext(peer: peer, callID: callID, method: method, deadline: deadline)

        if let result = router.handleInline(payload: request.payload, context: callContext) {
            send(context: context, Self.response(callID, result))
            return
        }

        var timer: Scheduled<Void>? = nil
        if request.deadlineMs > 0 {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(request.deadlineMs))) {
                let (handler, context) = bound.value
                handler.complete(context: context, callID: callID, result: .failure(RPCError(
                    code: .deadlineExceeded, message: "deadline of \(request.deadlineMs) ms exceeded")))
            }
        }
        inFlight[callID] = timer
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let router = self.router
        let payloadBytes = request.payload
        Task {
            let result = await router.handle(payload: payloadBytes, context: callContext)
            eventLoop.execute {
                let (handler, context) = bound.value
                handler.complete(context: context, callID: callID, result: result, flush: true)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is QuiesceEvent {
            quiescing = true
            if inFlight.isEmpty { close(context: context) }
        } else if let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed {
            if let partial, partial.readableBytes > 0 {
                // The stream ended inside a frame.
                let header = partial.viewBytes(at: partial.readerIndex, length: Frame.headerSize)
                let expected = header.flatMap { try? Frame.payloadLength(header: $0, maximumPayload: limits.maximumFrame) }
                malformed(context: context, .truncated(
                    received: partial.readableBytes, expected: Frame.headerSize + (expected ?? 0)))
                return
            }
            // The client has sent everything: answer what is in flight, then close.
            inputClosed = true
            if inFlight.isEmpty { close(context: context) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let io = error as? IOError, io.errnoCode == ECONNRESET || io.errnoCode == EPIPE {
            close(context: context)
        } else {
            logger.notice("connection error", metadata: ["error": "\(error)"])
            close(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        for (_, timer) in inFlight { timer?.cancel() }
        inFlight.removeAll()
        context.fireChannelInactive()
    }

    // MARK: -

    private static func response(_ callID: UInt64, _ result: Result<[UInt8], RPCError>) -> Response {
        switch result {
        case .success(let bytes): Response(callId: callID, status: nil, payload: bytes)
        case .failure(let error): Response(callId: callID, error: error)
        }
    }

    private func complete(
        context: ChannelHandlerContext, callID: UInt64, result: Result<[UInt8], RPCError>, flush: Bool = true
    ) {
        guard let timer = inFlight.removeValue(forKey: callID) else { return }  // deadline answered it
        timer?.cancel()
        send(context: context, Self.response(callID, result))
        if flush { flushIfNeeded(context: context) }
        if (quiescing || inputClosed) && inFlight.isEmpty { close(context: context) }
    }

    /// Encodes the response straight into an outbound buffer (typed envelope path).
    private func send(context: ChannelHandlerContext, _ response: Response) {
        guard !closing else { return }
        let code = response.status?.code ?? 0
        let message = response.status?.message ?? ""
        let allocator = context.channel.allocator
        let buffer = Response.packed(callID: response.callId, code: code, message: message, payload: response.payload) {
            size, pack in
            var buffer = allocator.buffer(capacity: size + Frame.headerSize)
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt32(size), endianness: .big)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pack($0) }
            return buffer
        }
        context.write(Self.wrapOutboundOut(buffer), promise: nil)
        needsFlush = true
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        guard needsFlush else { return }
        needsFlush = false
        context.flush()
    }

    /// Answers a protocol violation with call id 0 and closes the connection.
    private func fail(context: ChannelHandlerContext, error: RPCError) {
        send(context: context, Response(callId: 0, error: error))
        flushIfNeeded(context: context)
        close(context: context)
    }

    private func close(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        flushIfNeeded(context: context)
        context.close(promise: nil)
    }
}

#if canImport(Glibc)
    internal import Glibc
#endif
