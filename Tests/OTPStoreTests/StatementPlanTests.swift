import Foundation
import Logging
import Testing

@testable import OTPStore

/// The statements every Verify and StartChallenge runs, checked with SQLite's own planner: a
/// temporary table (UPSERT and RETURNING make one per call) or a full scan on this path once
/// cost a third of the writer's time under load, so this guards against their return without
/// measuring any time.
@Suite("statement plans")
struct StatementPlanTests {
    /// Runs `body` on the writer connection of a fresh, fully migrated store in a temporary
    /// directory, which is removed afterwards.
    static func onFreshStore<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T
    {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("otpd-plan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(
            path: directory.appendingPathComponent("plan.sqlite").path, logger: Logger(label: "test"))
        defer { store.close() }
        return try await store.write(body)
    }

    @Test func theHotPathNeedsNoTemporaryTableNoSortAndNoScan() async throws {

        let findings = try await Self.onFreshStore { connection in
            var findings: [String] = []
            for sql in SQLiteStoreTransaction.SQL.hotPath {
                let opcodes = try connection.query("EXPLAIN " + sql).compactMap { $0.dropFirst().first?.text }
                for opcode in ["OpenEphemeral", "SorterOpen"] where opcodes.contains(opcode) {
                    findings.append("\(opcode) in: \(sql)")
                }
                let plan = try connection.query("EXPLAIN QUERY PLAN " + sql).compactMap { $0.last?.text }
                for step in plan where step.hasPrefix("SCAN ") {
                    findings.append("\(step) in: \(sql)")
                }
            }
            return findings
        }
        #expect(findings.isEmpty, "\(findings.joined(separator: "\n"))")
    }

    /// The pruner deletes expired challenges and proofs through their expiry indexes, so a
    /// prune reads only what it deletes.
    @Test func expiredRowsAreFoundThroughTheExpiryIndexes() async throws {
        let plans = try await Self.onFreshStore { connection in
            try [SQLiteStoreTransaction.SQL.deleteExpiredChallenges, SQLiteStoreTransaction.SQL.deleteExpiredProofs].map
            {
                try connection.query("EXPLAIN QUERY PLAN " + $0).compactMap { $0.last?.text }.joined(separator: "; ")
            }
        }
        #expect(plans[0].contains("INDEX challenges_by_expiry"), "\(plans[0])")
        #expect(plans[1].contains("INDEX proofs_by_expiry"), "\(plans[1])")
        #expect(!plans.joined().contains("SCAN"), "\(plans)")
    }

    @Test func theCheckWouldCatchAnUpsertOrReturning() async throws {
        let opcodes = try await Self.onFreshStore { connection in
            try connection.query(
                "EXPLAIN INSERT INTO events (account_id, kind, outcome, at) VALUES ('a', 'k', 'o', 1) RETURNING id"
            ).compactMap { $0.dropFirst().first?.text }
        }
        #expect(opcodes.contains("OpenEphemeral"))
    }
}
