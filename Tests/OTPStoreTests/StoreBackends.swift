import Foundation
import Logging
import OTPCore
import OTPPostgres
import OTPStore
import OTPTestSupport
import Testing

/// The stores every conformance test runs against.
enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgresql

    var testDescription: String { rawValue }
}

/// Runs `body` with a fresh, empty store of `backend`, and closes it afterwards.
func withConformanceStore(_ backend: StoreBackend, _ body: (any TwoFactorStore) async throws -> Void) async throws {
    switch backend {
    case .sqlite:
        let directory = "/tmp/otpd-conformance-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteTwoFactorStore(
            store: SQLiteStore(path: directory + "/otpd.sqlite", logger: Logger(label: "test")))
        defer { store.store.close() }
        try await body(store)
    case .postgresql:
        let database = try PostgresTestCluster.shared().createDatabase()
        let store = try await PostgresTwoFactorStore(
            settings: try PostgresSettings(url: database.url), password: database.password,
            logger: Logger(label: "test"), connectDeadline: .seconds(30))
        do {
            try await body(store)
        } catch {
            store.close()
            throw error
        }
        store.close()
    }
}

/// Whether `error` is a store's refusal of a value its schema does not allow.
func isConstraintViolation(_ error: any Error) -> Bool {
    (error as? StoreError)?.kind == .constraint || (error as? PostgresStoreError)?.kind == .constraint
}
