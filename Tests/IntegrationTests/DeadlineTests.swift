import Foundation
import OTPClient
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Calls end when their deadline ends, against the real daemon and its store.
@Suite("deadlines against the daemon")
struct DaemonDeadlineTests {
    /// A flood of Verify calls with 1 ms deadlines on one connection: every call is answered
    /// once, every wrong guess answered counts (as may one the deadline overtook after its
    /// commit), no call refused for the in-flight limit counts, and the daemon serves a normal
    /// login right after.
    @Test func aFloodOfOneMillisecondVerifiesLeavesTheDaemonHealthy() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS + "[server]\nmax_calls_in_flight = 16\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        try await daemon.enrollPhone(client, "a")
        try await daemon.enrollPhone(client, "flood", number: "+15551234568")
        let login = try await client.startChallenge(StartChallengeRequest(accountId: "a", purpose: .login))
        let flooded = try await client.startChallenge(StartChallengeRequest(accountId: "flood", purpose: .login))
        let floodCode = try daemon.code(for: flooded.challengeId)
        let wrong = floodCode == "000000" ? "111111" : "000000"

        let count = 2000
        let raw = try RawConnection(path: daemon.socket)
        let payload = VerifyRequest(accountId: "flood", purpose: .login, code: wrong, challengeId: flooded.challengeId)
            .serialized()
        let frames = (1...count).flatMap {
            requestFrame(callID: UInt64($0), method: TwoFactorMethod.verify.rawValue, payload: payload, deadlineMs: 1)
        }
        let fd = raw.fd
        let writer = Thread { RawConnection.sendAll(fd: fd, frames) }
        writer.start()
        // Blocking reads on a thread of their own, not on the concurrency pool other tests share.
        let responses = await withCheckedContinuation { (done: CheckedContinuation<[Response], Never>) in
            Thread { done.resume(returning: raw.readResponses(count)) }.start()
        }
        var codes: [RPCError.Code?: Int] = [:]
        var answered: Set<UInt64> = []
        for response in responses {
            answered.insert(response.callId)
            codes[response.error?.code, default: 0] += 1
        }
        #expect(responses.count == count, "an answer is missing")
        #expect(answered.count == count)
        #expect(Set(codes.keys).isSubset(of: [nil, .deadlineExceeded, .resourceExhausted]), "\(codes)")

        #expect(try await client.health().status == "SERVING")
        let status = try await client.getStatus(GetStatusRequest(accountId: "flood"))
        let run = count - (codes[.resourceExhausted] ?? 0)
        #expect(Int(status.consecutiveFailures) <= run, "a refused call counted as an attempt")
        #expect(Int(status.consecutiveFailures) >= codes[nil] ?? 0, "an answered wrong guess did not count")
        let verified = try await client.verify(
            VerifyRequest(
                accountId: "a", purpose: .login, code: try daemon.code(for: login.challengeId),
                challengeId: login.challengeId))
        #expect(verified.success)
        #expect(daemon.process?.isRunning == true)
        await client.close()
    }
}
