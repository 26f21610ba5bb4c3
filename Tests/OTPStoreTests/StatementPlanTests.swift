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

    /// What is wrong with the plans of `statements` on `connection`: a temporary table (on the
    /// hot path), a sort, or a walk through a whole table (other than a bounded scan of the
    /// catalogue). A scan of a subquery's own output reads only what the subquery found.
    static func findings(_ statements: [String], on connection: SQLiteConnection) throws -> [String] {
        let hotPath = Set(SQL.hotPath)
        var findings: [String] = []
        for sql in statements {
            let opcodes = try connection.query("EXPLAIN " + sql).compactMap { $0.dropFirst().first?.text }
            let forbidden = hotPath.contains(sql) ? ["OpenEphemeral", "SorterOpen"] : ["SorterOpen"]
            for opcode in forbidden where opcodes.contains(opcode) {
                findings.append("\(opcode) in: \(sql)")
            }
            let plan = try connection.query("EXPLAIN QUERY PLAN " + sql).compactMap { $0.last?.text }
            for step in plan where step.hasPrefix("SCAN ") && !step.hasPrefix("SCAN (subquery-") {
                if let table = SQL.boundedScans[sql], step == "SCAN \(table)" { continue }
                findings.append("\(step) in: \(sql)")
            }
            for step in plan where step.contains("TEMP B-TREE") {
                findings.append("\(step) in: \(sql)")
            }
        }
        return findings
    }

    @Test func theHotPathNeedsNoTemporaryTableNoSortAndNoScan() async throws {
        let findings = try await Self.onFreshStore { connection in
            try Self.findings(SQL.hotPath, on: connection)
        }
        #expect(findings.isEmpty, "\(findings.joined(separator: "\n"))")
    }

    /// Every statement of the store, not only the hot path: the SMS budgets, backup codes,
    /// events, deliveries and the daemon's metadata find their rows through an index too.
    @Test func everyStatementOfTheCatalogueFindsItsRowsThroughAnIndex() async throws {
        let findings = try await Self.onFreshStore { connection in
            try Self.findings(SQL.all, on: connection)
        }
        #expect(findings.isEmpty, "\(findings.joined(separator: "\n"))")
        #expect(Set(SQL.hotPath).isSubset(of: SQL.all))
        #expect(Set(SQL.boundedScans.keys).isSubset(of: SQL.all))
    }

    /// The statements that several indexes could serve, and the one each must use: a budget
    /// count through another index of `sms_sends` would read every text of the day.
    static let indexes: [String: String] = [
        SQL.selectSMSSendsOfAccount: "INDEX sms_sends_by_account (account_id=? AND at>?)",
        SQL.countSMSSendsToPhone: "INDEX sms_sends_by_phone (phone=? AND at>?)",
        SQL.countSMSSendsToCountry: "INDEX sms_sends_by_country (country_code=? AND at>?)",
        SQL.countAllSMSSends: "INDEX sms_sends_by_time (at>?)",
        SQL.deleteOldSMSSends: "INDEX sms_sends_by_time (at<?)",
        SQL.consumeBackupCode: "PRIMARY KEY (account_id=? AND code_hash=?)",
        SQL.countUnusedBackupCodes: "PRIMARY KEY (account_id=?)",
        SQL.selectDeliveryBySID: "INDEX deliveries_by_sid (message_sid=?)",
        SQL.countBreakerTexts: "INDEX sms_sends_by_country (country_code=? AND at>?)",
        SQL.selectBreakerTexts: "INDEX sms_sends_by_time (at>?)",
        SQL.selectBreaker: "PRIMARY KEY (scope=?)",
    ]

    /// The statements of ``indexes`` whose plan does not use their index.
    static func indexFindings(on connection: SQLiteConnection) throws -> [String] {
        try indexes.compactMap { sql, index in
            let plan = try connection.query("EXPLAIN QUERY PLAN " + sql).compactMap { $0.last?.text }
            return plan.contains { $0.contains(" USING " + index) || $0.contains(" USING COVERING " + index) }
                ? nil : "\(plan.joined(separator: "; ")) instead of \(index) in: \(sql)"
        }
    }

    @Test func theBudgetAndBackupCodeStatementsUseTheirIndexes() async throws {
        let findings = try await Self.onFreshStore { connection in try Self.indexFindings(on: connection) }
        #expect(findings.isEmpty, "\(findings.joined(separator: "\n"))")
        #expect(Set(Self.indexes.keys).isSubset(of: SQL.all))
    }

    /// Without the index a statement needs, the checks report it: a full scan of the delivery
    /// log, a budget count through the wrong index.
    @Test func theChecksWouldCatchAMissingIndex() async throws {
        let (scans, indexes) = try await Self.onFreshStore { connection in
            try connection.execute("DROP INDEX deliveries_by_sid; DROP INDEX sms_sends_by_phone")
            return (try Self.findings(SQL.all, on: connection), try Self.indexFindings(on: connection))
        }
        #expect(scans.contains { $0.hasPrefix("SCAN deliveries in:") && $0.contains("message_sid = ?") }, "\(scans)")
        #expect(indexes.contains { $0.contains("sms_sends_by_phone") }, "\(indexes)")
    }

    /// The pruner deletes expired challenges and proofs through their expiry indexes, so a
    /// prune reads only what it deletes.
    @Test func expiredRowsAreFoundThroughTheExpiryIndexes() async throws {
        let plans = try await Self.onFreshStore { connection in
            try [SQL.deleteExpiredChallenges, SQL.deleteExpiredProofs].map {
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
