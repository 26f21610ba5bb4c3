import Foundation

/// What one call of `TwoFactorService.prune` deleted.
public struct PruneReport: Sendable, Equatable {
    public var challenges = 0
    public var proofs = 0
    public var events = 0
    public var deliveries = 0
    /// True when a category had more to delete than one call may take.
    public var incomplete = false

    public init() {}

    /// Rows deleted in all.
    public var total: Int { challenges + proofs + events + deliveries }
}

extension TwoFactorService {
    /// Rows of one kind deleted per transaction: small, so that a prune never holds the single
    /// writer for long; the calls of other clients commit between two of its batches.
    static let pruneBatch = 500

    /// Deletes what the retention policy no longer keeps: challenges a while after they
    /// expired (`expiredChallengeRetention`), expired proofs, and audit events and delivery
    /// records older than their retention (kept forever when that is nil).
    ///
    /// Bounded: at most `maximumBatches` transactions of at most 500 rows of each kind; the
    /// report says when rows were left for the next call. The daemon calls this at start-up and
    /// every 10 minutes. Deleting is not an audit event (the daemon logs the counts).
    public func prune(maximumBatches: Int = 100) async throws(TwoFactorError) -> PruneReport {
        let now = clock.now()
        let policy = self.policy
        let limit = Self.pruneBatch
        var report = PruneReport()
        for round in 0..<max(1, maximumBatches) {
            let batch: PruneReport = try await transact { tx in
                var batch = PruneReport()
                batch.challenges = try tx.deleteChallenges(
                    expiredBefore: now.addingTimeInterval(-policy.expiredChallengeRetention), limit: limit)
                batch.proofs = try tx.deleteProofs(expiredBefore: now, limit: limit)
                if let keep = policy.eventRetention {
                    batch.events = try tx.deleteEvents(before: now.addingTimeInterval(-keep), limit: limit)
                }
                if let keep = policy.deliveryRetention {
                    batch.deliveries = try tx.deleteDeliveries(before: now.addingTimeInterval(-keep), limit: limit)
                }
                return .success(batch)
            }
            report.challenges += batch.challenges
            report.proofs += batch.proofs
            report.events += batch.events
            report.deliveries += batch.deliveries
            let full = [batch.challenges, batch.proofs, batch.events, batch.deliveries].contains(limit)
            if !full { break }
            if round == maximumBatches - 1 { report.incomplete = true }
        }
        return report
    }
}
