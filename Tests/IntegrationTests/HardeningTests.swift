import Foundation
import OTPClient
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The socket file and its lock file.
@Suite("socket file and configuration hardening", .serialized)
struct HardeningTests {
    /// A symlink at the lock's path is not followed: otpd refuses to start and creates nothing
    /// where the link points.
    @Test func aSymlinkAtTheLockFileStopsOtpd() async throws {
        let daemon = try DaemonProcess()
        defer { Task { await daemon.cleanUp() } }
        let target = daemon.directory.file("elsewhere")
        #expect(symlink(target, daemon.socket + ".lock") == 0)
        let result = try runProgram(Binaries.otpd, daemon.arguments)
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(daemon.socket).lock is a symbolic link"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target), "the link was not followed")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }
}
