import NIOCore
import NIOHTTP1

/// Reads one HTTP request at a time, asks the stand-in what to answer, and answers (now, after
/// a delay, or not at all by closing the connection). Runs on its channel's event loop only.
final class StandInHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Bodies larger than this are answered 413 (Twilio's limit for a message is far smaller).
    static let maximumBodyBytes = 64 * 1024

    private let standIn: TwilioStandIn
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    /// A request was counted as in flight and has not been answered yet.
    private var awaitingAnswer = false

    init(standIn: TwilioStandIn) {
        self.standIn = standIn
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.removeAll(keepingCapacity: true)
            bodyTooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > Self.maximumBodyBytes {
                bodyTooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body.append(contentsOf: bytes)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            handle(context: context, head: head)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if awaitingAnswer {
            awaitingAnswer = false
            standIn.endAnswer()
        }
        context.fireChannelInactive()
    }

    private func handle(context: ChannelHandlerContext, head: HTTPRequestHead) {
        awaitingAnswer = true
        standIn.beginAnswer()
        if bodyTooLarge {
            respond(
                context: context, head: head,
                answer: TwilioStandIn.error(status: 413, code: nil, message: "Request Entity Too Large"))
            return
        }
        let request = TwilioStandIn.Request(
            method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) },
            body: body)
        switch standIn.handle(request) {
        case .drop:
            awaitingAnswer = false
            standIn.endAnswer()
            context.close(promise: nil)
        case .answer(let answer, nil):
            respond(context: context, head: head, answer: answer)
        case .answer(let answer, let delay?):
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                self.respond(context: context, head: head, answer: answer)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, answer: TwilioStandIn.Answer) {
        guard awaitingAnswer else { return }  // the connection closed meanwhile
        awaitingAnswer = false
        standIn.endAnswer()
        var buffer = context.channel.allocator.buffer(capacity: 512)
        buffer.writeString(answer.json.serialized)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        headers.add(name: "Twilio-Request-Id", value: TwilioStandIn.randomSID(prefix: "RQ"))
        for (name, value) in answer.headers { headers.add(name: name, value: value) }
        let keepAlive = head.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let responseHead = HTTPResponseHead(
            version: head.version, status: HTTPResponseStatus(statusCode: answer.status), headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}
