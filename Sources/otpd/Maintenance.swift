import COTPSys
import Foundation
import Logging
import OTPCore
import OTPPostgres
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Deletes what the retention policy no longer keeps (`TwoFactorService.prune`), at start-up
/// and then every `interval`. Errors are logged and retried on the next round; they never stop
/// the daemon.
///
/// On PostgreSQL one daemon of the cluster prunes for all (``LeaderRole/pruner``).
struct Pruner: Service {
    let service: TwoFactorService
    let storage: DaemonStorage
    let interval: Duration
    let logger: Logger

    func run() async {
        await cancelWhenGracefulShutdown {
            await storage.runOncePerStore(.pruner) { await rounds() }
        }
    }

    private func rounds() async {
        while !Task.isCancelled {
            do {
                let report = try await service.prune()
                if report.total > 0 || report.incomplete {
                    logger.info(
                        "pruned",
                        metadata: [
                            "challenges": "\(report.challenges)", "proofs": "\(report.proofs)",
                            "events": "\(report.events)", "deliveries": "\(report.deliveries)",
                            "incomplete": "\(report.incomplete)",
                        ])
                }
            } catch {
                logger.warning("pruning failed; retrying next round", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}

/// The notification hook (docs/SECURITY.md §15): hands every new event of the configured kinds to
/// `notifier`, in order, at least once. Polls every 2 s; after a failure it waits longer each
/// time (up to a minute) and offers the same event again, so nothing is skipped.
///
/// On PostgreSQL one daemon of the cluster runs it for all (``LeaderRole/notificationHook``):
/// each event is delivered once by the cluster in normal operation, and at least once when
/// that daemon dies (its bookmark is in the database; the next holder starts there).
struct NotificationHook: Service {
    let service: TwoFactorService
    let storage: DaemonStorage
    let kinds: Set<EventKind>
    let notifier: any EventNotifier
    let logger: Logger

    func run() async {
        await cancelWhenGracefulShutdown {
            await storage.runOncePerStore(.notificationHook) { await rounds() }
        }
    }

    private func rounds() async {
        var pause = Duration.seconds(2)
        while !Task.isCancelled {
            do {
                let round = try await service.deliverNotifications(kinds: kinds, to: notifier)
                pause = .seconds(2)
                if !round.caughtUp { continue }
            } catch {
                logger.warning(
                    "notification hook failed; the event will be offered again",
                    metadata: ["error": "\(error)", "retry_in": "\(pause)"])
                pause = min(pause * 2, .seconds(60))
            }
            try? await Task.sleep(for: pause)
        }
    }
}

/// Runs the configured command once per event, with the event as one JSON object on stdin and
/// its kind, outcome and account in `OTPD_EVENT_KIND`, `OTPD_EVENT_OUTCOME` and
/// `OTPD_ACCOUNT_ID`. Exit status 0 means delivered; anything else, or running longer than the
/// timeout (the command is then killed), means "offer it again later". The command inherits no
/// file descriptor but stdout and stderr (the daemon's journal) and no environment but `PATH`.
/// Events never hold a code or a secret; the destination is masked.
struct CommandNotifier: EventNotifier {
    let command: String
    let timeout: Duration

    struct HookError: Error, CustomStringConvertible {
        let description: String
    }

    func notify(_ event: EventRecord) async throws {
        let input = Self.json(event)
        let environment = [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "OTPD_EVENT_KIND=\(event.kind.rawValue)", "OTPD_EVENT_OUTCOME=\(event.outcome.rawValue)",
            "OTPD_ACCOUNT_ID=\(event.accountID)",
        ]
        let command = self.command
        let timeout = self.timeout
        // Spawning and waiting block, so they run on their own thread, not the Swift pool.
        let result: Result<Void, HookError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(
                    returning: Self.run(command, input: Array(input.utf8), environment: environment, timeout: timeout))
            }
            thread.name = "otpd-notify"
            thread.start()
        }
        try result.get()
    }

    /// The event as one line of JSON.
    static func json(_ event: EventRecord) -> String {
        let object: [String: Any] = [
            "id": event.id, "account_id": event.accountID, "kind": event.kind.rawValue,
            "outcome": event.outcome.rawValue,
            "detail": event.detail, "destination": event.destinationMasked,
            "at": ISO8601DateFormatter().string(from: event.at),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static func run(_ command: String, input: [UInt8], environment: [String], timeout: Duration)
        -> Result<Void, HookError>
    {
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = input.withUnsafeBytes { bytes in
            cotp_spawn_with_input(command, envp, bytes.baseAddress, bytes.count, &pid)
        }
        guard spawned == 0 else {
            return .failure(HookError(description: "cannot run \(command): \(String(cString: strerror(spawned)))"))
        }

        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while true {
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid { break }
            if waited < 0 && errno != EINTR {
                return .failure(HookError(description: "waitpid: \(String(cString: strerror(errno)))"))
            }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return .failure(HookError(description: "\(command) ran longer than \(timeout) and was killed"))
            }
            usleep(10_000)
        }
        // WIFEXITED / WEXITSTATUS, which Swift does not import as functions.
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        guard exited && code == 0 else {
            return .failure(
                HookError(
                    description: exited
                        ? "\(command) exited with status \(code)" : "\(command) was killed by signal \(status & 0x7F)"))
        }
        return .success(())
    }
}
