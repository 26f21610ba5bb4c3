import Foundation
import Logging
import NIOPosix
import OTPClient
import OTPProtocol
import OTPServer
import OTPTestSupport
import ServiceLifecycle
import Testing

/// A router whose `Verify` waits as long as the request's code says (in milliseconds), so
/// tests can make calls slow on purpose; `Health` is answered inline.
struct SlowRouter: CallRouter {
    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
        context.method == .health ? .success(HealthResponse(status: "SERVING").serialized()) : nil
    }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        guard let request = try? VerifyRequest(serialized: payload) else {
            return .failure(RPCError(code: .invalidArgument, message: "bad request"))
        }
        try? await Task.sleep(for: .milliseconds(Int(request.code) ?? 0))
        return .success(VerifyResponse(success: true, attemptsLeft: UInt32(Int(request.code) ?? 0)).serialized())
    }
}

/// A router that answers whether each call ran on an event loop's thread, both when it started
/// and after it awaited something (`success`: on one both times).
struct WhereRouter: CallRouter {
    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? { nil }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        let started = MultiThreadedEventLoopGroup.currentEventLoop != nil
        try? await Task.sleep(for: .milliseconds(5))
        let resumed = MultiThreadedEventLoopGroup.currentEventLoop != nil
        return .success(VerifyResponse(success: started && resumed).serialized())
    }
}

/// The socket server in-process, with a router that can be slow.
@Suite("socket server", .serialized)
struct ServerTests {
    private func withServer(_ body: (String) async throws -> Void) async throws {
        try await withRunningServer(router: SlowRouter()) { path, _ in try await body(path) }
    }

    @Test func aCallPastItsDeadlineIsAnsweredDeadlineExceeded() async throws {
        try await withServer { (path: String) async throws in
            let client = OTPClient(socketPath: path, defaultDeadline: nil)
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.verify(VerifyRequest(code: "2000"), deadline: .milliseconds(100))
            }
            #expect(error?.code == .deadlineExceeded)
            let message = error?.message ?? ""
            #expect(message.contains("deadline of 100 ms exceeded"), "the daemon, not the client, answered")
            // Without a deadline the same call completes.
            #expect(try await client.verify(VerifyRequest(code: "50")).success)
            await client.close()
        }
    }

    /// A call's task runs on the event loop of its connection (`EventLoopTaskExecutor`), not on
    /// the global pool: started there and resumed there after an await, so its answer is
    /// written without a hop back to the loop.
    @Test func callsRunOnTheirConnectionsEventLoop() async throws {
        try await withRunningServer(router: WhereRouter()) { (path: String, _) async throws in
            let client = OTPClient(socketPath: path, defaultDeadline: .seconds(10))
            for _ in 0..<3 { #expect(try await client.verify(VerifyRequest(code: "1")).success) }
            await client.close()
        }
    }

    @Test func answersComeBackOutOfOrderMatchedByCallID() async throws {
        try await withServer { (path: String) async throws in
            let client = OTPClient(socketPath: path, defaultDeadline: .seconds(10))
            let order = try await withThrowingTaskGroup(of: UInt32.self) { group in
                // 3 s, not less: on a loaded 2-core machine the fast call was seen to take over
                // half a second to be dispatched, and the test then failed for no fault.
                group.addTask { try await client.verify(VerifyRequest(code: "3000")).attemptsLeft }
                try await Task.sleep(for: .milliseconds(50))
                group.addTask { try await client.verify(VerifyRequest(code: "10")).attemptsLeft }
                var order: [UInt32] = []
                for try await delay in group { order.append(delay) }
                return order
            }
            #expect(order == [10, 3000], "the fast call overtook the slow one on the same connection")
            await client.close()
        }
    }

    @Test func gracefulShutdownFinishesCallsInFlight() async throws {
        var socketPath = ""
        try await withRunningServer(router: SlowRouter()) { path, group in
            socketPath = path
            let client = OTPClient(socketPath: path, defaultDeadline: .seconds(10))
            #expect(try await client.health().status == "SERVING")
            async let slow = client.verify(VerifyRequest(code: "500"))
            try await Task.sleep(for: .milliseconds(100))
            await group.triggerGracefulShutdown()
            #expect(try await slow.success, "the call in flight was answered before the server stopped")
            await client.close()
        }
        // withRunningServer returns once the server has stopped.
        #expect(!FileManager.default.fileExists(atPath: socketPath))
    }
}
