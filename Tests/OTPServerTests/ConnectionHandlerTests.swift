import ConnectionFuzzHarness
import Logging
import NIOCore
import NIOEmbedded
import OTPProtocol
import OTPTestSupport
import Testing

@testable import OTPServer

/// One `ConnectionHandler` on an `EmbeddedChannel`: time moves only when the test moves it.
struct EmbeddedConnection {
    static let limits = ConnectionHandler.Limits(
        maximumFrame: 64 * 1024, frameTimeout: .seconds(10), idleTimeout: .seconds(300), maximumInFlight: 16,
        answerBytes: 1024 * 1024)

    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel

    init(limits: ConnectionHandler.Limits = Self.limits) throws {
        channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(
            ConnectionHandler(
                router: ConnectionHarness.InlineRouter(), peer: PeerCredentials(pid: 1, uid: 0, gid: 0), limits: limits,
                daemonBudget: AnswerBudget(limit: 64 * 1024 * 1024), logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/otpd-test.sock")).wait()
    }

    /// Delivers `bytes` as one read (channelRead, then channelReadComplete).
    func receive(_ bytes: [UInt8]) throws {
        try channel.writeInbound(channel.allocator.buffer(bytes: bytes))
    }

    /// The buffers written since the last call, each as it was flushed.
    func writes() throws -> [ByteBuffer] {
        var writes: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { writes.append(buffer) }
        return writes
    }

    /// The responses written since the last call.
    func responses() throws -> [Response] {
        var decoder = FrameDecoder()
        for buffer in try writes() { decoder.append(buffer.readableBytesView) }
        var responses: [Response] = []
        while let frame = try decoder.next() { responses.append(try Response(serialized: frame)) }
        return responses
    }
}

@Suite("Connection handler on an embedded channel") struct ConnectionHandlerTests {
    static let calls: [UInt8] =
        requestFrame(callID: 1, method: TwoFactorMethod.health.rawValue)
        + requestFrame(callID: 2, method: TwoFactorMethod.verify.rawValue)
        + requestFrame(callID: 3, method: TwoFactorMethod.health.rawValue)

    /// However the bytes are cut into reads, the same calls are answered, in order.
    @Test func framesCutAtEveryByteAreAnsweredAlike() throws {
        for cut in 0...Self.calls.count {
            let connection = try EmbeddedConnection()
            try connection.receive(Array(Self.calls[..<cut]))
            try connection.receive(Array(Self.calls[cut...]))
            let responses = try connection.responses()
            #expect(responses.map(\.callId) == [1, 2, 3], "cut at \(cut)")
            #expect(responses.allSatisfy { $0.error == nil })
            #expect(connection.channel.isActive)
        }
    }

    /// The answers to the calls of one read leave in one write.
    @Test func theCallsOfOneReadAreAnsweredInOneWrite() throws {
        let connection = try EmbeddedConnection()
        try connection.receive(
            (1...50).flatMap { requestFrame(callID: UInt64($0), method: TwoFactorMethod.health.rawValue) })
        let writes = try connection.writes()
        #expect(writes.count == 1)
        var decoder = FrameDecoder()
        decoder.append(writes.first?.readableBytesView ?? ByteBuffer().readableBytesView)
        var ids: [UInt64] = []
        while let frame = try decoder.next() { ids.append(try Response(serialized: frame).callId) }
        #expect(ids == Array(1...50))
    }

    /// A frame whose bytes stop coming closes the connection when the frame timeout passes,
    /// and not before.
    @Test func aFrameThatStopsHalfwayClosesTheConnectionAtTheFrameTimeout() throws {
        let connection = try EmbeddedConnection()
        try connection.receive(Array(Self.calls.prefix(7)))
        connection.loop.advanceTime(by: .seconds(10) - .milliseconds(1))
        #expect(connection.channel.isActive)
        connection.loop.advanceTime(by: .milliseconds(1))
        #expect(!connection.channel.isActive)
    }

    /// A whole frame stops the frame timeout.
    @Test func aFrameThatArrivesWholeStopsItsTimeout() throws {
        let connection = try EmbeddedConnection()
        try connection.receive(Array(Self.calls.prefix(7)))
        connection.loop.advanceTime(by: .seconds(9))
        try connection.receive(Array(Self.calls.dropFirst(7)))
        connection.loop.advanceTime(by: .seconds(20))
        #expect(connection.channel.isActive)
        #expect(try connection.responses().map(\.callId) == [1, 2, 3])
    }

    /// A silent connection is closed between one and 1.25 idle timeouts; a read restarts it.
    @Test func aSilentConnectionIsClosedAfterTheIdleTimeout() throws {
        let connection = try EmbeddedConnection()
        connection.loop.advanceTime(by: .seconds(200))
        try connection.receive(requestFrame(callID: 1, method: TwoFactorMethod.health.rawValue))
        connection.loop.advanceTime(by: .seconds(299))
        #expect(connection.channel.isActive)
        connection.loop.advanceTime(by: .seconds(76))
        #expect(!connection.channel.isActive)
    }

    /// Input that ends inside a frame gets INVALID_ARGUMENT with call id 0, then the close;
    /// the calls before it are answered first.
    @Test func inputEndingInsideAFrameIsAnErrorAfterTheWholeCalls() throws {
        let connection = try EmbeddedConnection()
        try connection.receive(requestFrame(callID: 1, method: TwoFactorMethod.health.rawValue) + [0, 0, 0, 0, 9, 1])
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let responses = try connection.responses()
        #expect(responses.map(\.callId) == [1, 0])
        #expect(responses.last?.error?.code == .invalidArgument)
        #expect(!connection.channel.isActive)
    }

    /// A frame over the maximum is refused from its header, before its bytes arrive.
    @Test func aFrameOverTheMaximumIsRefusedFromItsHeader() throws {
        let connection = try EmbeddedConnection()
        try connection.receive(Frame.header(length: 64 * 1024 + 1))
        let responses = try connection.responses()
        #expect(responses.map(\.callId) == [0])
        #expect(responses.first?.error?.code == .resourceExhausted)
        #expect(!connection.channel.isActive)
    }

    /// When the daemon shuts down, a connection with nothing in flight closes at once.
    @Test func shuttingDownClosesAnIdleConnection() throws {
        let connection = try EmbeddedConnection()
        connection.channel.pipeline.fireUserInboundEventTriggered(QuiesceEvent())
        #expect(!connection.channel.isActive)
    }
}
