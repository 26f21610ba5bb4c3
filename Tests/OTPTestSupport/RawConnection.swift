import Foundation
public import OTPProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking client socket for sending bytes the client library never would: broken frames,
/// call ids of the test's choosing, floods. Reads time out after `receiveTimeout` seconds.
public final class RawConnection: @unchecked Sendable {
    // @unchecked Sendable: `fd` never changes; `pending` is used only by the read methods, and
    // a test reads from one thread at a time (it awaits each read before starting the next).
    public let fd: Int32
    private var pending = FrameDecoder(maximumPayload: 1 << 20)

    public init(path: String, receiveTimeout: Int = 5) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, byte) in path.utf8.enumerated() { buffer[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let code = POSIXErrorCode(rawValue: errno) ?? .EIO
            Glibc.close(fd)
            throw POSIXError(code)
        }
        var timeout = timeval(tv_sec: receiveTimeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    /// One `send(2)`: the bytes the socket takes at once.
    public func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Sends every byte on `fd`, blocking while the daemon does not read (gives up on an
    /// error). Static, so another thread can write while this connection reads.
    public static func sendAll(fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }

    /// Half-closes the sending side (the daemon sees EOF).
    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Closes both directions (the daemon sees the connection end).
    public func hangUp() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Reads one frame's payload, or nil at EOF or timeout.
    public func readFrame() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let frame = try? pending.next() { return frame }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            pending.append(buffer[0..<n])
        }
    }

    /// Reads one response envelope.
    public func readResponse() -> Response? {
        readFrame().flatMap { try? Response(serialized: $0) }
    }

    /// Reads `count` response envelopes (fewer at EOF or timeout).
    public func readResponses(_ count: Int) -> [Response] {
        var responses: [Response] = []
        while responses.count < count, let frame = readFrame() {
            if let response = try? Response(serialized: frame) { responses.append(response) }
        }
        return responses
    }

    /// True when the peer closes the connection (EOF within the timeout) after any frames.
    public func isClosedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

/// A request frame as the client library would send it.
public func requestFrame(callID: UInt64, method: String, payload: [UInt8] = [], deadlineMs: UInt32 = 0) -> [UInt8] {
    Frame.encode(Request(callId: callID, method: method, deadlineMs: deadlineMs, payload: payload).serialized())
}
