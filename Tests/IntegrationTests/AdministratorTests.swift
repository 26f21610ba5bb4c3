import Foundation
import OTPClient
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Administrator calls (`UnlockAccount`, `ResetAccount`, `SendTestSms`, `ListEvents` and
/// `ListDeliveries` across all accounts) need an administrator peer; other clients are refused
/// before anything is read or written.
@Suite("administrator peers", .serialized)
struct AdministratorTests {
    /// A uid that is not the test's: with `admin_uids = [4242]` the test process is a client
    /// (root and otpd's own uid are allowed to connect by default) but not an administrator.
    static let someoneElse: UInt32 = 4242

    /// Runs otpd on a configuration file that the test can rewrite between two starts, so
    /// both runs share the database.
    private func withDaemon(_ body: (DaemonProcess, _ writeConfig: (String) throws -> Void) async throws -> Void)
        async throws
    {
        let scratch = try TemporaryDirectory()
        defer { scratch.remove() }
        let configPath = scratch.file("otpd.toml")
        let daemon = try DaemonProcess(arguments: ["--config", configPath])
        defer { Task { await daemon.cleanUp() } }
        try await body(daemon) { text in try text.write(toFile: configPath, atomically: true, encoding: .utf8) }
    }

    private func expectDenied<T>(
        _ method: String, sourceLocation: SourceLocation = #_sourceLocation, _ call: () async throws(RPCError) -> T
    ) async {
        do throws(RPCError) {
            _ = try await call()
            Issue.record("\(method) was not refused", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == .permissionDenied, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message == "\(method) needs an administrator peer", sourceLocation: sourceLocation)
        }
    }

    @Test func aClientThatIsNotAnAdministratorIsRefusedAndChangesNothing() async throws {
        try await withDaemon { daemon, writeConfig in
            // One wrong code locks (threshold 1), so the test has a locked account to unlock.
            let lockout = "[lockout]\nthreshold = 1\n"
            try writeConfig("[server]\nadmin_uids = [\(Self.someoneElse)]\n" + lockout)
            try await daemon.start()
            let account = "admin-target"
            let client = daemon.client()
            _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: "+15551230042"))
            let challenge = try await client.startChallenge(
                StartChallengeRequest(accountId: account, purpose: .verifyPhone))
            let code = try daemon.code(for: challenge.challengeId)
            let wrong = code == "000000" ? "111111" : "000000"
            let failed = try await client.verify(
                VerifyRequest(
                    accountId: account, purpose: .verifyPhone, code: wrong, challengeId: challenge.challengeId))
            #expect(!failed.success)
            let locked = try await client.getStatus(GetStatusRequest(accountId: account))
            #expect(locked.locked)
            let eventsBefore = try await client.listEvents(ListEventsRequest(accountId: account, pageSize: 100)).events
            let outboxBefore = daemon.outbox().count

            await expectDenied("UnlockAccount") { () async throws(RPCError) in
                try await client.unlockAccount(UnlockAccountRequest(accountId: account, actor: "web", reason: "x"))
            }
            await expectDenied("ResetAccount") { () async throws(RPCError) in
                try await client.resetAccount(ResetAccountRequest(accountId: account, actor: "web", reason: "x"))
            }
            await expectDenied("ListEvents") { () async throws(RPCError) in
                try await client.listEvents(ListEventsRequest(accountId: "", pageSize: 10))
            }
            await expectDenied("ListDeliveries") { () async throws(RPCError) in
                try await client.listDeliveries(ListDeliveriesRequest(accountId: "", pageSize: 10))
            }
            await expectDenied("SendTestSms") { () async throws(RPCError) in
                try await client.sendTestSms(SendTestSmsRequest(phoneNumber: "+15551239876"))
            }
            await expectDenied("ListSmsBreakers") { () async throws(RPCError) in
                try await client.listSmsBreakers()
            }
            await expectDenied("UpdateSmsBreaker") { () async throws(RPCError) in
                try await client.updateSmsBreaker(UpdateSmsBreakerRequest(scope: "+44", action: .exempt))
            }
            await expectDenied("GetMetrics") { () async throws(RPCError) in
                try await client.getMetrics()
            }

            // Nothing changed: still locked with its phone number, no new event, no text sent.
            let after = try await client.getStatus(GetStatusRequest(accountId: account))
            #expect(after == locked)
            #expect(after.locked)
            #expect(after.phoneMasked == "+1******0042")
            let eventsAfter = try await client.listEvents(ListEventsRequest(accountId: account, pageSize: 100)).events
            #expect(eventsAfter == eventsBefore)
            #expect(!eventsAfter.contains { $0.kind == "account_unlocked" || $0.kind == "account_reset" })
            #expect(daemon.outbox().count == outboxBefore)

            // The same calls about one account still work for the client.
            #expect(eventsAfter.contains { $0.kind == "account_locked" })
            let deliveries = try await client.listDeliveries(ListDeliveriesRequest(accountId: account, pageSize: 10))
            #expect(deliveries.deliveries.allSatisfy { $0.accountId == account })

            // A listing request that does not decode is refused too (not let through as "one account").
            let raw = try RawConnection(path: daemon.socket)
            raw.send(requestFrame(callID: 7, method: "/otp.v1.TwoFactor/ListEvents", payload: [0x0A, 0x05, 0x61]))
            let response = try #require(raw.readResponse())
            #expect(response.callId == 7)
            #expect(response.error?.code == .permissionDenied)

            // Each refusal is logged with who asked, never with what (no phone number).
            let log = daemon.log()
            #expect(log.contains("refused an administrator call from a peer that is not an administrator"))
            #expect(log.contains("peer.uid=\(getuid())"))
            #expect(log.contains("peer.pid=\(getpid())"))
            #expect(log.contains("method=UnlockAccount") && log.contains("method=SendTestSms"))
            #expect(!log.contains("5551239876"))
            await client.close()
            #expect(await daemon.terminate() == 0)

            // The default administrators, root and otpd's own uid (the test's), may do them all.
            try writeConfig(lockout)
            try await daemon.start()
            let admin = daemon.client()
            let unlocked = try await admin.unlockAccount(
                UnlockAccountRequest(accountId: account, actor: "ops", reason: "called in"))
            #expect(unlocked.status?.locked == false)
            let all = try await admin.listEvents(ListEventsRequest(accountId: "", pageSize: 100))
            #expect(all.events.first?.kind == "account_unlocked")
            _ = try await admin.listDeliveries(ListDeliveriesRequest(accountId: "", pageSize: 10))
            _ = try await admin.sendTestSms(SendTestSmsRequest(phoneNumber: "+15551239876"))
            #expect(daemon.outbox().count == outboxBefore + 1)
            let reset = try await admin.resetAccount(
                ResetAccountRequest(accountId: account, actor: "ops", reason: "new"))
            #expect(reset.status?.setupRequired == true)
            #expect(reset.status?.phoneMasked == "")
            await admin.close()
        }
    }

    /// otpctl as another user: `admin_gids` counts the peer's primary gid from SO_PEERCRED, not
    /// its supplementary groups, and setting it replaces the default administrators.
    /// Needs root (to run otpctl as `nobody`) and `setpriv` from util-linux.
    @Test func anAdministratorGroupIsMatchedByThePrimaryGid() async throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("SKIPPED anAdministratorGroupIsMatchedByThePrimaryGid: needs root and /usr/bin/setpriv")
            return
        }
        let operators = 4243
        let daemon = try DaemonProcess(
            config: "[server]\nsocket_mode = \"0666\"\nallowed_uids = [0, 65534]\nadmin_gids = [\(operators)]\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        chmod(daemon.directory.path, 0o755)
        chmod(Binaries.otpctl, 0o755)

        func events(as credentials: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            try runProgram(
                "/usr/bin/setpriv",
                ["--reuid=65534"] + credentials + [Binaries.otpctl, "events", "--json", "--socket", daemon.socket])
        }
        let inGroup = try events(as: ["--regid=\(operators)", "--clear-groups"])
        #expect(inGroup.status == 0, "\(inGroup.stderr)")
        let notInGroup = try events(as: ["--regid=65534", "--clear-groups"])
        #expect(notInGroup.status == 1)
        #expect(notInGroup.stderr.contains("PERMISSION_DENIED: ListEvents needs an administrator peer"))
        let supplementaryOnly = try events(as: ["--regid=65534", "--groups=\(operators)"])
        #expect(supplementaryOnly.status == 1, "a supplementary group does not make an administrator")
        // One account's events are not an administrator call.
        let oneAccount = try runProgram(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", Binaries.otpctl, "events", "someone", "--socket",
                daemon.socket,
            ])
        #expect(oneAccount.status == 0, "\(oneAccount.stderr)")
        // admin_gids alone replaces the default: root is a client here, not an administrator.
        let root = try runProgram(Binaries.otpctl, ["events", "--socket", daemon.socket])
        #expect(root.status == 1)
        #expect(root.stderr.contains("needs an administrator peer"))
    }
}
