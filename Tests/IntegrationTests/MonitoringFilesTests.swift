import Foundation
import OTPMetrics
import Testing

/// The example alert rules and dashboard in docs/monitoring: Prometheus' own `promtool` loads
/// the rules and runs their unit tests, and every metric either file names is one otpd records.
@Suite("monitoring files")
struct MonitoringFilesTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/monitoring")

    static func file(_ name: String) -> String { directory.appendingPathComponent(name).path }

    @Test func theAlertRulesLoadAndPassTheirUnitTests() throws {
        let check = try runProgram("/usr/bin/promtool", ["check", "rules", Self.file("otpd-alerts.yml")])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let test = try runProgram("/usr/bin/promtool", ["test", "rules", Self.file("otpd-alerts.test.yml")])
        #expect(test.status == 0, "\(test.stdout)\(test.stderr)")
    }

    /// A renamed metric would leave a silent alert or an empty panel behind.
    @Test func everyMetricTheRulesAndTheDashboardNameExists() throws {
        let known = Set([
            OTPMetrics.calls, OTPMetrics.verifications, OTPMetrics.lockouts, OTPMetrics.smsSends,
            OTPMetrics.deliveryReports, OTPMetrics.budgetRefusals, OTPMetrics.breakerTrips, OTPMetrics.walBytes,
            OTPMetrics.connections, OTPMetrics.callsInFlight, OTPMetrics.notificationBacklog,
            OTPMetrics.storeConflicts, OTPMetrics.storeReachable, OTPMetrics.auditEventsCapped,
            OTPMetrics.residentBytes,
        ]).union(
            [
                OTPMetrics.callDuration, OTPMetrics.twilioRequestDuration, OTPMetrics.commitDuration,
                OTPMetrics.writerBatchSize,
            ].flatMap { [$0, $0 + "_bucket", $0 + "_sum", $0 + "_count"] })
        let dashboard = try String(contentsOfFile: Self.file("otpd-dashboard.json"), encoding: .utf8)
        #expect(try JSONSerialization.jsonObject(with: Data(dashboard.utf8)) is [String: Any])
        for name in ["otpd-alerts.yml", "otpd-alerts.test.yml", "otpd-dashboard.json"] {
            let text = try String(contentsOfFile: Self.file(name), encoding: .utf8)
            let used = Set(text.matches(of: /otpd_[a-z_]+/).map { String($0.output) })
            #expect(!used.isEmpty)
            #expect(used.subtracting(known).isEmpty, "\(name) names unknown metrics: \(used.subtracting(known))")
        }
    }
}
