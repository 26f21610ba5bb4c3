// nio-echo: the second reference server of scripts/bench.sh.
//
// The C echo server (Benchmarks/baseline/echo-server.c) rebuilt on SwiftNIO the way otpd uses
// it: one event loop, one read per readiness event, one handler that splits the byte stream
// into frames (1 flag byte, 4-byte big-endian length, payload) and writes every complete frame
// back unchanged, flushing once per read. It does no protobuf and no dispatch, so
//   C echo → nio-echo   is what SwiftNIO and the Swift runtime cost per call, and
//   nio-echo → otpd     is what otpd's own work costs.
//
//   nio-echo --socket PATH
//
// SIGINT/SIGTERM end it (the benchmark removes the socket's directory).
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Echoes complete frames; a bad flag byte or an oversize length closes the connection.
final class FrameEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let maximumFrame = 64 * 1024
    private var pending: ByteBuffer?
    private var wrote = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if pending != nil {
            pending!.writeBuffer(&incoming)
            incoming = pending.take()!
        }
        while let flag = incoming.getInteger(at: incoming.readerIndex, as: UInt8.self),
            let length = incoming.getInteger(at: incoming.readerIndex + 1, endianness: .big, as: UInt32.self)
        {
            guard flag == 0, length <= Self.maximumFrame else {
                context.close(promise: nil)
                return
            }
            guard let frame = incoming.readSlice(length: 5 + Int(length)) else { break }
            context.write(wrapOutboundOut(frame), promise: nil)
            wrote = true
        }
        if incoming.readableBytes > 0 { pending = incoming }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if wrote {
            wrote = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }
}

@main
struct NIOEcho {
    static func main() throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 3, arguments[1] == "--socket" else {
            let usage = "usage: nio-echo --socket PATH\n"
            _ = usage.withCString { write(2, $0, strlen($0)) }
            exit(2)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FrameEchoHandler())
                }
            }
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .bind(unixDomainSocketPath: arguments[2], cleanupExistingSocketFile: true)
            .wait()
        try channel.closeFuture.wait()
    }
}
