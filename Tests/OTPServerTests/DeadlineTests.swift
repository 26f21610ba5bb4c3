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

/// The shared `RawConnection` with async sends and reads that block threads of their own, never
/// the concurrency pool that runs the handlers.
final class RawSocket: Sendable {
    private let connection: RawConnection

    init(path: String) throws {
        connection = try RawConnection(path: path, receiveTimeout: 10)
    }

    /// Closes both directions (the daemon sees the connection end).
    func hangUp() { connection.hangUp() }

    /// Sends one call.
    func send(callID: UInt64, _ method: TwoFactorMethod = .verify, code: String = "", deadlineMs: UInt32 = 0) async {
        await send(Self.frame(callID: callID, method, code: code, deadlineMs: deadlineMs))
    }

    static func frame(callID: UInt64, _ method: TwoFactorMethod = .verify, code: String = "", deadlineMs: UInt32 = 0)
        -> [UInt8]
    {
        requestFrame(
            callID: callID, method: method.rawValue,
            payload: method == .verify ? VerifyRequest(code: code).serialized() : [], deadlineMs: deadlineMs)
    }

    /// Sends every byte, however long the daemon takes to read them.
    func send(_ bytes: [UInt8]) async {
        let fd = connection.fd
        await onThread { RawConnection.sendAll(fd: fd, bytes) }
    }

    /// Reads `count` answers (fewer at EOF or after 10 s of silence).
    func read(_ count: Int) async -> [Response] {
        await onThread { [connection] in connection.readResponses(count) }
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
        try await withRunningServer(
            router: router, configure: { $0.maximumCallsInFlightPerConnection = maximumInFlight },
            beforeShutdown: { router.release() }
        ) { path, _ in try await body(path) }
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
            // 2 s: the next call must arrive while this handler still runs; beside the rest of
            // the suite, 300 ms were once not enough.
            await socket.send(callID: 9, code: "ignore:2000:1", deadlineMs: 1)
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
