import Foundation
import Logging
import Testing

@testable import OTPStore

@Suite("daemon metadata")
struct DaemonMetaTests {
    /// The first start records its key's fingerprint; every later start is told that one, so
    /// otpd can refuse a different key.
    @Test func theFirstKeyFingerprintIsKept() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("otpd-meta-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("meta.sqlite").path
        let store = try SQLiteStore(path: path, logger: Logger(label: "test"))
        #expect(try await store.keyFingerprint(recordingIfAbsent: "first") == "first")
        #expect(try await store.keyFingerprint(recordingIfAbsent: "second") == "first")
        store.close()

        let reopened = try SQLiteStore(path: path, logger: Logger(label: "test"))
        defer { reopened.close() }
        #expect(try await reopened.keyFingerprint(recordingIfAbsent: "third") == "first")
        let stored = try await reopened.write { db in
            try db.query("SELECT value FROM daemon_meta WHERE key = 'key_fingerprint'").first?.first?.text
        }
        #expect(stored == "first")
    }
}
