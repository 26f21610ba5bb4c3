import Foundation
import OTPClient
import OTPProtocol
import OTPTestSupport
import Synchronization
import Testing

/// What one attempt was told.
private enum Answer: Sendable { case success, refused, unavailable, other(String) }

/// The answers of every attempt, by code.
private final class Answers: Sendable {
    let value = Mutex<[Int: [Answer]]>([:])
}

/// PostgreSQL going away under otpd: calls in flight fail closed (UNAVAILABLE, never a success
/// that was not committed), nothing acknowledged is lost, and otpd serves again by itself once
/// PostgreSQL is back. Each test has its own PostgreSQL cluster, since it stops it.
@Suite("several daemons while PostgreSQL fails")
struct ClusterFaultTests {
    /// Backup codes redeemed twice each, from two daemons, while PostgreSQL is stopped and
    /// started again in the middle.
    @Test func postgresRestartingUnderLoadLosesNothingAndAcceptsNoCodeTwice() async throws {
        let postgres = try PostgresTestCluster()
        defer { postgres.destroy() }
        let cluster = try DaemonCluster(count: 2, config: ProductFlowTests.relaxedSMS, cluster: postgres)
        defer { Task { await cluster.cleanUp() } }
        try await cluster.start()

        // Eight accounts with ten backup codes each.
        var codes: [(account: String, code: String)] = []
        let setup = cluster.daemons[0].client()
        for i in 0..<8 {
            let account = "user\(i)"
            let verified = try await cluster.daemons[0].enrollPhone(setup, account)
            let set = try await setup.generateBackupCodes(
                GenerateBackupCodesRequest(accountId: account, proof: Proof(kind: .token(verified.proofToken))))
            codes += set.codes.map { (account, $0) }
        }
        await setup.close()

        let codesToTry = codes
        let answers = Answers()
        let clients = (0..<8).map { cluster.daemons[$0 % 2].client(deadline: .seconds(20)) }
        let load = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Every code twice, once through each daemon, spread over about four seconds.
                for (index, entry) in codesToTry.enumerated() {
                    for attempt in 0..<2 {
                        let client = clients[(index * 2 + attempt) % clients.count]
                        group.addTask {
                            try await Task.sleep(for: .milliseconds(index * 50 + attempt * 20))
                            let answer: Answer
                            do {
                                let response = try await client.redeemBackupCode(
                                    RedeemBackupCodeRequest(accountId: entry.account, code: entry.code))
                                answer = response.success ? .success : .refused
                            } catch let error as RPCError where error.code == .unavailable {
                                answer = .unavailable
                            } catch {
                                answer = .other("\(error)")
                            }
                            answers.value.withLock { $0[index, default: []].append(answer) }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        try await Task.sleep(for: .seconds(1))
        try postgres.stop(mode: "fast")
        try await Task.sleep(for: .milliseconds(1500))
        try postgres.start()
        let restarted = ContinuousClock.now
        try await load.value

        // Every daemon serves again, by itself, within seconds.
        for daemon in cluster.daemons {
            let client = daemon.client(deadline: .seconds(2))
            var served = false
            while !served && ContinuousClock.now - restarted < .seconds(30) {
                served = (try? await client.getStatus(GetStatusRequest(accountId: "user0"))) != nil
                if !served { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(served)
            print("daemon serving again \(ContinuousClock.now - restarted) after PostgreSQL's start")
            await client.close()
        }

        let all = answers.value.withLock { $0 }
        let flat = all.values.flatMap { $0 }
        let others = flat.compactMap { if case .other(let text) = $0 { text } else { nil } }
        #expect(others.isEmpty, "every failure is UNAVAILABLE: \(others.prefix(3))")
        #expect(flat.contains { if case .unavailable = $0 { true } else { false } }, "the outage was felt")
        // No code accepted twice.
        for (index, list) in all {
            let successes = list.filter { if case .success = $0 { true } else { false } }.count
            #expect(successes <= 1, "code \(index) accepted \(successes) times")
        }
        // Nothing acknowledged is lost: each acknowledged code is used now, on both daemons.
        let client = cluster.daemons[1].client()
        for (index, list) in all where list.contains(where: { if case .success = $0 { true } else { false } }) {
            let entry = codes[index]
            let again = try await client.redeemBackupCode(
                RedeemBackupCodeRequest(accountId: entry.account, code: entry.code))
            #expect(!again.success, "an acknowledged code must stay used")
        }
        let acknowledged = all.values.filter { $0.contains { if case .success = $0 { true } else { false } } }.count
        var remaining = 0
        for i in 0..<8 {
            remaining += Int(try await client.getStatus(GetStatusRequest(accountId: "user\(i)")).backupCodesRemaining)
        }
        // A call answered UNAVAILABLE may still have committed (its COMMIT's answer was lost),
        // so at least the acknowledged ones are used.
        #expect(remaining <= 80 - acknowledged)
        print("acknowledged \(acknowledged) of 80 codes; \(80 - remaining) used")
        await client.close()
        for client in clients { await client.close() }
    }

    /// A daemon started while PostgreSQL is down says so, does not serve (no socket: systemd
    /// has no READY=1), and starts serving by itself once PostgreSQL is up.
    @Test func aDaemonStartedWhilePostgresIsDownWaitsForIt() async throws {
        let postgres = try PostgresTestCluster()
        defer { postgres.destroy() }
        let cluster = try DaemonCluster(count: 1, cluster: postgres)
        defer { Task { await cluster.cleanUp() } }
        try postgres.stop(mode: "fast")
        let daemon = cluster.daemons[0]
        let starting = Task { try await daemon.start() }
        var waiting = false
        for _ in 0..<100 where !waiting {
            waiting = daemon.log().contains("is unreachable")
            if !waiting { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(waiting, "the log says PostgreSQL is unreachable:\n\(daemon.log())")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "no socket before the store is ready")
        try postgres.start()
        try await starting.value
        let client = daemon.client()
        let info = try await client.serverInfo()
        #expect(info.storageBackend == "postgresql" && info.storageReachable)
        await client.close()

        // otpctl info and doctor name the store, its schema and whether it answers.
        let reachable = try runProgram(Binaries.otpctl, ["info", "--socket", daemon.socket])
        #expect(reachable.stdout.contains("database: postgresql postgresql://"), "\(reachable.stdout)")
        #expect(reachable.stdout.contains("(schema 1), reachable"), "\(reachable.stdout)")
        try postgres.stop(mode: "fast")
        var down = ""
        for _ in 0..<150 where !down.contains("UNREACHABLE") {
            try await Task.sleep(for: .milliseconds(100))
            down = try runProgram(Binaries.otpctl, ["info", "--socket", daemon.socket]).stdout
        }
        #expect(down.contains("UNREACHABLE"), "\(down)")
        let doctor = try runProgram(Binaries.otpctl, ["doctor", "--json", "--socket", daemon.socket])
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(doctor.stdout.utf8)) as? [String: Any], "\(doctor.stdout)")
        let checks = try #require(report["checks"] as? [[String: Any]])
        let database = try #require(checks.first { $0["name"] as? String == "database" })
        #expect(database["status"] as? String == "problem")
        #expect((database["detail"] as? String)?.contains("cannot reach PostgreSQL") == true)
        #expect(doctor.status != 0)
        try postgres.start()
    }
}
