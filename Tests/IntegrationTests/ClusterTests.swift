import Foundation
import OTPClient
import OTPProtocol
import OTPTestSupport
import Testing

/// Three real otpd processes on one PostgreSQL database, as on three web nodes behind a load
/// balancer: every single-use rule, counter, lock and budget holds across them.
@Suite("several daemons on one PostgreSQL database")
struct ClusterTests {
    /// Starts three daemons with `config`, runs `body`, and stops them.
    private func withCluster(
        _ config: String = ProductFlowTests.relaxedSMS, _ body: (DaemonCluster) async throws -> Void
    ) async throws {
        let cluster = try DaemonCluster(count: 3, config: config)
        do {
            try await cluster.start()
            try await body(cluster)
        } catch {
            for daemon in cluster.daemons { print("otpd log:\n\(daemon.log().suffix(3000))") }
            await cluster.cleanUp()
            throw error
        }
        await cluster.cleanUp()
    }

    @Test func aCodeSentThroughOneDaemonVerifiesThroughAnotherAndInfoNamesTheStore() async throws {
        try await withCluster { cluster in
            let (a, b, c) = (cluster.daemons[0], cluster.daemons[1], cluster.daemons[2])
            let clientA = a.client()
            let clientB = b.client()
            let clientC = c.client()
            defer { Task { for client in [clientA, clientB, clientC] { await client.close() } } }

            _ = try await clientA.setPhone(SetPhoneRequest(accountId: "alice", phoneNumber: "+15551234567"))
            let challenge = try await clientA.startChallenge(
                StartChallengeRequest(accountId: "alice", purpose: .verifyPhone))
            let code = try a.code(for: challenge.challengeId)
            let verified = try await clientB.verify(
                VerifyRequest(
                    accountId: "alice", purpose: .verifyPhone, code: code, challengeId: challenge.challengeId))
            #expect(verified.success)
            // Used on B, so used on C too.
            let again = try await clientC.verify(
                VerifyRequest(
                    accountId: "alice", purpose: .verifyPhone, code: code, challengeId: challenge.challengeId))
            #expect(!again.success)
            #expect(try await clientC.getStatus(GetStatusRequest(accountId: "alice")).phoneVerified)

            let info = try await clientC.serverInfo()
            #expect(info.storageBackend == "postgresql")
            #expect(info.storageReachable)
            #expect(info.databasePath.hasPrefix("postgresql://") && info.databasePath.contains(cluster.database.name))
            #expect(!info.databasePath.contains(cluster.database.password))
        }
    }

    @Test func sixtyFourRedemptionsOfOneBackupCodeOverThreeDaemonsGiveOneSuccess() async throws {
        try await withCluster(ProductFlowTests.relaxedSMS + "[lockout]\nthreshold = 100\n") { cluster in
            let setup = cluster.daemons[0].client()
            let verified = try await cluster.daemons[0].enrollPhone(setup, "a")
            let codes = try await setup.generateBackupCodes(
                GenerateBackupCodesRequest(accountId: "a", proof: Proof(kind: .token(verified.proofToken)))
            ).codes
            let clients = (0..<15).map { cluster.daemons[$0 % 3].client() }
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<64 {
                    let client = clients[i % clients.count]
                    group.addTask {
                        try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: codes[0]))
                            .success
                    }
                }
                var all: [Bool] = []
                for try await result in group { all.append(result) }
                return all
            }
            #expect(results.count == 64)
            #expect(results.filter { $0 }.count == 1)
            for daemon in cluster.daemons {
                let client = daemon.client()
                #expect(try await client.getStatus(GetStatusRequest(accountId: "a")).backupCodesRemaining == 9)
                await client.close()
            }
            for client in clients { await client.close() }
            await setup.close()
        }
    }

    /// docs/SECURITY.md §10 across daemons: every guess is counted before its answer, wherever it
    /// lands, and the lock holds on every daemon, even for the right code.
    @Test func twoHundredWrongGuessesOverThreeDaemonsAreAllCountedAndLockEverywhere() async throws {
        try await withCluster { cluster in
            let first = cluster.daemons[0]
            let setup = first.client()
            try await first.enrollPhone(setup, "target")
            var challenges: [String] = []
            for _ in 0..<50 {
                challenges.append(
                    try await setup.startChallenge(StartChallengeRequest(accountId: "target", purpose: .login))
                        .challengeId)
            }
            let lastCode = try first.code(for: challenges.last!)
            let wrong = lastCode == "000000" ? "111111" : "000000"
            // The guesses at one account queue behind each other (each a durable commit), so on
            // a loaded test machine the last ones wait seconds: a generous deadline.
            let clients = (0..<12).map { cluster.daemons[$0 % 3].client(deadline: .seconds(90)) }
            let successes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<200 {
                    let challenge = challenges[i % 50]
                    let client = clients[i % clients.count]
                    group.addTask {
                        try await client.verify(
                            VerifyRequest(accountId: "target", purpose: .login, code: wrong, challengeId: challenge)
                        ).success
                    }
                }
                var count = 0
                for try await success in group where success { count += 1 }
                return count
            }
            #expect(successes == 0)
            for daemon in cluster.daemons {
                let client = daemon.client()
                let status = try await client.getStatus(GetStatusRequest(accountId: "target"))
                #expect(status.consecutiveFailures == 200)
                #expect(status.locked)
                #expect(status.lockedUntil == WireTime.lockedUntilAdministratorUnlocks)
                await client.close()
            }
            // A guess during the lock is counted too (201, 202, 203).
            for daemon in cluster.daemons {
                let client = daemon.client()
                let right = try await client.verify(
                    VerifyRequest(
                        accountId: "target", purpose: .login, code: lastCode, challengeId: challenges.last!))
                #expect(!right.success, "the lock holds even for the right code, on every daemon")
                await client.close()
            }
            for client in clients { await client.close() }
            await setup.close()
        }
    }

    /// The hourly budget of one account is one budget, whichever daemon sends.
    @Test func theHourlySMSBudgetIsSharedByTheDaemons() async throws {
        let config = """
            [sms]
            resend_cooldown_seconds = 0
            per_account_per_hour = 6
            per_phone_per_day = 1000
            verifications_per_phone_per_day = 1000
            global_per_minute = 100000
            per_country_per_hour = 100000
            """
        try await withCluster(config) { cluster in
            let setup = cluster.daemons[0].client()
            try await cluster.daemons[0].enrollPhone(setup, "alice")  // one text of the six
            let clients = cluster.daemons.map { $0.client() }
            var sent = 1
            var refused = 0
            for round in 0..<9 {
                do {
                    _ = try await clients[round % 3].startChallenge(
                        StartChallengeRequest(accountId: "alice", purpose: .login))
                    sent += 1
                } catch let error as RPCError {
                    #expect(error.code == .resourceExhausted)
                    refused += 1
                }
            }
            #expect(sent == 6)
            #expect(refused == 4)
            for client in clients + [setup] { await client.close() }
        }
    }

    /// The notification hook runs on one daemon for the cluster: each event once. When that
    /// daemon is killed with kill -9, another takes over from the bookmark: nothing is lost.
    @Test func theNotificationHookRunsOnceForTheClusterAndSurvivesItsLeadersDeath() async throws {
        let scratch = try TemporaryDirectory()
        defer { scratch.remove() }
        let received = scratch.file("received.txt")
        let command = scratch.file("hook.sh")
        try "#!/bin/sh\nread -r line\nprintf '%s %s\\n' \"$OTPD_ACCOUNT_ID\" \"$OTPD_EVENT_KIND\" >> \(received)\n"
            .write(toFile: command, atomically: true, encoding: .utf8)
        chmod(command, 0o755)
        let config = ProductFlowTests.relaxedSMS + "[notify]\ncommand = \"\(command)\"\nkinds = [\"phone_verified\"]\n"
        try await withCluster(config) { cluster in
            func lines() -> [String] {
                ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            }
            func waitFor(_ count: Int) async throws {
                for _ in 0..<400 where lines().count < count { try await Task.sleep(for: .milliseconds(50)) }
            }
            // Ten accounts verified through the three daemons.
            for i in 0..<10 {
                let daemon = cluster.daemons[i % 3]
                let client = daemon.client()
                try await daemon.enrollPhone(client, "user\(i)")
                await client.close()
            }
            try await waitFor(10)
            try await Task.sleep(for: .seconds(3))  // a second deliverer would have delivered by now
            #expect(lines().sorted() == (0..<10).map { "user\($0) phone_verified" }.sorted())

            // Kill the leader (the one whose log says it holds the hook's role).
            let leader = try #require(
                cluster.daemons.first {
                    $0.log().contains("this otpd now holds a cluster role") && $0.log().contains("notification_hook")
                })
            await leader.kill9()
            let survivors = cluster.daemons.filter { $0 !== leader }
            for i in 10..<16 {
                let daemon = survivors[i % 2]
                let client = daemon.client()
                try await daemon.enrollPhone(client, "user\(i)")
                await client.close()
            }
            try await waitFor(16)
            let all = lines()
            // At least once: every event arrived; the survivors delivered the new ones.
            #expect(Set(all) == Set((0..<16).map { "user\($0) phone_verified" }))
            #expect(all.count >= 16)
        }
    }
}
