import Foundation
import OTPCore
import OTPTestSupport
import Testing

@Suite("pruning")
struct PruningTests {
    @Test func expiredChallengesAndProofsGoOnlyAfterTheirTime() async throws {
        let fixture = try await Fixture()
        defer { fixture.tearDown() }
        try await fixture.enrollPhone("alice")
        let change = try await fixture.challenge("alice", .changePhone)
        let proof = try await fixture.service.verify(
            accountID: "alice", purpose: .changePhone, code: change.code, challengeID: change.id)
        #expect(proof.proofToken != nil)
        let open = try await fixture.challenge("alice", .login)

        // Nothing has expired yet: nothing goes.
        #expect(try await fixture.service.prune() == PruneReport())

        // Past the code lifetime: the proofs go (the change_phone one, and the manage_factors
        // one that enrolment grants); the challenges stay for a day so that a late code is
        // audited as "expired".
        fixture.clock.advance(301)
        var report = try await fixture.service.prune()
        #expect(report.proofs == 2 && report.challenges == 0)
        let late = try await fixture.service.verify(
            accountID: "alice", purpose: .login, code: open.code, challengeID: open.id)
        #expect(!late.success)
        let reasons = try await fixture.service.listEvents(accountID: "alice", pageSize: 5, beforeID: nil)
        #expect(reasons.events.first?.detail.contains("challenge expired") == true)

        // A day later the challenges go too; a code for one of them is still refused.
        fixture.clock.advance(86_400)
        report = try await fixture.service.prune()
        #expect(report.challenges == 3)  // verify_phone, change_phone, login
        let again = try await fixture.service.verify(
            accountID: "alice", purpose: .login, code: open.code, challengeID: open.id)
        #expect(!again.success)
    }

    @Test func eventsAndDeliveriesFollowTheirRetention() async throws {
        let fixture = try await Fixture { policy in
            policy.eventRetention = 30 * 86_400
            policy.deliveryRetention = nil  // kept forever
        }
        defer { fixture.tearDown() }
        try await fixture.enrollPhone("bob")
        let before = try await fixture.service.listEvents(accountID: "bob", pageSize: 100, beforeID: nil).events
        #expect(!before.isEmpty)

        fixture.clock.advance(29 * 86_400)
        _ = try await fixture.challenge("bob", .login)  // a newer event
        #expect(try await fixture.service.prune().events == 0)

        fixture.clock.advance(2 * 86_400)
        let report = try await fixture.service.prune()
        #expect(report.events == before.count)
        #expect(report.deliveries == 0)
        let after = try await fixture.service.listEvents(accountID: "bob", pageSize: 100, beforeID: nil).events
        #expect(after.map(\.kind) == [.codeSent])
        let deliveries = try await fixture.service.listDeliveries(accountID: "bob", pageSize: 100, beforeID: nil)
        #expect(deliveries.deliveries.count == 2)
    }

    @Test func oneCallIsBoundedAndTheNextFinishes() async throws {
        let fixture = try await Fixture { $0.liftSMSBudgets() }
        defer { fixture.tearDown() }
        try await fixture.enrollPhone("carol")
        for _ in 0..<600 { _ = try await fixture.challenge("carol", .login) }
        fixture.clock.advance(2 * 86_400)

        let first = try await fixture.service.prune(maximumBatches: 1)
        #expect(first.challenges == 500 && first.incomplete)
        let second = try await fixture.service.prune(maximumBatches: 1)
        #expect(second.challenges == 101 && !second.incomplete)
    }

    @Test func retentionShorterThanADayIsRefused() {
        var policy = TwoFactorPolicy()
        policy.eventRetention = 3600
        #expect(throws: TwoFactorError.self) { try policy.validate() }
    }
}
