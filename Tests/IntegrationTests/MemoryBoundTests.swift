import Foundation
import OTPClient
import OTPProtocol
import OTPTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What hostile local clients can make the real daemon hold in memory, measured as its
/// resident set (`VmRSS`), and that the memory is given back.
@Suite("Memory bounds") struct MemoryBoundTests {
    /// The daemon's resident memory in KiB.
    static func residentKiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// 64 connections send `ListEvents` calls with 500-record pages (about 60 KiB answers)
    /// and never read. Without byte budgets each connection held up to 512 answers (30 MiB);
    /// with them the daemon grows by at most its ceiling (`answer_mib_total = 16` here) plus
    /// what the connections themselves cost. Then every answer arrives whole once the clients
    /// read, and after they leave the daemon's memory goes back to where it was.
    @Test func clientsThatNeverReadStayUnderTheCeilingAndTheMemoryIsGivenBack() async throws {
        let ceilingMiB = 16
        let daemon = try DaemonProcess(config: "[server]\nanswer_mib_total = \(ceilingMiB)\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let pid = try #require(daemon.process?.processIdentifier)

        // 600 audit events with long account ids: numbers saved on new accounts.
        let client = daemon.client()
        for index in 0..<600 {
            let account = String(format: "%04d", index) + String(repeating: "a", count: 124)
            _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: "+15551230042"))
        }
        let page = try await client.listEvents(ListEventsRequest(pageSize: 500))
        let answerBytes = page.serialized().count
        #expect(answerBytes > 40_000)
        #expect(answerBytes <= TwoFactorMethod.maximumListingAnswerBytes)
        await client.close()

        let request = ListEventsRequest(pageSize: 500).serialized()
        // Warm up the paths the flood takes, so the baseline includes them.
        do {
            let raw = try RawConnection(path: daemon.socket)
            for id in 1...UInt64(20) {
                raw.send(requestFrame(callID: id, method: TwoFactorMethod.listEvents.rawValue, payload: request))
                _ = raw.readResponse()
            }
            raw.hangUp()
        }
        try await Task.sleep(for: .milliseconds(500))
        let baseline = Self.residentKiB(pid)

        let connections = try (0..<64).map { _ in try RawConnection(path: daemon.socket, receiveTimeout: 30) }
        let callsEach = 40
        let frames = (1...callsEach).flatMap {
            requestFrame(callID: UInt64($0), method: TwoFactorMethod.listEvents.rawValue, payload: request)
        }
        // Writers on threads of their own: the daemon stops reading, so they block.
        for raw in connections {
            let fd = raw.fd
            Thread { RawConnection.sendAll(fd: fd, frames) }.start()
        }
        var most = baseline
        for _ in 0..<30 {
            try await Task.sleep(for: .milliseconds(100))
            most = max(most, Self.residentKiB(pid))
        }
        let grownMiB = Double(most - baseline) / 1024
        print("memory bound: baseline \(baseline / 1024) MiB, most \(most / 1024) MiB, grown \(grownMiB) MiB")
        // The ceiling, and 24 MiB for the connections' own buffers, the allocator's slack and
        // the events' pages in SQLite's cache (measured: 17-26 MiB grown in all). With only
        // the per-connection budget it could grow by 64 MiB; without budgets, by hundreds.
        #expect(grownMiB < Double(ceilingMiB + 24))

        let answered = Mutex<[Int]>([])
        for raw in connections {
            Thread {
                // Calls run at once and are answered in any order, each exactly once.
                var whole: Set<UInt64> = []
                for _ in 1...callsEach {
                    guard let response = raw.readResponse() else { break }
                    guard response.error == nil,
                        (try? ListEventsResponse(serialized: response.payload))?.events.count ?? 0 > 0
                    else { break }
                    whole.insert(response.callId)
                }
                answered.withLock { $0.append(whole.count) }
            }.start()
        }
        for _ in 0..<6000 where answered.withLock({ $0.count }) < connections.count {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(answered.withLock { $0 } == Array(repeating: callsEach, count: connections.count))

        for raw in connections { raw.hangUp() }
        var after = Int.max
        for _ in 0..<50 {
            try await Task.sleep(for: .milliseconds(100))
            after = Self.residentKiB(pid)
            if after - baseline < 4 * 1024 { break }
        }
        print("memory bound: after the clients left \(after / 1024) MiB (baseline \(baseline / 1024) MiB)")
        #expect(after - baseline < 4 * 1024, "memory was not given back")
    }

    /// Idle memory. Once quiet, otpd unmaps the code pages it does not use (`IdleMemoryRelease`):
    /// a fresh daemon held about 35 MiB resident (release build), 30 of them pages of its binary
    /// and libraries, and now holds about 16 (`scripts/idle-memory.sh`). This runs the debug
    /// build, which touches more code: about 20 MiB after the release and 40 before it. Then
    /// every kind of work still runs on the pages mapped again (enrolment, a texted code, a
    /// verification, a listing), the daemon gives that memory back too once quiet again, and
    /// then it does not release over and over.
    @Test func anIdleDaemonHoldsLittleAndStillServesAfterReleasingItsPages() async throws {
        let daemon = try DaemonProcess(config: "[server]\nrelease_memory_after_idle_seconds = 1\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let pid = try #require(daemon.process?.processIdentifier)
        /// Waits for the `count`th release, then returns the resident memory a little later.
        func residentAfterRelease(_ count: Int) async throws -> Int {
            for _ in 0..<1200 where Self.releases(daemon.log()) < count {
                try await Task.sleep(for: .milliseconds(25))
            }
            try #require(Self.releases(daemon.log()) >= count, "no release in 30 s; log:\n\(daemon.log())")
            // What the daemon settles at: its own periodic work maps a few MiB back at first.
            try await Task.sleep(for: .seconds(6))
            return Self.residentKiB(pid)
        }
        let idle = try await residentAfterRelease(1)
        print("idle memory: \(idle) KiB resident")
        #expect(idle < 26 * 1024, "an idle daemon holds \(idle / 1024) MiB")

        let client = daemon.client()
        defer { Task { await client.close() } }
        try await daemon.enrollPhone(client, "idle")
        let challenge = try await client.startChallenge(StartChallengeRequest(accountId: "idle", purpose: .login))
        let verified = try await client.verify(
            VerifyRequest(
                accountId: "idle", purpose: .login, code: try daemon.code(for: challenge.challengeId),
                challengeId: challenge.challengeId))
        #expect(verified.success)
        #expect(try await client.listEvents(ListEventsRequest(pageSize: 10)).events.count >= 2)
        #expect(try await client.health().status == "SERVING")
        await client.close()

        let busy = Self.residentKiB(pid)
        let idleAgain = try await residentAfterRelease(2)
        print("idle memory: \(busy) KiB resident after the calls, \(idleAgain) KiB once quiet again")
        #expect(idleAgain < 26 * 1024, "an idle daemon holds \(idleAgain / 1024) MiB")
        #expect(idleAgain < busy)
        // Quiet from now on, it does not release again: what its own periodic work maps back
        // after a release is far below what makes another worth it.
        try await Task.sleep(for: .seconds(4))
        let releases = daemon.log().split(separator: "\n").filter { $0.contains("idle: memory released") }
        #expect(releases.count == 2, "\(releases)")
    }

    /// How many times the daemon's log says it released memory.
    static func releases(_ log: String) -> Int {
        log.components(separatedBy: "idle: memory released").count - 1
    }
}
