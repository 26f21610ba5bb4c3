import Foundation
import OTPClient
import Testing

/// Backup codes through the real daemon: exactly once, durable, regeneration races.
@Suite("backup codes through the daemon", .serialized)
struct BackupCodeTests {
    /// An account with SMS on and a first set of backup codes; returns the codes.
    private func enrolled(_ daemon: DaemonProcess, _ client: OTPClient, _ account: String) async throws -> [String] {
        let verified = try await daemon.enrollPhone(client, account)
        return try await client.generateBackupCodes(
            GenerateBackupCodesRequest(accountId: account, proof: Proof(kind: .token(verified.proofToken)))
        ).codes
    }

    /// A manage_factors proof from an SMS code.
    private func proof(_ daemon: DaemonProcess, _ client: OTPClient, _ account: String) async throws -> Proof {
        let challenge = try await client.startChallenge(
            StartChallengeRequest(accountId: account, purpose: .manageFactors))
        let verified = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .manageFactors, code: try daemon.code(for: challenge.challengeId),
                challengeId: challenge.challengeId))
        return Proof(kind: .token(verified.proofToken))
    }

    @Test func sixtyFourConcurrentRedemptionsOfOneCodeGiveExactlyOneSuccess() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS + "[lockout]\nthreshold = 100\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let setup = daemon.client()
        let codes = try await enrolled(daemon, setup, "a")
        let clients = (0..<16).map { _ in daemon.client() }
        let results = try await withThrowingTaskGroup(of: RedeemBackupCodeResponse.self) { group in
            for i in 0..<64 {
                let client = clients[i % clients.count]
                group.addTask {
                    try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: codes[0]))
                }
            }
            var all: [RedeemBackupCodeResponse] = []
            for try await result in group { all.append(result) }
            return all
        }
        #expect(results.filter(\.success).count == 1)
        let failures = results.filter { !$0.success }
        #expect(failures.count == 63)
        // Uniform: every failure is the same answer (remaining may only be 9).
        #expect(Set(failures.map { "\($0.success) \($0.remaining) \($0.low)" }).count == 1)
        #expect(try await setup.getStatus(GetStatusRequest(accountId: "a")).backupCodesRemaining == 9)
        for client in clients { await client.close() }
        await setup.close()
    }

    @Test func aConsumedCodeStaysConsumedAfterRestartAndKill9() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS)
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        var client = daemon.client()
        let codes = try await enrolled(daemon, client, "a")
        #expect(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: codes[0])).success)
        await client.close()
        #expect(await daemon.terminate() == 0)
        try await daemon.start()
        client = daemon.client()
        #expect(!(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: codes[0])).success))

        // kill -9 right after the success was acknowledged, many times over.
        for code in codes[1...5] {
            #expect(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: code)).success)
            await client.close()
            await daemon.kill9()
            try await daemon.start()
            client = daemon.client()
            #expect(!(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: code)).success))
        }
        #expect(try await client.getStatus(GetStatusRequest(accountId: "a")).backupCodesRemaining == 4)
        await client.close()
    }

    /// A redemption of an old code racing a regeneration either wins before it or loses after
    /// it; a new set and an old code are never both accepted.
    @Test func regenerationVoidsTheOldSetEvenUnderAConcurrentRedemption() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS + "[lockout]\nthreshold = 100\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        let other = daemon.client()
        var old = try await enrolled(daemon, client, "a")
        var redeemedBefore = 0
        for round in 0..<12 {
            let proof = try await proof(daemon, client, "a")
            let target = old[round % old.count]
            async let redemption = other.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: target))
            async let regeneration = client.generateBackupCodes(
                GenerateBackupCodesRequest(accountId: "a", proof: proof))
            let (redeemed, fresh) = try await (redemption, regeneration)
            let events = try await client.listEvents(ListEventsRequest(accountId: "a", pageSize: 10)).events
            let regeneratedAt = try #require(events.first { $0.kind == "backup_codes_regenerated" }).id
            if redeemed.success {
                redeemedBefore += 1
                let redeemedAt = try #require(
                    events.first { $0.kind == "backup_code_redeemed" && $0.outcome == "success" }
                ).id
                #expect(redeemedAt < regeneratedAt, "an old code was accepted after the regeneration")
            }
            // Afterwards no old code works and every new one does count as unused.
            #expect(
                !(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: old.last!)).success))
            #expect(try await client.getStatus(GetStatusRequest(accountId: "a")).backupCodesRemaining == 10)
            old = fresh.codes
        }
        print("regeneration race: the old code won \(redeemedBefore) of 12 rounds")
        await client.close()
        await other.close()
    }

    /// Input normalisation (case, dashes, spaces) and strict refusal of everything else.
    @Test func normalisationAndStrictness() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS + "[lockout]\nthreshold = 100\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        let codes = try await enrolled(daemon, client, "a")
        let plain = codes.map { $0.replacingOccurrences(of: "-", with: "") }
        let spaced: String = plain[3].map { String($0) }.joined(separator: "-")
        let accepted: [String] = [
            codes[0].uppercased(), plain[1], "  " + codes[2] + "  ", spaced,
            codes[4].replacingOccurrences(of: "-", with: " "),
        ]
        for input in accepted {
            #expect(
                try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: input)).success,
                "refused \(input.debugDescription)")
        }
        let code: String = plain[5]
        let tail: String = String(code.dropFirst())
        let lookAlike: String = "l" + tail
        let refused: [String] = [
            String(code.dropLast()), code + "2", "o" + tail, "1" + tail, lookAlike, code + "é", "ｋ" + tail,
            String(code.prefix(8)) + "\u{0}" + String(code.dropFirst(8)), String(repeating: code, count: 400), "",
        ]
        let failuresBefore = try await client.getStatus(GetStatusRequest(accountId: "a")).consecutiveFailures
        for input in refused {
            #expect(
                !(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: input)).success),
                "accepted \(input.debugDescription)")
        }
        let failuresAfter = try await client.getStatus(GetStatusRequest(accountId: "a")).consecutiveFailures
        #expect(failuresAfter == failuresBefore + UInt32(refused.count), "each refusal is a failed attempt")
        // The real code still works afterwards.
        #expect(try await client.redeemBackupCode(RedeemBackupCodeRequest(accountId: "a", code: codes[5])).success)
        await client.close()
    }
}
