import Foundation
import OTPClient
import Testing

/// The attacks the step-up table closes (docs/SECURITY.md, "Step-up"), tried through the real
/// daemon as an attacker would: with the victim's password and session, i.e. able to make any
/// call for the victim's account, but without any of the victim's factors.
@Suite("step-up attacks through the daemon", .serialized)
struct StepUpAttackTests {
    private func refusal(_ body: () async throws -> Void) async -> RPCError.Code? {
        do {
            try await body()
            return nil
        } catch let error as RPCError {
            return error.code
        } catch {
            return .unknown
        }
    }

    /// Only an authenticator on: before the fix the attacker saved their own number without a
    /// proof, verified it (it was texted to them), got a manage_factors proof from that, made
    /// themselves new backup codes (voiding the owner's) and turned the owner's authenticator
    /// off with a code texted to their own phone.
    @Test func aSessionCannotAddItsOwnPhoneToAnAuthenticatorAccount() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS)
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        defer { Task { await client.close() } }
        let account = "owner@shop.example"

        // The owner: an authenticator, then backup codes with the enrolment's proof.
        let enrollment = try await client.beginTotpEnrollment(BeginTotpEnrollmentRequest(accountId: account))
        let confirmed = try await client.confirmTotpEnrollment(
            ConfirmTotpEnrollmentRequest(accountId: account, code: try totpCode(enrollment.secretBase32)))
        #expect(confirmed.success)
        let ownerCodes = try await client.generateBackupCodes(
            GenerateBackupCodesRequest(accountId: account, proof: Proof(kind: .token(confirmed.proofToken)))
        ).codes

        // The attacker, step by step.
        let attackerNumber = "+15550009999"
        #expect(
            await refusal {
                _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: attackerNumber))
            } == .permissionDenied)
        #expect(
            await refusal {
                _ = try await client.startChallenge(StartChallengeRequest(accountId: account, purpose: .verifyPhone))
            } == .failedPrecondition)
        #expect(
            await refusal {
                _ = try await client.generateBackupCodes(GenerateBackupCodesRequest(accountId: account))
            } == .permissionDenied)
        #expect(
            await refusal {
                _ = try await client.disableFactor(DisableFactorRequest(accountId: account, factor: .totp))
            } == .permissionDenied)
        #expect(
            await refusal {
                _ = try await client.setPreferredMethod(SetPreferredMethodRequest(accountId: account, method: .totp))
            } == .permissionDenied)
        // A proof token made up or taken from another account proves nothing either.
        #expect(
            await refusal {
                _ = try await client.setPhone(
                    SetPhoneRequest(
                        accountId: account, phoneNumber: attackerNumber, proof: Proof(kind: .token("pf_guess"))))
            } == .permissionDenied)
        // A Proof with no kind set, or an empty one, is no proof: refused before the service.
        for proof in [Proof(), Proof(kind: .token("")), Proof(kind: .totpCode("")), Proof(kind: .backupCode(""))] {
            #expect(
                await refusal {
                    _ = try await client.setPhone(
                        SetPhoneRequest(accountId: account, phoneNumber: attackerNumber, proof: proof))
                } == .invalidArgument, "\(proof)")
        }

        let status = try await client.getStatus(GetStatusRequest(accountId: account))
        #expect(status.phoneMasked.isEmpty && status.pendingPhoneMasked.isEmpty)
        #expect(status.totpEnabled)
        #expect(status.backupCodesRemaining == UInt32(ownerCodes.count))
        #expect(!daemon.outbox().contains { $0.to == attackerNumber })

        // The owner, with a current authenticator code, can add a phone; the verification of
        // that number returns no enrolment proof (the account already had factors).
        try await waitForNextTOTPStep()
        let saved = try await client.setPhone(
            SetPhoneRequest(
                accountId: account, phoneNumber: "+15551234567",
                proof: Proof(kind: .totpCode(try totpCode(enrollment.secretBase32)))))
        #expect(!saved.pending)
        let challenge = try await client.startChallenge(
            StartChallengeRequest(accountId: account, purpose: .verifyPhone))
        let verified = try await client.verify(
            VerifyRequest(
                accountId: account, purpose: .verifyPhone, code: try daemon.code(for: challenge.challengeId),
                challengeId: challenge.challengeId))
        #expect(verified.success)
        #expect(verified.proofToken.isEmpty)
    }

    /// A stolen session that keeps asking to change the number without a proof is refused every
    /// time; the account's audit trail keeps 10 of those refusals an hour (the tenth says the
    /// trail is cut there) instead of one per request, and every refusal past the cap is still
    /// counted in `otpd_audit_events_capped_total{kind="proof"}`, so it shows on the dashboard.
    @Test func refusedStepUpsPastTheHourlyCapAreCountedNotLogged() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS)
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        defer { Task { await client.close() } }
        let account = "hammered@shop.example"
        try await daemon.enrollPhone(client, account)

        for _ in 0..<25 {
            #expect(
                await refusal {
                    _ = try await client.setPhone(SetPhoneRequest(accountId: account, phoneNumber: "+15550009999"))
                } == .permissionDenied)
        }
        let proofEvents = try await client.listEvents(ListEventsRequest(accountId: account, pageSize: 100)).events
            .filter { $0.kind == "proof" }
        #expect(proofEvents.count == 10)
        #expect(proofEvents.allSatisfy { $0.outcome == "refused" })
        #expect(proofEvents.filter { $0.detail.hasSuffix("further ones within the hour are not recorded") }.count == 1)
        let metrics = try await client.getMetrics().text
        #expect(metrics.contains("otpd_audit_events_capped_total{kind=\"proof\"} 15"), "\(metrics)")
        #expect(metrics.contains("otpd_audit_events_capped_total{kind=\"code_refused\"} 0"))
    }

    /// Not enrolled yet: before the fix the attacker made backup codes without any factor,
    /// which survived the owner's later SMS enrolment and logged in afterwards.
    @Test func noBackupCodesCanBePlantedBeforeTheFirstFactor() async throws {
        let daemon = try DaemonProcess(config: ProductFlowTests.relaxedSMS)
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        defer { Task { await client.close() } }
        let account = "new-admin@shop.example"

        #expect(
            await refusal {
                _ = try await client.generateBackupCodes(GenerateBackupCodesRequest(accountId: account))
            } == .failedPrecondition)
        // A half-finished authenticator enrolment the attacker started is void once the owner
        // turns SMS on: it cannot be confirmed afterwards.
        let planted = try await client.beginTotpEnrollment(BeginTotpEnrollmentRequest(accountId: account))

        let enrolled = try await daemon.enrollPhone(client, account)
        #expect(!enrolled.proofToken.isEmpty)
        let status = try await client.getStatus(GetStatusRequest(accountId: account))
        #expect(status.backupCodesRemaining == 0)
        #expect(
            await refusal {
                _ = try await client.confirmTotpEnrollment(
                    ConfirmTotpEnrollmentRequest(accountId: account, code: try totpCode(planted.secretBase32)))
            } == .failedPrecondition)
        #expect(!(try await client.getStatus(GetStatusRequest(accountId: account)).totpEnabled))

        // The owner's own first set works with the enrolment proof; the owner can still add an
        // authenticator later with a proof.
        let codes = try await client.generateBackupCodes(
            GenerateBackupCodesRequest(accountId: account, proof: Proof(kind: .token(enrolled.proofToken)))
        ).codes
        #expect(codes.count == 10)
    }

    /// A session of one account saves another person's number and asks for verification
    /// texts until that number's verification budget is spent: the owner of the number, who
    /// verified it on their own account, still gets login texts (docs/SECURITY.md §12).
    @Test func anotherAccountCannotDrainANumbersLoginTexts() async throws {
        let daemon = try DaemonProcess(
            config: "[sms]\nresend_cooldown_seconds = 0\nper_account_per_hour = 1000\nper_phone_per_day = 10\n"
                + "verifications_per_phone_per_day = 3\nglobal_per_minute = 100000\nper_country_per_hour = 100000\n")
        try await daemon.start()
        defer { Task { await daemon.cleanUp() } }
        let client = daemon.client()
        defer { Task { await client.close() } }
        let number = "+15551234567"
        try await daemon.enrollPhone(client, "owner", number: number)

        _ = try await client.setPhone(SetPhoneRequest(accountId: "stranger", phoneNumber: number))
        var drained = false
        for _ in 0..<10 where !drained {
            drained =
                await refusal {
                    _ = try await client.startChallenge(
                        StartChallengeRequest(accountId: "stranger", purpose: .verifyPhone))
                } == .resourceExhausted
        }
        #expect(drained, "the verification pool has a bound")
        for _ in 0..<3 {
            let login = try await client.startChallenge(StartChallengeRequest(accountId: "owner", purpose: .login))
            #expect(!login.challengeId.isEmpty)
        }
    }
}
