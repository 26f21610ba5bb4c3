import Foundation
import OTPClient
import OTPStore
import OTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `otpd --check-database`, the background check and what `Health` and `otpctl doctor` say about
/// its findings (docs/OPERATIONS.md, "What is checked at start").
@Suite("Database checks of the daemon")
struct DatabaseCheckTests {
    /// Overwrites the first page of `table`'s b-tree: start-up does not read it, every full
    /// check does.
    private func damageTable(_ table: String, in path: String) throws {
        let root: Int64
        do {
            let connection = try SQLiteConnection(path: path, create: false)
            root = try #require(
                try connection.scalar("SELECT rootpage FROM sqlite_master WHERE name = ?", [.text(table)]))
        }
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64((root - 1) * 4096))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 4096))
    }

    /// Waits (up to 10 s) until the daemon's log holds `text` `count` times.
    private func waitForLog(_ daemon: DaemonProcess, _ text: String, count: Int) async throws {
        for _ in 0..<200 {
            if daemon.log().components(separatedBy: text).count > count { return }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test func checkDatabaseSaysZeroForASoundFileAndTwoForADamagedOne() async throws {
        let daemon = try DaemonProcess()
        defer { Task { await daemon.cleanUp() } }
        try await daemon.start()
        // While otpd serves: the check is a second reader and changes nothing.
        let live = try runProgram(Binaries.otpd, ["--check-database", "--database", daemon.database])
        #expect(live.status == 0, "\(live.stderr)")
        #expect(live.stdout.contains("database OK"), "\(live.stdout)")
        #expect(await daemon.terminate() == 0)

        try damageTable("undeliverable_numbers", in: daemon.database)
        let damaged = try runProgram(Binaries.otpd, ["--check-database", "--database", daemon.database])
        #expect(damaged.status == 2)
        #expect(damaged.stderr.contains("failed PRAGMA integrity_check"), "\(damaged.stderr)")

        let missing = daemon.directory.file("missing.sqlite")
        let none = try runProgram(Binaries.otpd, ["--check-database", "--database", missing])
        #expect(none.status == 2)
        #expect(none.stderr.contains("no database"), "\(none.stderr)")
        #expect(!FileManager.default.fileExists(atPath: missing))
    }

    /// Damage in a table does not stop the start (start-up reads only the header and the
    /// schema), but the background check finds it: Health answers DATABASE_DAMAGED and doctor
    /// names it as a problem.
    @Test func damageFoundInTheBackgroundIsReportedByHealthAndDoctor() async throws {
        let daemon = try DaemonProcess(config: "[storage]\nintegrity_check = \"every_start\"\n")
        defer { Task { await daemon.cleanUp() } }
        try await daemon.start()
        #expect(await daemon.terminate() == 0)
        try damageTable("undeliverable_numbers", in: daemon.database)

        try await daemon.start()
        let client = daemon.client()
        var status = ""
        for _ in 0..<200 {
            status = try await client.health().status
            if status != "SERVING" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        await client.close()
        #expect(status == "DATABASE_DAMAGED", "\(daemon.log())")
        #expect(daemon.log().contains("database check found damage"))

        let doctor = try runProgram(
            Binaries.otpctl, ["doctor", "--socket", daemon.socket, "--key-file", daemon.keyPath])
        #expect(doctor.status == 1)
        #expect(doctor.stdout.contains("DATABASE_DAMAGED"), "\(doctor.stdout)")
        #expect(doctor.stdout.contains("otpd --check-database"), "\(doctor.stdout)")
    }

    /// After a clean stop nothing is checked in the background (by default); after a kill the
    /// next start checks every page, after it is ready.
    @Test func anUncleanShutdownIsFollowedByABackgroundCheck() async throws {
        let daemon = try DaemonProcess()
        defer { Task { await daemon.cleanUp() } }
        try await daemon.start()  // a new file: previous shutdown unknown, checked
        try await waitForLog(daemon, "database check passed", count: 1)
        #expect(await daemon.terminate() == 0)
        try await daemon.start()
        #expect(await daemon.terminate() == 0)
        try await daemon.start()
        await daemon.kill9()
        try await daemon.start()
        try await waitForLog(daemon, "database check passed", count: 2)
        let log = daemon.log()
        let starts = log.split(separator: "\n").filter { $0.contains("database opened") }
        #expect(starts.count == 4, "\(log)")
        #expect(starts.map { $0.contains("previous_shutdown=unknown") } == [true, false, false, false], "\(log)")
        #expect(starts.map { $0.contains("previous_shutdown=clean") } == [false, true, true, false], "\(log)")
        #expect(starts.last?.contains("previous_shutdown=unclean") == true, "\(log)")
        // The first start (unknown) and the one after the kill checked; the clean ones did not.
        #expect(log.components(separatedBy: "database check passed").count == 3, "\(log)")
    }
}
