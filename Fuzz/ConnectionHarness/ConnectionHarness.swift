import Logging
import NIOCore
import NIOEmbedded
package import OTPProtocol
package import OTPServer

/// An invariant of the connection handler that one input broke.
public struct ConnectionViolation: Error, CustomStringConvertible {
    /// What went wrong, with the scenario the input described.
    public let description: String
}

/// Feeds whole connections to otpd's connection handler (`ConnectionHandler`, on an
/// `EmbeddedChannel` whose time moves only when the harness moves it) and checks what must hold
/// for any client's bytes.
///
/// An input is a 2-byte header and the byte stream the client sends:
///
/// - header byte 0, bit 0: the client then half-closes (`ChannelEvent.inputClosed`);
///   bit 1: the loop's time then moves past the frame timeout; bit 2: the largest frame is
///   256 bytes (the smallest `max_frame_bytes`) rather than 64 KiB; bit 3: the connection's
///   answer budget is 2 KiB rather than 1 MiB (below otpd's smallest `answer_kib_per_connection`,
///   64, on purpose: answers then wait for room all the time; `SocketServer` takes any value);
///   bits 4–7: the largest read (1 to 1,024 bytes, see `largestReads`);
/// - header byte 1: seeds the sizes of the reads the stream is cut into.
///
/// The router answers `Health` and `Verify` inline and every other method with an error, so
/// every call is answered on the loop, in order. Checked, for any input:
///
/// - the stream delivered as one read and cut into the derived reads gives the same bytes
///   written and the same final state (open or closed);
/// - every write is whole frames of response envelopes that decode;
/// - every call id answered was sent in a whole frame, and is answered at most as many times as
///   it was sent; call id 0 beyond the requests that carried it only as the last answer, a
///   protocol error (a status), after which the connection is closed;
/// - nothing is written once the connection is closed;
/// - exactly the answers a model of the protocol predicts: one per whole, decodable frame, in
///   order, up to the first malformed frame (bad flag, oversize length, undecodable envelope),
///   which gets the protocol error and the close; input that ends (half-close) inside a frame
///   gets the protocol error too; a frame left unfinished past the frame timeout closes the
///   connection without an answer; otherwise the connection stays open.
///
/// The handler must never crash either (libFuzzer and AddressSanitizer watch that). libFuzzer
/// drives this through `otpfuzz-connection` (`scripts/fuzz.sh`); the unit tests replay the
/// committed seeds (`Fuzz/connection-seeds/`) and deterministic mutations of them.
public enum ConnectionHarness {
    /// The header bytes before the stream.
    public static let headerSize = 2

    /// The largest read, chosen by the high bits of header byte 0.
    static let largestReads = [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 256, 512, 1000, 1024]

    static let frameTimeout = TimeAmount.seconds(10)
    static let idleTimeout = TimeAmount.seconds(300)

    /// What an input describes.
    struct Scenario: CustomStringConvertible {
        var stream: [UInt8]
        var reads: [Int]
        var inputClosed: Bool
        var pastFrameTimeout: Bool
        var maximumFrame: Int
        var answerBytes: Int

        init(_ bytes: [UInt8]) {
            let flags = bytes.count >= ConnectionHarness.headerSize ? bytes[0] : 0
            var state = UInt64(bytes.count >= ConnectionHarness.headerSize ? bytes[1] : 0) &+ 0x9E37_79B9
            stream = Array(bytes.dropFirst(ConnectionHarness.headerSize))
            inputClosed = flags & 0x01 != 0
            pastFrameTimeout = flags & 0x02 != 0
            maximumFrame = flags & 0x04 != 0 ? 256 : 64 * 1024
            answerBytes = flags & 0x08 != 0 ? 2 * 1024 : 1024 * 1024
            let largest = ConnectionHarness.largestReads[Int(flags >> 4)]
            reads = []
            var left = stream.count
            while left > 0 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let size = min(left, 1 + Int((state >> 33) % UInt64(largest)))
                reads.append(size)
                left -= size
            }
        }

        var description: String {
            "\(stream.count) bytes in \(reads.count) reads (largest \(reads.max() ?? 0)), "
                + "half-close \(inputClosed), past the frame timeout \(pastFrameTimeout), "
                + "frames up to \(maximumFrame), answer budget \(answerBytes)"
        }
    }

    /// What the client saw.
    struct Outcome: Equatable {
        var written: [UInt8] = []
        var open = true
    }

    /// Checks every invariant for one input.
    public static func check(_ bytes: [UInt8]) throws(ConnectionViolation) {
        let scenario = Scenario(bytes)
        let whole = try run(scenario, reads: scenario.stream.isEmpty ? [] : [scenario.stream.count])
        let cut = try run(scenario, reads: scenario.reads)
        guard whole == cut else {
            throw ConnectionViolation(
                description: "\(scenario): in one read \(whole.written.count) bytes written and "
                    + "\(whole.open ? "open" : "closed"); in the cut reads \(cut.written.count) bytes and "
                    + "\(cut.open ? "open" : "closed")")
        }
        let responses = try decodeResponses(whole.written, scenario)
        try checkCallIDs(responses, open: whole.open, scenario)
        try checkModel(responses, open: whole.open, scenario)
    }

    // MARK: Running a connection

    /// Answers `Health` ("SERVING") and `Verify` (10 bytes) inline, everything else with
    /// UNIMPLEMENTED; never runs a task (the embedded loop is not thread-safe). The connection
    /// handler's unit tests drive it with this router too.
    package struct InlineRouter: CallRouter {
        package init() {}

        package func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
            switch context.method {
            case .health: .success(HealthResponse(status: "SERVING").serialized())
            case .verify: .success([UInt8](repeating: 0x43, count: 10))
            default: .failure(RPCError(code: .unimplemented, message: "not in the connection harness"))
            }
        }

        package func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
            .failure(RPCError(code: .internal, message: "no task in the connection harness"))
        }
    }

    private static let logger = Logger(label: "otpfuzz-connection") { _ in SwiftLogNoOpLogHandler() }

    /// One fresh connection fed the stream in `reads`, then the half-close and the time the
    /// scenario says.
    private static func run(_ scenario: Scenario, reads: [Int]) throws(ConnectionViolation) -> Outcome {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        defer {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            try? loop.syncShutdownGracefully()
        }
        var outcome = Outcome()
        do {
            try channel.pipeline.syncOperations.addHandler(
                ConnectionHandlerFactory.make(
                    router: InlineRouter(), maximumFrame: scenario.maximumFrame, frameTimeout: frameTimeout,
                    idleTimeout: idleTimeout, maximumInFlight: 16, answerBytes: scenario.answerBytes,
                    daemonAnswerBytes: 64 * 1024 * 1024, logger: logger))
            try channel.connect(to: SocketAddress(unixDomainSocketPath: "/otpfuzz.sock")).wait()
        } catch {
            throw ConnectionViolation(description: "could not set up the embedded connection: \(error)")
        }

        /// Runs one step and collects what it wrote; nothing may be written once closed.
        func step(_ what: String, _ body: () throws -> Void) throws(ConnectionViolation) {
            let wasOpen = channel.isActive
            do {
                try body()
                var written: [UInt8] = []
                while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                    written.append(contentsOf: buffer.readableBytesView)
                }
                guard wasOpen || written.isEmpty else {
                    throw ConnectionViolation(
                        description: "\(scenario): \(written.count) bytes written after the close, at \(what)")
                }
                outcome.written += written
            } catch let violation as ConnectionViolation {
                throw violation
            } catch {
                throw ConnectionViolation(description: "\(scenario): \(what) threw \(error)")
            }
        }

        var offset = 0
        for size in reads {
            // A closed connection is read no more (the socket is gone).
            guard channel.isActive else { break }
            let bytes = scenario.stream[offset..<offset + size]
            offset += size
            try step("a read of \(size) bytes") {
                try channel.writeInbound(channel.allocator.buffer(bytes: bytes))
            }
        }
        if scenario.inputClosed && channel.isActive {
            try step("the half-close") {
                channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            }
        }
        if scenario.pastFrameTimeout {
            try step("the frame timeout") {
                loop.advanceTime(by: frameTimeout + .milliseconds(1))
            }
        }
        outcome.open = channel.isActive
        return outcome
    }

    // MARK: Invariants

    /// The bytes written, as response envelopes: whole frames, every one decodable.
    private static func decodeResponses(_ written: [UInt8], _ scenario: Scenario) throws(ConnectionViolation)
        -> [Response]
    {
        var decoder = FrameDecoder(maximumPayload: Int(UInt32.max))
        decoder.append(written)
        var responses: [Response] = []
        do {
            while let payload = try decoder.next() {
                do {
                    responses.append(try Response(serialized: payload))
                } catch {
                    throw ConnectionViolation(
                        description: "\(scenario): answer \(responses.count + 1) does not decode: \(error)")
                }
            }
            try decoder.finish()
        } catch let error as FrameError {
            throw ConnectionViolation(
                description: "\(scenario): the bytes written are not whole frames after \(responses.count) answers: "
                    + "\(error)")
        } catch let violation as ConnectionViolation {
            throw violation
        } catch {
            throw ConnectionViolation(description: "\(scenario): \(error)")
        }
        return responses
    }

    /// The call ids of the whole, decodable frames before the first malformed one, in order;
    /// and how the stream ends.
    private static func requests(_ scenario: Scenario) -> (callIDs: [UInt64], ending: Ending) {
        let stream = scenario.stream
        var callIDs: [UInt64] = []
        var offset = 0
        while offset < stream.count {
            guard stream.count - offset >= Frame.headerSize else { return (callIDs, .unfinished) }
            let length: Int
            do {
                length = try Frame.payloadLength(
                    header: stream[offset..<offset + Frame.headerSize], maximumPayload: scenario.maximumFrame)
            } catch {
                return (callIDs, .malformed)
            }
            guard stream.count - offset - Frame.headerSize >= length else { return (callIDs, .unfinished) }
            let payload = Array(stream[offset + Frame.headerSize..<offset + Frame.headerSize + length])
            offset += Frame.headerSize + length
            // The same decoder, through the same pointer path, as the handler's.
            guard let request = try? payload.withUnsafeBytes({ bytes in try Request(bytes: bytes) }) else {
                return (callIDs, .malformed)
            }
            callIDs.append(request.callId)
        }
        return (callIDs, .whole)
    }

    enum Ending {
        /// The stream ends after a whole frame (or is empty).
        case whole
        /// The stream ends inside a frame.
        case unfinished
        /// A frame is malformed; the bytes after it do not count.
        case malformed
    }

    /// Call ids answered were sent, at most as often as sent; an extra call id 0 only as the
    /// last answer, with a status, and then the connection is closed.
    private static func checkCallIDs(_ responses: [Response], open: Bool, _ scenario: Scenario)
        throws(ConnectionViolation)
    {
        var sent: [UInt64: Int] = [:]
        for callID in requests(scenario).callIDs { sent[callID, default: 0] += 1 }
        for (index, response) in responses.enumerated() {
            sent[response.callId, default: 0] -= 1
            guard sent[response.callId]! < 0 else { continue }
            let isLast = index == responses.count - 1
            guard response.callId == 0, isLast, response.error != nil, !open else {
                throw ConnectionViolation(
                    description: "\(scenario): answer \(index + 1) of \(responses.count) has call id "
                        + "\(response.callId), not sent in a whole frame that many times"
                        + (response.callId == 0 ? " (a protocol error must be the last answer, then the close)" : ""))
            }
        }
    }

    /// Exactly the answers the protocol's model predicts, and the final state.
    private static func checkModel(_ responses: [Response], open: Bool, _ scenario: Scenario)
        throws(ConnectionViolation)
    {
        let (callIDs, ending) = requests(scenario)
        let protocolError: Bool
        let closed: Bool
        switch ending {
        case .malformed:
            (protocolError, closed) = (true, true)
        case .unfinished:
            (protocolError, closed) = (scenario.inputClosed, scenario.inputClosed || scenario.pastFrameTimeout)
        case .whole:
            (protocolError, closed) = (false, scenario.inputClosed)
        }
        let expected = callIDs + (protocolError ? [0] : [])
        let answered = responses.map(\.callId)
        guard answered == expected, open == !closed else {
            throw ConnectionViolation(
                description: "\(scenario): expected the call ids \(expected.prefix(20)) (\(expected.count)) and "
                    + "\(closed ? "closed" : "open"), got \(answered.prefix(20)) (\(answered.count)) and "
                    + "\(open ? "open" : "closed")")
        }
        if protocolError, responses.last?.error == nil {
            throw ConnectionViolation(description: "\(scenario): the protocol error's answer has no error status")
        }
    }

    // MARK: Seeds

    /// Connections that start the fuzzer in the interesting places; also committed under
    /// `Fuzz/connection-seeds/`.
    public static func seeds() -> [(name: String, bytes: [UInt8])] {
        func frame(_ callId: UInt64, _ method: TwoFactorMethod, _ message: some WireMessage) -> [UInt8] {
            Frame.encode(
                Request(callId: callId, method: method.rawValue, deadlineMs: 250, payload: message.serialized())
                    .serialized())
        }
        let health = frame(1, .health, HealthRequest())
        let verify = frame(
            2, .verify, VerifyRequest(accountId: "admin-7", purpose: .login, code: "123456", challengeId: "c-1"))
        let other = frame(3, .setPhone, SetPhoneRequest(accountId: "a", phoneNumber: "+1 555"))
        let again = frame(1, .health, HealthRequest())
        let pipelined = health + verify + other + again
        // Header byte 0: bit 0 half-close, bit 1 past the frame timeout, bit 2 small frames,
        // bit 3 small answer budget, bits 4-7 the largest read; byte 1 seeds the read sizes.
        return [
            ("pipelined-one-read", [0xF0, 0] + pipelined),
            ("pipelined-byte-reads", [0x00, 0] + pipelined),
            ("frame-split", [0x50, 7] + health + verify),
            ("pipelined-half-close", [0xA1, 3] + pipelined),
            ("truncated-half-close", [0x31, 1] + health + Array(verify.dropLast(4))),
            ("truncated-header-half-close", [0x31, 2] + health + [0, 0, 0]),
            ("unfinished-past-timeout", [0x62, 5] + verify + Array(health.prefix(9))),
            ("oversize-header", [0x44, 9] + health + Frame.header(length: 257) + verify),
            ("oversize-default", [0x70, 4] + verify + Frame.header(length: 64 * 1024 + 1)),
            ("bad-flag", [0x80, 6] + health + [1] + Array(verify.dropFirst())),
            ("bad-envelope", [0x90, 8] + health + Frame.encode([0x0A, 0x05, 0x41]) + verify),
            ("empty-frames-small-budget", [0xC8, 11] + (0..<400).flatMap { _ in Frame.encode([]) }),
        ]
    }
}
