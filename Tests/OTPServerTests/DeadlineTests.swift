import Foundation
import Logging
import OTPProtocol
import OTPServer
import OTPTestSupport
import ServiceLifecycle
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A router that counts the handlers running and does what each Verify request's `code` says:
///
/// - `hold`: sleeps until cancelled, then waits until `release()` (work that cannot stop at once);
/// - `until-cancelled`: sleeps until cancelled;
/// - `ignore:<ms>:<n>`: takes `ms` milliseconds whatever happens, then answers `attemptsLeft = n`;
/// - `fast:<n>`: answers `attemptsLeft = n` at once.
final class ProbeRouter: CallRouter {
    struct Counters {
        var running = 0
        var mostRunning = 0
        var started = 0
        var cancelled = 0
        var returned = 0
        var released = false
        var held: [CheckedContinuation<Void, Never>] = []
    }

    private let counters = Mutex(Counters())

    var snapshot: Counters { counters.withLock { $0 } }

    /// Lets every `hold` handler return and wakes the sleeping ones (so a failing test ends).
    func release() {
        let held = counters.withLock { counters in
            counters.released = true
            defer { counters.held = [] }
            return counters.held
        }
        for waiter in held { waiter.resume() }
    }

    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
        context.method == .health ? .success(HealthResponse(status: "SERVING").serialized()) : nil
    }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        counters.withLock {
            $0.running += 1
            $0.started += 1
            $0.mostRunning = max($0.mostRunning, $0.running)
        }
        defer {
            counters.withLock {
                $0.running -= 1; $0.returned += 1
            }
        }
        let command = (try? VerifyRequest(serialized: payload))?.code.split(separator: ":") ?? []
        switch command.first {
        case "hold":
            await sleepUntilCancelled()
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let resumeNow = counters.withLock { counters in
                    if !counters.released { counters.held.append(waiter) }
                    return counters.released
                }
                if resumeNow { waiter.resume() }
            }
            return .failure(RPCError(code: .unavailable, message: "cancelled"))
        case "until-cancelled":
            await sleepUntilCancelled()
            return .failure(RPCError(code: .unavailable, message: "cancelled"))
        case "ignore":
            let milliseconds = Int(command[1])!
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { done.resume() }
            }
            return .success(VerifyResponse(success: true, attemptsLeft: UInt32(command[2])!).serialized())
        case "fast":
            return .success(VerifyResponse(success: true, attemptsLeft: UInt32(command[1])!).serialized())
        default:
            return .failure(RPCError(code: .invalidArgument, message: "unknown command"))
        }
    }

    /// Sleeps until the task is cancelled (counted) or, at the latest, until `release()`.
    private func sleepUntilCancelled() async {
        while !Task.isCancelled && !counters.withLock({ $0.released }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if Task.isCancelled { counters.withLock { $0.cancelled += 1 } }
    }
}

/// A blocking client socket for sending envelopes the client library never would (call ids of
/// the test's choosing). Its blocking reads and writes run on threads of their own, never on
/// the concurrency pool that runs the handlers.
final class RawSocket: @unchecked Sendable {
    // @unchecked Sendable: `fd` never changes; `decoder` is used only by `read`, and a test
    // awaits each `read` before it starts the next, so one thread at a time touches it.
    let fd: Int32
    private var decoder = FrameDecoder(maximumPayload: 1 << 20)

    init(path: String) throws {
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
            Glibc.close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    /// Closes both directions (the daemon sees the connection end).
    func hangUp() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Sends one call.
    func send(callID: UInt64, _ method: TwoFactorMethod = .verify, code: String = "", deadlineMs: UInt32 = 0) async {
        await send(Self.frame(callID: callID, method, code: code, deadlineMs: deadlineMs))
    }

    static func frame(callID: UInt64, _ method: TwoFactorMethod = .verify, code: String = "", deadlineMs: UInt32 = 0)
        -> [UInt8]
    {
        let payload = method == .verify ? VerifyRequest(code: code).serialized() : []
        return Frame.encode(
            Request(callId: callID, method: method.rawValue, deadlineMs: deadlineMs, payload: payload).serialized())
    }

    /// Sends every byte, however long the daemon takes to read them.
    func send(_ bytes: [UInt8]) async {
        let fd = fd
        await onThread {
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
    }

    /// Reads `count` answers (fewer at EOF or after 10 s of silence).
    func read(_ count: Int) async -> [Response] {
        await onThread { [self] in
            var responses: [Response] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while responses.count < count {
                if let frame = try? decoder.next() {
                    if let response = try? Response(serialized: frame) { responses.append(response) }
                    continue
                }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                decoder.append(buffer[0..<n])
            }
            return responses
        }
    }

    /// Reads one answer.
    func read() async throws -> Response {
        try #require(await read(1).first, "no answer")
    }

    private func onThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: work()) }.start()
        }
    }
}

/// Calls end when their deadline or their connection ends: their task is cancelled, and they
/// hold their call id and their slot until it has stopped.
@Suite("call deadlines and cancellation", .serialized, .timeLimit(.minutes(2)))
struct DeadlineTests {
    private func withServer(
        router: ProbeRouter, maximumInFlight: Int = 512, _ body: (String) async throws -> Void
    ) async throws {
        let directory = try TemporaryDirectory(prefix: "otpd-dl").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/s.sock"
        var configuration = ServerConfiguration(listener: .path(path))
        configuration.maximumCallsInFlightPerConnection = maximumInFlight
        let server = SocketServer(
            configuration: configuration, router: router, statistics: ConnectionStatistics(),
            logger: Logger(label: "test"))
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: server)], logger: Logger(label: "test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for _ in 0..<200 where !FileManager.default.fileExists(atPath: path) {
                try await Task.sleep(for: .milliseconds(10))
            }
            // A failing test still stops the server (else the test would hang instead of failing).
            var failure: (any Error)?
            do { try await body(path) } catch { failure = error }
            router.release()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            if let failure { throw failure }
        }
    }

    /// Polls `condition` every millisecond for up to five seconds.
    private func waitUntil(_ comment: Comment, _ condition: () -> Bool) async throws {
        for _ in 0..<5000 where !condition() { try await Task.sleep(for: .milliseconds(1)) }
        try #require(condition(), comment)
    }

    /// A call past its deadline is answered DEADLINE_EXCEEDED and its handler is cancelled; its
    /// call id stays taken until the handler has returned, and is free again after.
    @Test func aCallPastItsDeadlineIsCancelledAndKeepsItsIDUntilItStops() async throws {
        let router = ProbeRouter()
        try await withServer(router: router) { path in
            let socket = try RawSocket(path: path)
            await socket.send(callID: 7, code: "hold", deadlineMs: 1)
            let expired = try await socket.read()
            #expect(expired.callId == 7)
            #expect(expired.error?.code == .deadlineExceeded)
            try await waitUntil("the handler saw its cancellation") { router.snapshot.cancelled == 1 }
            #expect(router.snapshot.returned == 0)

            await socket.send(callID: 7, code: "fast:1")
            let refused = try await socket.read()
            #expect(refused.callId == 7)
            #expect(refused.error?.code == .invalidArgument)
            #expect(router.snapshot.started == 1, "the refused call ran no handler")

            router.release()
            try await waitUntil("the held handler returned") { router.snapshot.returned == 1 }
            // The event loop frees the id right after the handler returns: retry until then.
            var answer: Response
            repeat {
                await socket.send(callID: 7, code: "fast:2")
                answer = try await socket.read()
            } while answer.error?.code == .invalidArgument
            #expect(answer.callId == 7)
            #expect(answer.error == nil)
            #expect(try VerifyResponse(serialized: answer.payload).attemptsLeft == 2)
        }
    }

    /// A slow handler that ignores cancellation finishes after its call was answered by the
    /// deadline: its answer is dropped, never delivered to a later call with the same id.
    @Test func theAnswerOfALateHandlerNeverReachesALaterCallWithItsID() async throws {
        let router = ProbeRouter()
        try await withServer(router: router) { path in
            let socket = try RawSocket(path: path)
            await socket.send(callID: 9, code: "ignore:300:1", deadlineMs: 1)
            #expect(try await socket.read().error?.code == .deadlineExceeded)
            // Right away, while the first handler runs: refused, not run.
            await socket.send(callID: 9, code: "ignore:600:2")
            let refused = try await socket.read()
            #expect(refused.callId == 9)
            #expect(refused.error?.code == .invalidArgument)

            try await waitUntil("the late handler returned") { router.snapshot.returned == 1 }
            var answer: Response
            repeat {
                await socket.send(callID: 9, code: "ignore:100:2")
                answer = try await socket.read()
            } while answer.error?.code == .invalidArgument
            #expect(answer.callId == 9)
            #expect(answer.error == nil)
            #expect(
                try VerifyResponse(serialized: answer.payload).attemptsLeft == 2, "the late answer went to the new call"
            )

            // Nothing else was sent: the next frame is the answer to this Health call.
            await socket.send(callID: 10, .health)
            #expect(try await socket.read().callId == 10)
            #expect(router.snapshot.started == 2)
        }
    }

    /// A flood of calls with 1 ms deadlines on one connection never has more handlers running
    /// than the per-connection limit: a call answered by its deadline holds its slot until its
    /// handler has returned. Every call is answered once, DEADLINE_EXCEEDED or
    /// RESOURCE_EXHAUSTED, and the connection serves normally afterwards.
    @Test func aFloodOfShortDeadlinesNeverRunsMoreHandlersThanTheLimit() async throws {
        let router = ProbeRouter()
        let limit = 16
        let count = 2000
        try await withServer(router: router, maximumInFlight: limit) { path in
            let socket = try RawSocket(path: path)
            let frames = (1...count).flatMap {
                RawSocket.frame(callID: UInt64($0), code: "until-cancelled", deadlineMs: 1)
            }
            async let sent: Void = socket.send(frames)
            let answers = await socket.read(count)
            await sent
            #expect(answers.count == count)
            #expect(Set(answers.map(\.callId)) == Set((1...count).map(UInt64.init)), "one answer per call")
            let codes = Dictionary(grouping: answers, by: { $0.error?.code }).mapValues(\.count)
            #expect(Set(codes.keys).isSubset(of: [.deadlineExceeded, .resourceExhausted]), "\(codes)")
            #expect((codes[.deadlineExceeded] ?? 0) >= 1)
            let counters = router.snapshot
            #expect(counters.mostRunning <= limit, "\(counters.mostRunning) handlers ran at once")
            #expect(counters.started == codes[.deadlineExceeded] ?? 0, "only calls given a slot ran")

            try await waitUntil("every handler returned") { router.snapshot.running == 0 }
            var answer: Response
            repeat {
                await socket.send(callID: UInt64(count + 1), code: "fast:3")
                answer = try await socket.read()
            } while answer.error?.code == .resourceExhausted
            #expect(answer.error == nil)
            #expect(answer.callId == UInt64(count + 1))
        }
    }

    /// When the connection closes, every handler still running on it is cancelled.
    @Test func closingTheConnectionCancelsItsHandlers() async throws {
        let router = ProbeRouter()
        try await withServer(router: router) { path in
            let socket = try RawSocket(path: path)
            for id in 1...5 { await socket.send(callID: UInt64(id), code: "until-cancelled") }
            try await waitUntil("five handlers run") { router.snapshot.running == 5 }
            socket.hangUp()
            try await waitUntil("every handler was cancelled") { router.snapshot.cancelled == 5 }
            try await waitUntil("every handler returned") { router.snapshot.running == 0 }
        }
    }

    /// Graceful shutdown waits for a handler whose call the deadline already answered: the
    /// connection closes only after it has returned.
    @Test func gracefulShutdownWaitsForCancelledHandlers() async throws {
        let router = ProbeRouter()
        var socket: RawSocket?  // open until the server has stopped
        try await withServer(router: router) { path in
            socket = try RawSocket(path: path)
            await socket!.send(callID: 1, code: "ignore:300:1", deadlineMs: 1)
            #expect(try await socket!.read().error?.code == .deadlineExceeded)
            #expect(router.snapshot.returned == 0)
        }
        #expect(router.snapshot.returned == 1, "the server stopped before the handler returned")
        withExtendedLifetime(socket) {}
    }
}
