internal import Logging
internal import NIOCore
internal import OTPProtocol

/// Sent down every connection's pipeline when the daemon shuts down gracefully.
struct QuiesceEvent: Sendable {}

/// One connection: decodes request envelopes from frame payloads, runs calls (many at once,
/// answered in any order by call id), enforces deadlines and the per-connection limits, and
/// closes the connection after an error response on malformed input.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let router: any CallRouter
    private let peer: PeerCredentials
    private let maximumInFlight: Int
    private var logger: Logger
    /// Calls answered neither by their handler nor by their deadline yet.
    private var inFlight: [UInt64: Scheduled<Void>?] = [:]
    private var quiescing = false
    private var inputClosed = false
    private var closing = false
    private var needsFlush = false

    init(router: any CallRouter, peer: PeerCredentials, maximumInFlight: Int, logger: Logger) {
        self.router = router
        self.peer = peer
        self.maximumInFlight = maximumInFlight
        self.logger = logger
        self.logger[metadataKey: "peer.pid"] = "\(peer.pid)"
        self.logger[metadataKey: "peer.uid"] = "\(peer.uid)"
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let payload = Self.unwrapInboundIn(data)
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
        guard inFlight.count < maximumInFlight else {
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
            // The client has sent everything: answer what is in flight, then close.
            inputClosed = true
            if inFlight.isEmpty { close(context: context) }
        } else if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if inFlight.isEmpty {
                logger.debug("closing idle connection")
                close(context: context)
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let frameError = error as? FrameError {
            logger.notice("malformed frame", metadata: ["error": "\(frameError)"])
            fail(context: context, error: frameError.rpcError)
        } else if let io = error as? IOError, io.errnoCode == ECONNRESET || io.errnoCode == EPIPE {
            close(context: context)
        } else {
            logger.notice("connection error", metadata: ["error": "\(error)"])
            close(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
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
        let size = Response.encodedSize(
            callID: response.callId, code: code, message: message, payload: response.payload)
        var buffer = context.channel.allocator.buffer(capacity: size + Frame.headerSize)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(size), endianness: .big)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            Response.encode(
                callID: response.callId, code: code, message: message, payload: response.payload, into: out)
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
