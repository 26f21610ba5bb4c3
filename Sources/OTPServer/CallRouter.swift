public import OTPProtocol

/// What the daemon knows about the caller of one call.
public struct CallContext: Sendable {
    /// The connection's peer, from `SO_PEERCRED`.
    public var peer: PeerCredentials
    /// The call id the client chose.
    public var callID: UInt64
    /// The method called.
    public var method: TwoFactorMethod
    /// When the client stops waiting, if it said.
    public var deadline: ContinuousClock.Instant?
}

/// Answers decoded calls. The server owns framing, envelopes, deadlines and connection limits;
/// a router owns what each method does.
public protocol CallRouter: Sendable {
    /// A fast path run on the connection's event loop for calls that need no I/O (for example
    /// `Health`). Returns `nil` to send the call to `handle` instead. Must never block.
    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>?

    /// Answers a call off the event loop: the encoded response message, or the error.
    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError>
}
