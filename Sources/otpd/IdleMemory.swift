import COTPSys
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Gives back the memory an idle daemon does not use. Once otpd has been quiet for
/// `quietPeriod` after start-up or after a spell of work, it empties SQLite's page cache of
/// pages not in use (`DaemonStorage.releaseCacheMemory`: up to 32 MiB after busy hours), unmaps
/// its read-only pages (`cotp_release_code_pages`: code and constants of otpd and its
/// libraries, never writable data) and gives the C heap's free memory back (`malloc_trim`).
///
/// Why: the kernel maps every code page a process touches, and the 64 KiB around it
/// (fault-around). A fresh daemon held about 35 MiB resident, 30 of them pages of its binary and
/// libraries, most of them used once by start-up (the argument parser, the TOML reader, the
/// schema check, Foundation's and the Swift runtime's set-up). After the release an idle daemon
/// holds about 17 MiB (release build, `scripts/idle-memory.sh`). The pages stay in the page
/// cache, and so do the database's: what the next call uses is mapped or read again on first
/// access, a minor page fault or a read of the OS's cache each, so the first call after a
/// release costs up to about a millisecond more. Like a kernel freeing its init sections once
/// booted, but repeated after each spell of work.
///
/// A spell of work: a second in which the process used more than 2 % of a core (its CPU time,
/// all threads), or resident memory that grew by more than `growthWorthReleasing` over what the
/// daemon settled at after its last release (a few small calls can map megabytes of code while
/// using little CPU). Quiet: no such second for `quietPeriod`. The work that runs while idle (the
/// storage monitor every 5 s, the gauges every 10 s) stays far below both, so a quiet daemon
/// does not release over and over: right after a release, its own periodic work maps back a few
/// MiB (4 in the release build, 8 in the debug build), which is why the floor is taken
/// `settling` after the release, not at once. The service wakes once a second to read its CPU
/// time, and its resident size once settled; it costs nothing else.
struct IdleMemoryRelease: Service {
    /// How long otpd must be quiet before it releases (`[server] release_memory_after_idle_seconds`).
    let quietPeriod: Duration
    let storage: DaemonStorage
    let logger: Logger

    /// CPU time in one second above which that second was work.
    static let busyCPUPerSecond = Duration.milliseconds(20)
    /// Growth over the settled floor that counts as work.
    static let growthWorthReleasing = 6 * 1_048_576
    /// How long after a release the floor is taken: one round of the storage monitor.
    static let settling = Duration.seconds(5)

    private enum Phase {
        /// Work since the last release (or start-up): release once quiet.
        case worked
        /// Released; the floor is taken at `until` unless work comes first.
        case settling(until: ContinuousClock.Instant)
        /// Quiet since the release, holding `floor` bytes once settled.
        case settled(floor: Int)
    }

    func run() async {
        await cancelWhenGracefulShutdown {
            var phase = Phase.worked
            var quietSince = ContinuousClock.now
            var cpu = ProcessFacts.cpuTime()
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(1)) } catch { return }
                let now = ContinuousClock.now
                let cpuNow = ProcessFacts.cpuTime()
                var busy = cpuNow - cpu > Self.busyCPUPerSecond
                cpu = cpuNow
                if case .settled(let floor) = phase, ProcessFacts.residentBytes() > floor + Self.growthWorthReleasing {
                    busy = true
                }
                if busy {
                    quietSince = now
                    phase = .worked
                }
                switch phase {
                case .worked where now - quietSince >= quietPeriod:
                    await release()
                    phase = .settling(until: ContinuousClock.now + Self.settling)
                    cpu = ProcessFacts.cpuTime()  // the release's own cost is not work
                case .settling(let until) where now >= until:
                    phase = .settled(floor: ProcessFacts.residentBytes())
                default:
                    break
                }
            }
        }
    }

    /// Releases the page cache's memory, the read-only pages and the C heap's free memory now;
    /// logs the resident memory before and after (debug level).
    func release() async {
        let before = ProcessFacts.residentBytes()
        var cacheReleased = 0
        do {
            cacheReleased = try await storage.releaseCacheMemory()
        } catch {
            logger.debug("idle: the page cache was not released", metadata: ["error": "\(error)"])
        }
        let advised = cotp_release_code_pages()
        _ = cotp_release_free_memory()
        let after = ProcessFacts.residentBytes()
        logger.debug(
            "idle: memory released",
            metadata: [
                "resident_mib_before": "\(Self.mebibytes(before))", "resident_mib_after": "\(Self.mebibytes(after))",
                "page_cache_mib_released": "\(Self.mebibytes(cacheReleased))",
                "read_only_mib_advised": "\(Self.mebibytes(advised))",
            ])
    }

    private static func mebibytes(_ bytes: Int) -> String {
        String(format: "%.1f", Double(bytes) / 1_048_576)
    }
}

/// Facts about this process that otpd reads while it runs: its resident memory
/// (`IdleMemoryRelease`, the `otpd_resident_memory_bytes` gauge) and its CPU time.
enum ProcessFacts {
    /// Resident memory in bytes, from /proc/self/statm (0 when it cannot be read).
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// CPU time used by every thread of the process so far.
    static func cpuTime() -> Duration {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return .seconds(time.tv_sec) + .nanoseconds(time.tv_nsec)
    }
}
