import ArgumentParser
import Foundation
import OTPClient

/// Exit statuses of otpctl (documented in `otpctl --help` and the README).
enum ExitStatus: Int32 {
    case success = 0
    /// The daemon answered with an error status.
    case refused = 1
    /// The command line was wrong.
    case usage = 2
    /// The daemon could not be reached (or did not answer in time).
    case unreachable = 3
}

@main
struct OTPCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otpctl",
        abstract: "Talk to the otpd two-factor daemon.",
        discussion: """
            Commands by task (otpctl help COMMAND shows the details and the JSON keys):

              account        status, prefer, disable
                $ otpctl status alice
              phone          phone set
                $ otpctl phone set alice +14155550123
              codes          send, verify
                $ otpctl verify alice 123456 --purpose verify_phone --challenge ch_...
              authenticator  totp enroll, totp confirm
                $ otpctl totp enroll alice --proof-token pf_...
              backup         backup generate, backup redeem
                $ otpctl backup generate alice --proof-token pf_... --out codes.txt
              admin          events, unlock, reset
                $ otpctl unlock alice --actor ops --reason "called the help desk"
              sms            deliveries, report-delivery, sms test
                $ otpctl deliveries alice
              diagnostics    health, info, doctor
                $ otpctl info --json
                $ otpctl doctor --key-file /etc/otpd/otpd.key

            Exit status: 0 success, 1 refused by the daemon (the status name and message go to \
            stderr; a code that is not valid is a refusal too), 2 usage error (nothing was \
            sent), 3 daemon unreachable. With --json the output is one JSON value with stable \
            snake_case keys; times are Unix seconds (UTC) unless the command's help says \
            otherwise, and absent values are null. Errors are text on stderr.

            Shell completion: otpctl --generate-completion-script bash|zsh|fish > FILE.
            """,
        subcommands: [
            StatusCommand.self, PreferCommand.self, DisableCommand.self,
            PhoneCommand.self,
            SendCommand.self, VerifyCommand.self,
            TotpCommand.self,
            BackupCommand.self,
            EventsCommand.self, UnlockCommand.self, ResetCommand.self,
            DeliveriesCommand.self, ReportDeliveryCommand.self, SMSCommand.self,
            Health.self, Info.self, DoctorCommand.self, MetricsCommand.self,
        ])

    /// Parses and runs, mapping failures to the documented exit statuses.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("otpctl: \(failure.message)\n".utf8))
            Foundation.exit(failure.status.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(ExitStatus.usage.rawValue)
        }
    }
}

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "otpd's socket (default $OTPD_SOCKET or ./otpd.sock).")
    var socket: String?

    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false

    @Option(name: .long, help: "Seconds to wait for the daemon.")
    var timeout: Double = 10

    var socketPath: String {
        socket ?? ProcessInfo.processInfo.environment["OTPD_SOCKET"] ?? "otpd.sock"
    }

    /// A client that accepts answers up to 4 MiB (the metrics text can pass the library's
    /// default of 64 KiB on a busy daemon).
    func client() -> OTPClient {
        OTPClient(
            socketPath: socketPath, defaultDeadline: .milliseconds(Int64(timeout * 1000)), maximumFrameSize: 4 << 20)
    }

    /// Runs `body` with a client, turning an `RPCError` into the right exit status.
    func run<T>(_ body: (OTPClient) async throws(RPCError) -> T) async throws(CommandFailure) -> T {
        let client = client()
        do {
            let value = try await body(client)
            await client.close()
            return value
        } catch {
            await client.close()
            throw CommandFailure(error)
        }
    }
}

/// A failed command: message for stderr and the exit status.
struct CommandFailure: Error {
    var status: ExitStatus
    var message: String

    init(status: ExitStatus, message: String) {
        self.status = status
        self.message = message
    }

    init(_ error: RPCError) {
        switch error.code {
        case .unavailable:
            self.init(status: .unreachable, message: "\(error.code): \(error.message)")
        case .deadlineExceeded where error.message.hasPrefix("no answer"):
            self.init(status: .unreachable, message: "\(error.code): \(error.message)")
        default:
            var message = "\(error.code): \(error.message)"
            if let wait = error.detail?.retryAfterSeconds, wait > 0 {
                message += " (try again in \(wait) s)"
            }
            self.init(status: .refused, message: message)
        }
    }
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the daemon answers.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let response = try await global.run { client throws(RPCError) in try await client.health() }
        if global.json {
            JSONOutput.print(["status": response.status])
        } else {
            print(response.status)
        }
    }
}

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the daemon's version, uptime, database and connections.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let info = try await global.run { client throws(RPCError) in try await client.serverInfo() }
        if global.json {
            JSONOutput.print([
                "version": info.version, "uptime_seconds": info.uptimeSeconds, "database_path": info.databasePath,
                "schema_version": info.schemaVersion, "connections": info.connections,
                "max_connections": info.maxConnections, "sms_sender": info.smsSender, "started_at": info.startedAt,
                "unrecorded_events": info.unrecordedEvents,
                "storage_backend": info.storageBackend.isEmpty ? "sqlite" : info.storageBackend,
                "storage_reachable": info.storageReachable, "storage_problem": info.storageProblem,
            ])
        } else {
            print("otpd \(info.version), up \(info.uptimeSeconds) s")
            let backend = info.storageBackend.isEmpty ? "sqlite" : info.storageBackend
            let reachable = info.storageReachable ? "reachable" : "UNREACHABLE: \(info.storageProblem)"
            print("database: \(backend) \(info.databasePath) (schema \(info.schemaVersion)), \(reachable)")
            print("connections: \(info.connections) of \(info.maxConnections)")
            print("sms sender: \(info.smsSender)")
            print("unrecorded events: \(info.unrecordedEvents)")
        }
    }
}
