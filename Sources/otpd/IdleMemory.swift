import COTPSys
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Gives back the memory an idle daemon does not use: once otpd has been quiet for
/// `quietPeriod` after start-up or after a spell of work, it empties SQLite's page cache of
/// pages not in use (`DaemonStorage.releaseCacheMemory`: up to 32 MiB after busy hours), unmaps
/// its read-only pages (`cotp_release_code_pages`: code and constants of otpd and its
/// libraries, never writable data) and gives the C heap's free memory back (`malloc_trim`).
///
/// Why: the kernel maps every code page a process touches, and the 64 KiB around it
/// (fault-around). A fresh daemon held about 35 MiB resident, 30 of them pages of its binary and
/// libraries, most of them used once by start-up (the argument parser, the TOML reader, the
/// schema check, Foundation's and the Swift runtime's set-up). After the release an idle daemon
/// holds about 16 MiB (release build, `scripts/idle-memory.sh`). The pages stay in the page
/// cache, and so do the database's: what the next call uses is mapped or read again on first
/// access, a minor page fault or a read of the OS's cache each, so the first call after a
/// quiet spell costs about a millisecond more. Like a kernel freeing
/// its init sections once booted, but repeated after each spell of work.
///
/// Quiet: the process used less than 2 % of a core (its CPU time, all threads) in each second of
/// the period. The work that runs while idle (the storage monitor every 5 s, the gauges every
/// 10 s) stays far below that. The service sleeps a second between looks and costs nothing else.
struct IdleMemoryRelease: Service {
    /// How long otpd must be quiet before it releases (`[server] release_memory_after_idle_seconds`).
    let quietPeriod: Duration
    let storage: DaemonStorage
    let logger: Logger

    /// CPU time in one second above which that second was not quiet.
    static let busyCPUPerSecond = Duration.milliseconds(20)

    func run() async {
        await cancelWhenGracefulShutdown {
            var worked = true  // start-up
            var quietSince = ContinuousClock.now
            var cpu = Self.processCPUTime()
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(1)) } catch { return }
                let now = ContinuousClock.now
                if Self.processCPUTime() - cpu > Self.busyCPUPerSecond {
                    worked = true
                    quietSince = now
                }
                if worked && now - quietSince >= quietPeriod {
                    await release()
                    worked = false
                }
                cpu = Self.processCPUTime()  // after the release, so its own cost is not work
            }
        }
    }

    /// Releases the page cache's memory, the read-only pages and the C heap's free memory now;
    /// logs the resident memory before and after (debug level).
    func release() async {
        let before = Self.residentBytes()
        var cacheReleased = 0
        do {
            cacheReleased = try await storage.releaseCacheMemory()
        } catch {
            logger.debug("idle: the page cache was not released", metadata: ["error": "\(error)"])
        }
        let advised = cotp_release_code_pages()
        _ = cotp_release_free_memory()
        let after = Self.residentBytes()
        logger.debug(
            "idle: memory released",
            metadata: [
                "resident_mib_before": "\(Self.mebibytes(before))", "resident_mib_after": "\(Self.mebibytes(after))",
                "page_cache_mib_released": "\(Self.mebibytes(cacheReleased))",
                "read_only_mib_advised": "\(Self.mebibytes(advised))",
            ])
    }

    /// This process's resident memory, from /proc/self/statm (0 when it cannot be read).
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// CPU time used by every thread of the process so far.
    static func processCPUTime() -> Duration {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return .seconds(time.tv_sec) + .nanoseconds(time.tv_nsec)
    }

    private static func mebibytes(_ bytes: Int) -> String {
        String(format: "%.1f", Double(bytes) / 1_048_576)
    }
}
