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
/// Deadlines and cancellation: a call answered by its deadline has its task cancelled, but it
/// keeps its slot among the calls in flight, and its call id stays taken, until the task has
/// really returned; then it is dropped without a second answer. So an answer always reaches
/// the call it belongs to, and a client sending floods of calls with 1 ms deadlines cannot
/// have more than `maximumInFlight` handlers of its connection running at once. When the
/// connection closes, every task still running is cancelled.
///
/// Backpressure: while the answers already written have not been taken by the socket (NIO's
/// write buffer is past its high-water mark, 64 KiB by default), the handler turns the
/// channel's automatic reading off, so a client that sends calls but does not read the answers
/// stops being read instead of making the daemon buffer answers without bound.
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
    /// One call whose task has not returned yet.
    private struct Call {
        /// Tells this call's task apart from an earlier or later one under the same call id.
        var serial: UInt64
        var task: Task<Void, Never>?
        var deadlineTimer: Scheduled<Void>?
        /// The deadline answered the call; the task's answer is dropped.
        var answered = false
    }

    /// Calls whose task has not returned yet, answered or not: each holds its call id and a
    /// slot of `maximumInFlight` until then.
    private var inFlight: [UInt64: Call] = [:]
    /// The serial number of the last call given a task.
    private var lastSerial: UInt64 = 0
    private var quiescing = false
    private var inputClosed = false
    private var closing = false
    /// Answers encoded since the last flush, written as one buffer. The handler keeps the
    /// buffer: once the socket has taken the bytes, NIO lets go of it and the next answers are
    /// encoded into the same storage, so a call costs no buffer allocation.
    private var output: ByteBuffer?
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
            Result { () throws(RPCError) in
                try Request.withFields(bytes: bytes) { fields in handleCall(context: context, fields) }
            }
        }
        guard case .success = decoded else {
            fail(context: context, error: RPCError(code: .invalidArgument, message: "undecodable request envelope"))
            return
        }
    }

    /// Runs one decoded call: inline when the router can answer on the event loop (no task, no
    /// entry in `inFlight`), otherwise as a task whose answer comes back to this loop.
    private func handleCall(context: ChannelHandlerContext, _ fields: RequestFields) {
        let callID = fields.callID
        guard let method = TwoFactorMethod(utf8: fields.method) else {
            let name = String(decoding: fields.method, as: UTF8.self)
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .unimplemented, message: "unknown method \(name.prefix(200))")))
            return
        }
        if quiescing {
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .unavailable, message: "otpd is shutting down")))
            return
        }
        guard inFlight.isEmpty || inFlight[callID] == nil else {
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .invalidArgument, message: "call id \(callID) is already in flight on this connection")))
            return
        }
        guard inFlight.count < limits.maximumInFlight else {
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .resourceExhausted, message: "too many calls in flight on this connection")))
            return
        }
        // `deadline_ms` counts from the moment the call is read, so no call arrives past its
        // deadline. One whose deadline passes before its task gets to the store finds the task
        // cancelled, and the store refuses it without queueing it for the writer.
        let deadlineMs = fields.deadlineMs
        let deadline = deadlineMs > 0 ? ContinuousClock.now.advanced(by: .milliseconds(deadlineMs)) : nil
        let callContext = CallContext(peer: peer, callID: callID, method: method, deadline: deadline)
        let payload = Array(fields.payload)

        if let result = router.handleInline(payload: payload, context: callContext) {
            send(context: context, callID: callID, result)
            return
        }

        lastSerial &+= 1
        let serial = lastSerial
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        var call = Call(serial: serial)
        if deadlineMs > 0 {
            call.deadlineTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(deadlineMs))) {
                let (handler, context) = bound.value
                handler.deadlinePassed(context: context, callID: callID, serial: serial, deadlineMs: deadlineMs)
            }
        }
        let eventLoop = context.eventLoop
        let router = self.router
        call.task = Task {
            let result = await router.handle(payload: payload, context: callContext)
            eventLoop.execute {
                let (handler, context) = bound.value
                handler.finished(context: context, callID: callID, serial: serial, result: result)
            }
        }
        inFlight[callID] = call
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
                let expected = header.flatMap {
                    try? Frame.payloadLength(header: $0, maximumPayload: limits.maximumFrame)
                }
                malformed(
                    context: context,
                    .truncated(
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

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Switching automatic reading costs nothing per call, unlike holding back each read.
        do {
            try context.channel.syncOptions?.setOption(.autoRead, value: context.channel.isWritable)
        } catch {
            close(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Nobody can be answered any more: every task still running is cancelled (its answer,
    /// when it comes, finds no call).
    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        for call in inFlight.values {
            call.deadlineTimer?.cancel()
            call.task?.cancel()
        }
        inFlight.removeAll()
        context.fireChannelInactive()
    }

    // MARK: -

    /// The deadline of call `callID` passed: answers DEADLINE_EXCEEDED and cancels the task,
    /// which keeps the call (its id and its slot) until it returns.
    private func deadlinePassed(context: ChannelHandlerContext, callID: UInt64, serial: UInt64, deadlineMs: UInt32) {
        guard let index = inFlight.index(forKey: callID), inFlight.values[index].serial == serial else { return }
        inFlight.values[index].answered = true
        inFlight.values[index].deadlineTimer = nil
        inFlight.values[index].task?.cancel()
        send(
            context: context, callID: callID,
            .failure(
                RPCError(
                    code: .deadlineExceeded, message: "deadline of \(deadlineMs) ms exceeded")))
        flushIfNeeded(context: context)
    }

    /// The task of call `callID` returned: frees the call and answers it, unless its deadline
    /// already did.
    private func finished(
        context: ChannelHandlerContext, callID: UInt64, serial: UInt64, result: Result<[UInt8], RPCError>
    ) {
        // No call: the connection closed.
        guard let index = inFlight.index(forKey: callID), inFlight.values[index].serial == serial else { return }
        let call = inFlight.remove(at: index).value
        if !call.answered {
            call.deadlineTimer?.cancel()
            send(context: context, callID: callID, result)
            flushIfNeeded(context: context)
        }
        if (quiescing || inputClosed) && inFlight.isEmpty { close(context: context) }
    }

    /// Encodes the answer to call `callID` straight into the output buffer: the response
    /// envelope with the handler's bytes, or with the error's status and detail.
    private func send(context: ChannelHandlerContext, callID: UInt64, _ result: Result<[UInt8], RPCError>) {
        guard !closing else { return }
        if output == nil { output = context.channel.allocator.buffer(capacity: 1024) }
        switch result {
        case .success(let payload):
            Self.appendFrame(to: &output!, callID: callID, code: 0, message: "", payload: payload)
        case .failure(let error):
            Self.appendFrame(
                to: &output!, callID: callID, code: error.code.rawValue, message: error.message,
                payload: error.detail?.serialized() ?? [])
        }
    }

    /// An output buffer grown past this (by a large answer) is let go after its flush rather
    /// than kept for the life of the connection.
    private static let retainedOutputCapacity = 4096

    private static func appendFrame(
        to buffer: inout ByteBuffer, callID: UInt64, code: Int32, message: String, payload: [UInt8]
    ) {
        Response.packed(callID: callID, code: code, message: message, payload: payload) { size, pack in
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt32(size), endianness: .big)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pack($0) }
        }
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        guard var buffer = output, buffer.readableBytes > 0 else { return }
        output = nil
        context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
        guard buffer.capacity <= Self.retainedOutputCapacity else { return }
        // Only `buffer` and, if the socket could not take every byte yet, NIO refer to the
        // storage now. Clearing reuses it when NIO is done with it and takes fresh storage
        // otherwise, so bytes waiting to be written are never overwritten.
        buffer.clear()
        output = buffer
    }

    /// Answers a protocol violation with call id 0 and closes the connection.
    private func fail(context: ChannelHandlerContext, error: RPCError) {
        send(context: context, callID: 0, .failure(error))
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
