internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOPosix
@_exported public import OTPProtocol

/// An async client for otpd over its Unix socket.
///
/// One client keeps one connection and carries any number of concurrent calls on it (answers
/// are matched by call id). The connection is opened on first use and opened again when it
/// was found broken; a call that was in flight when the connection broke fails with
/// `UNAVAILABLE` and is not retried (the daemon may have acted on it). Every failure is an
/// `RPCError`.
public final class OTPClient: Sendable {
    /// The daemon's socket.
    public let socketPath: String
    /// The deadline sent with calls that do not name one; `nil` sends none.
    public let defaultDeadline: Duration?
    private let maximumFrameSize: Int
    private let group: any EventLoopGroup
    private let connection = NIOLockedValueBox<EventLoopFuture<any Channel>?>(nil)
    private let nextCallID = NIOLockedValueBox<UInt64>(1)

    /// - Parameters:
    ///   - socketPath: the daemon's socket, e.g. `/run/otpd/otpd.sock`.
    ///   - defaultDeadline: sent as `deadline_ms` with every call that names none.
    ///   - maximumFrameSize: larger responses close the connection (default 64 KiB).
    public init(socketPath: String, defaultDeadline: Duration? = .seconds(30), maximumFrameSize: Int = 64 * 1024) {
        self.socketPath = socketPath
        self.defaultDeadline = defaultDeadline
        self.maximumFrameSize = maximumFrameSize
        self.group = MultiThreadedEventLoopGroup.singleton
    }

    /// Closes the connection; calls in flight fail with `UNAVAILABLE`. The next call reconnects.
    public func close() async {
        let current = connection.withLockedValue { value in
            defer { value = nil }
            return value
        }
        if let channel = try? await current?.get() {
            try? await channel.close()
        }
    }

    /// Sends one call of `method` (a descriptor from `TwoFactor`, e.g. `TwoFactor.verify`) and
    /// waits for its answer. The generated methods (`verify(_:deadline:)`, ...) call this.
    ///
    /// - Parameter deadline: how long the daemon (and this client) may take; `nil` uses
    ///   `defaultDeadline`.
    /// - Throws: `RPCError` with the daemon's status, `UNAVAILABLE` when the daemon cannot be
    ///   reached, `DEADLINE_EXCEEDED` when no answer came in time.
    public func call<Input, Output>(
        _ method: MethodDescriptor<Input, Output>, _ request: Input, deadline: Duration? = nil
    ) async throws(RPCError) -> Output {
        let payload = try await callRaw(method.method.rawValue, payload: request.serialized(), deadline: deadline)
        return try Output(serialized: payload)
    }

    /// Sends a call to any method name with a raw payload (for tests and diagnostics).
    public func callRaw(_ method: String, payload: [UInt8], deadline: Duration? = nil) async throws(RPCError)
        -> [UInt8]
    {
        let deadline = deadline ?? defaultDeadline
        let channel = try await channel()
        let callID = nextCallID.withLockedValue { id in
            defer { id &+= 1 }
            return id
        }
        var deadlineMs: UInt32 = 0
        if let deadline {
            let ms = deadline.components.seconds * 1000 + deadline.components.attoseconds / 1_000_000_000_000_000
            deadlineMs = UInt32(clamping: max(1, ms))
        }
        let envelope = Request(callId: callID, method: method, deadlineMs: deadlineMs, payload: payload).serialized()
        var frame = channel.allocator.buffer(capacity: envelope.count + Frame.headerSize)
        frame.writeBytes(Frame.header(length: envelope.count))
        frame.writeBytes(envelope)
        let promise = channel.eventLoop.makePromise(of: Response.self)
        // The client gives the daemon a little longer than the deadline to say DEADLINE_EXCEEDED.
        let timeout = deadlineMs > 0 ? TimeAmount.milliseconds(Int64(deadlineMs) + 250) : nil
        channel.writeAndFlush(OutboundCall(callID: callID, frame: frame, timeout: timeout, promise: promise))
            .whenFailure { error in
                promise.fail(RPCError(code: .unavailable, message: "cannot send to otpd: \(error)"))
            }
        let response: Response
        do {
            response = try await promise.futureResult.get()
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(code: .unavailable, message: "\(error)")
        }
        if let error = response.error { throw error }
        return response.payload
    }

    /// The open connection, connecting (again) when there is none or it was closed.
    private func channel() async throws(RPCError) -> any Channel {
        for _ in 0..<2 {
            let future = connection.withLockedValue { current in
                if let current { return current }
                let fresh = connect()
                current = fresh
                return fresh
            }
            do {
                let channel = try await future.get()
                if channel.isActive { return channel }
            } catch {
                forget(future)
                throw RPCError(code: .unavailable, message: "cannot connect to otpd at \(socketPath): \(error)")
            }
            forget(future)  // found broken: connect again
        }
        throw RPCError(code: .unavailable, message: "cannot keep a connection to otpd at \(socketPath)")
    }

    private func forget(_ future: EventLoopFuture<any Channel>) {
        connection.withLockedValue { current in
            if let existing = current, existing === future { current = nil }
        }
    }

    private func connect() -> EventLoopFuture<any Channel> {
        let maximumFrameSize = self.maximumFrameSize
        return ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(ResponseFrameDecoder(maximumPayload: maximumFrameSize)),
                        CallMultiplexer(),
                    ])
                }
            }
            .connect(unixDomainSocketPath: socketPath)
    }
}
