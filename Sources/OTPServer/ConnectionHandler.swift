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
/// Backpressure, in bytes: every call sets aside room for its answer
/// (`TwoFactorMethod.answerReservation`) from two budgets before it starts, its connection's
/// (`Limits.answerBytes`) and the daemon's (`AnswerBudget`), and the room is given back when
/// its answer has been written to the socket (a write promise per flush tells when). A call
/// for which there is no room is not started: the frame waits, whole, and the connection stops
/// being read (automatic reading off) until answers have been written or calls have finished.
/// So a connection holds at most its budget in answers (or one call's answer when it has
/// nothing else, so that no connection is stuck), whatever its calls are and however slowly
/// its client reads; and all connections together at most the daemon's budget, plus one short
/// answer per connection (see `takeRoom`). Connections waiting for the daemon's budget get
/// room in the order they asked (`AnswerBudget`). The room a call takes covers its working
/// memory too: a listing's reservation is four times its largest answer. A client that stops
/// reading altogether is closed by the idle timeout. Reading also stops while NIO's write
/// buffer is past its high-water mark (64 KiB by default). A call that waited for room has
/// its `deadline_ms` counted from when it starts, not from when its bytes arrived.
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
        /// Answer bytes the connection may hold: set aside for its calls in flight, encoded
        /// and not yet flushed, or flushed and not yet written to the socket.
        var answerBytes: Int
    }

    /// The idle clock ticks this many times per idle timeout; after that many quiet ticks in a
    /// row the connection closes, so it is closed between 1 and 1.25 idle timeouts of silence.
    private static let idleTicksPerTimeout: Int64 = 4

    private let router: any CallRouter
    /// Where this connection's calls run (set once the handler is added to its channel).
    private var taskExecutor: EventLoopTaskExecutor?
    private let peer: PeerCredentials
    private let limits: Limits
    private let daemonBudget: AnswerBudget
    private var logger: Logger
    /// One call whose task has not returned yet.
    private struct Call {
        /// Tells this call's task apart from an earlier or later one under the same call id.
        var serial: UInt64
        var task: Task<Void, Never>?
        var deadlineTimer: Scheduled<Void>?
        /// The deadline answered the call; the task's answer is dropped.
        var answered = false
        /// Bytes set aside for the answer in the connection's budget until the task returns.
        var reservation: Int
        /// The part of `reservation` charged to the daemon's budget: all of it, or nothing for
        /// the one short call a connection holding nothing may always run.
        var charged: Int
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
    /// Bytes set aside for the answers of the calls in `inFlight` (the connection's budget).
    private var reserved = 0
    /// The part of `reserved` charged to the daemon's budget.
    private var reservedCharged = 0
    /// Bytes flushed to NIO whose write has not completed, of the flushes that are tracked
    /// (in both budgets; see `flushIfNeeded`).
    private var unwritten = 0
    /// A call found no room in a budget: its frame waits in `partial`, and nothing is read.
    private var waitingForRoom = false
    /// Whether the channel reads by itself now (mirrors the `autoRead` option).
    private var reading = true
    /// `resumeIfWaiting` is running (it may be called again from inside its own flush).
    private var resuming = false
    /// Bytes the daemon's budget charged for this connection when its turn came, not yet
    /// taken by the call that waited for them.
    private var grantedBytes = 0
    /// Reservations of calls answered since the last flush, still charged to the daemon's
    /// budget: the flush charges their answers' bytes against them and gives back the rest.
    private var prepaid = 0

    init(router: any CallRouter, peer: PeerCredentials, limits: Limits, daemonBudget: AnswerBudget, logger: Logger) {
        self.router = router
        self.peer = peer
        self.limits = limits
        self.daemonBudget = daemonBudget
        self.logger = logger
        self.logger[metadataKey: "peer.pid"] = "\(peer.pid)"
        self.logger[metadataKey: "peer.uid"] = "\(peer.uid)"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        taskExecutor = EventLoopTaskExecutor(context.eventLoop)
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
        if waitingForRoom {
            // A read that was under way when reading stopped: kept behind the waiting frame.
            if partial != nil { partial!.writeBuffer(&incoming) } else { partial = incoming }
            return
        }
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
        while !closing, !waitingForRoom, buffer.readableBytes >= Frame.headerSize,
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
            let start = buffer.readerIndex
            buffer.moveReaderIndex(forwardBy: Frame.headerSize)
            handleFrame(context: context, payload: buffer.readSlice(length: length)!)
            if waitingForRoom {
                // No room for its answer: the frame is handled again when there is.
                buffer.moveReaderIndex(to: start)
                break
            }
            completed = true
        }
        guard !closing else { return }
        if completed || waitingForRoom {
            frameTimer?.cancel()
            frameTimer = nil
        }
        if buffer.readableBytes > 0 {
            partial = buffer
            // The client sent the waiting frame whole; only a frame it has not finished is timed.
            if !waitingForRoom { armFrameTimer(context: context) }
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
        let method = TwoFactorMethod(utf8: fields.method)
        let reservation = method?.answerReservation ?? TwoFactorMethod.shortAnswerReservation
        guard let charged = takeRoom(context: context, reservation) else { return }
        if !startCall(context: context, fields, method: method, reservation: reservation, charged: charged) {
            // Answered at once: the answer, in `output`, is paid from the reservation.
            prepaid += charged
        }
    }

    /// Answers the call at once (false), or starts its task (true), which keeps `reservation`
    /// (and `charged` of it in the daemon's budget) until it returns.
    private func startCall(
        context: ChannelHandlerContext, _ fields: RequestFields, method: TwoFactorMethod?, reservation: Int,
        charged: Int
    ) -> Bool {
        let callID = fields.callID
        guard let method else {
            let name = String(decoding: fields.method, as: UTF8.self)
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .unimplemented, message: "unknown method \(name.prefix(200))")))
            return false
        }
        if quiescing {
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .unavailable, message: "otpd is shutting down")))
            return false
        }
        guard inFlight.isEmpty || inFlight[callID] == nil else {
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .invalidArgument, message: "call id \(callID) is already in flight on this connection")))
            return false
        }
        guard inFlight.count < limits.maximumInFlight else {
            send(
                context: context, callID: callID,
                .failure(
                    RPCError(
                        code: .resourceExhausted, message: "too many calls in flight on this connection")))
            return false
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
            return false
        }

        lastSerial &+= 1
        let serial = lastSerial
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        var call = Call(serial: serial, reservation: reservation, charged: charged)
        reserved += reservation
        reservedCharged += charged
        if deadlineMs > 0 {
            call.deadlineTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(deadlineMs))) {
                let (handler, context) = bound.value
                handler.deadlinePassed(context: context, callID: callID, serial: serial, deadlineMs: deadlineMs)
            }
        }
        let eventLoop = context.eventLoop
        let router = self.router
        call.task = Task(executorPreference: taskExecutor) {
            let result = await router.handle(payload: payload, context: callContext)
            let finish: @Sendable () -> Void = {
                let (handler, context) = bound.value
                handler.finished(context: context, callID: callID, serial: serial, result: result)
            }
            // The task normally ends on the loop (its preferred executor); otherwise, hop there.
            if eventLoop.inEventLoop { finish() } else { eventLoop.execute(finish) }
        }
        inFlight[callID] = call
        return true
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
            // The client has sent everything: answer what is in flight (and what waits for
            // room), then close.
            inputClosed = true
            if !waitingForRoom { endOfInput(context: context) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// The client has sent everything and every whole frame has been handled: bytes left over
    /// are a frame it did not finish.
    private func endOfInput(context: ChannelHandlerContext) {
        if let partial, partial.readableBytes > 0 {
            let header = partial.viewBytes(at: partial.readerIndex, length: Frame.headerSize)
            let expected = header.flatMap {
                try? Frame.payloadLength(header: $0, maximumPayload: limits.maximumFrame)
            }
            malformed(
                context: context,
                .truncated(received: partial.readableBytes, expected: Frame.headerSize + (expected ?? 0)))
            return
        }
        closeIfDone(context: context)
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
        updateReading(context: context)
        context.fireChannelWritabilityChanged()
    }

    // MARK: Answer budgets

    /// Takes room for a call's answer, `reservation` bytes, from the connection's budget and
    /// the daemon's, and returns what the daemon's budget was charged; or returns nil and
    /// waits for room: the caller leaves the frame unread, and reading stops.
    ///
    /// A connection that holds nothing may always start one call, however large its answer,
    /// as far as its own budget goes; and one short call without the daemon's budget (charged
    /// nothing), so clients that never read can fill the daemon's budget but not keep an
    /// administrator who sends a Verify and reads its answer from logging in. That is at most
    /// 1 KiB per connection beside the ceiling, which `maximumConnections` bounds; and it
    /// keeps the common call (one at a time on a connection) off the shared budget's lock.
    private func takeRoom(context: ChannelHandlerContext, _ reservation: Int) -> Int? {
        let held = self.held
        guard held == 0 || held + reservation <= limits.answerBytes else {
            waitForRoom(context: context)
            return nil
        }
        if held == 0 && reservation <= TwoFactorMethod.shortAnswerReservation { return 0 }
        if grantedBytes >= reservation {
            grantedBytes -= reservation
            return reservation
        }
        if daemonBudget.tryCharge(reservation) { return reservation }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let waiter = AnswerBudget.Waiter(id: ObjectIdentifier(self), bytes: reservation) { bytes in
            eventLoop.execute {
                let (handler, context) = bound.value
                handler.granted(context: context, bytes)
            }
        }
        guard daemonBudget.charge(reservation, orQueue: waiter) else {
            waitForRoom(context: context)
            return nil
        }
        return reservation
    }

    /// Answer bytes the connection holds in its own budget now.
    private var held: Int { reserved + unwritten + (output?.readableBytes ?? 0) }

    /// Gives back the room a call took, when it leaves no answer to pay for.
    private func giveBack(_ call: Call) {
        reserved -= call.reservation
        reservedCharged -= call.charged
        if call.charged > 0 { daemonBudget.release(call.charged) }
    }

    private func waitForRoom(context: ChannelHandlerContext) {
        waitingForRoom = true
        updateReading(context: context)
    }

    /// The daemon's budget charged `bytes` for this connection, whose turn in its queue came:
    /// the waiting frame takes them, and what it does not take is given back.
    private func granted(context: ChannelHandlerContext, _ bytes: Int) {
        grantedBytes += bytes
        resumeIfWaiting(context: context)
        if grantedBytes > 0 {
            daemonBudget.release(grantedBytes)
            grantedBytes = 0
        }
    }

    /// Room may have been made: handles the frames that waited, then reads again if they all
    /// found room. Flushing their answers can itself make room (a flush the socket takes at
    /// once, or one that is not tracked), so it goes on while it does; a call made while it
    /// runs (from a write that completes inside the flush) is left to this loop.
    private func resumeIfWaiting(context: ChannelHandlerContext) {
        guard !resuming else { return }
        resuming = true
        defer { resuming = false }
        while waitingForRoom, !closing, context.channel.isActive {
            waitingForRoom = false
            if var buffer = partial.take() {
                readFrames(context: context, from: &buffer)
            }
            let before = held
            flushIfNeeded(context: context)
            guard waitingForRoom, held < before else { break }
        }
        guard !closing, !waitingForRoom else { return }
        if inputClosed {
            endOfInput(context: context)
        } else {
            updateReading(context: context)
        }
    }

    /// Reads while the client's answers leave room and NIO's write buffer is under its
    /// high-water mark. Switching automatic reading costs nothing per call, unlike holding
    /// back each read.
    private func updateReading(context: ChannelHandlerContext) {
        let read = !waitingForRoom && context.channel.isWritable
        guard read != reading, !closing else { return }
        reading = read
        do {
            try context.channel.syncOptions?.setOption(.autoRead, value: read)
        } catch {
            close(context: context)
        }
    }

    /// `bytes` flushed earlier have been written to the socket (or dropped with the connection).
    private func written(context: ChannelHandlerContext, _ bytes: Int) {
        unwritten -= bytes
        daemonBudget.release(bytes)
        resumeIfWaiting(context: context)
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
        closing = true
        // The tasks' answers will find no call; their room is given back now. (Flushed bytes
        // are given back as NIO fails their writes.)
        daemonBudget.stopWaiting(ObjectIdentifier(self))
        daemonBudget.release(reservedCharged + grantedBytes + prepaid)
        reserved = 0
        reservedCharged = 0
        grantedBytes = 0
        prepaid = 0
        partial = nil
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
        if call.answered {
            giveBack(call)
        } else {
            call.deadlineTimer?.cancel()
            send(context: context, callID: callID, result)
            // The answer is paid from the reservation: the daemon's budget never counts both.
            reserved -= call.reservation
            reservedCharged -= call.charged
            prepaid += call.charged
            flushIfNeeded(context: context)
        }
        resumeIfWaiting(context: context)
        closeIfDone(context: context)
    }

    /// Closes a connection that has nothing left to answer once the daemon is shutting down or
    /// the client has sent everything (and no frame of it waits for room).
    private func closeIfDone(context: ChannelHandlerContext) {
        guard inFlight.isEmpty else { return }
        if quiescing || (inputClosed && !waitingForRoom) { close(context: context) }
    }

    /// Encodes the answer to call `callID` straight into the output buffer: the response
    /// envelope with the handler's bytes, or with the error's status and detail.
    private func send(context: ChannelHandlerContext, callID: UInt64, _ result: Result<[UInt8], RPCError>) {
        guard !closing else { return }
        let payloadBytes: Int
        switch result {
        case .success(let payload): payloadBytes = payload.count
        case .failure(let error): payloadBytes = error.message.utf8.count + 64
        }
        if payloadBytes > Self.retainedOutputCapacity {
            // A large answer gets a buffer of its own size: appended to the shared one, it
            // would double that buffer's capacity, and the memory held would be up to twice
            // the bytes the budgets count. Earlier answers are flushed first, in order.
            flushIfNeeded(context: context)
            output = context.channel.allocator.buffer(capacity: payloadBytes + 64)
        }
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
        guard var buffer = output, buffer.readableBytes > 0 else {
            if prepaid > 0 {
                daemonBudget.release(prepaid)
                prepaid = 0
            }
            return
        }
        output = nil
        let bytes = buffer.readableBytes
        // Short answers to a client that keeps up are not tracked: the socket almost always
        // takes them at once, and what it does not take stays under NIO's high-water mark
        // (64 KiB), past which the connection is not read. Large answers, and every answer
        // once the connection is not writable, are tracked to the byte until written: their
        // room is kept, and a write promise gives it back. (A promise per flush cost 15 % of
        // the CPU per Health call.)
        guard bytes > Self.retainedOutputCapacity || !context.channel.isWritable else {
            if prepaid > 0 {
                daemonBudget.release(prepaid)
                prepaid = 0
            }
            context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
            reuse(&buffer)
            // The flushed bytes left the connection's budget: frames waiting for room may fit.
            if waitingForRoom { resumeIfWaiting(context: context) }
            return
        }
        unwritten += bytes
        if bytes > prepaid {
            daemonBudget.charge(bytes - prepaid)
        } else if prepaid > bytes {
            daemonBudget.release(prepaid - bytes)
        }
        prepaid = 0
        // Completes when the socket has taken the bytes, or fails when the connection closes
        // first: either way their room is given back exactly once.
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).whenComplete { _ in
            let (handler, context) = bound.value
            handler.written(context: context, bytes)
        }
        reuse(&buffer)
    }

    /// Keeps a flushed buffer's storage for the next answers, unless it grew large.
    private func reuse(_ buffer: inout ByteBuffer) {
        // A write the socket took at once completes inside `writeAndFlush`, and `written` may
        // then have handled waiting frames and flushed their answers with a buffer of its own.
        guard output == nil, buffer.capacity <= Self.retainedOutputCapacity else { return }
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
