internal import Foundation
public import Logging
public import OTPCore
public import OTPProtocol
import Synchronization

/// Facts about the running daemon that `ServerInfo` reports.
public struct DaemonFacts: Sendable {
    public var version: String
    /// "sqlite" or "postgresql".
    public var storageBackend: String
    /// The database file, or the PostgreSQL URL without a password.
    public var databasePath: String
    public var schemaVersion: UInt32
    public var smsSender: String
    public var maximumConnections: Int
    public var startedAt: ContinuousClock.Instant
    public var startedAtUnix: Int64
    /// The store's last reachability check, which `ServerInfo` reports.
    public var storageStatus: StorageStatus

    public init(
        version: String, storageBackend: String = "sqlite", databasePath: String, schemaVersion: UInt32,
        smsSender: String, maximumConnections: Int, startedAt: ContinuousClock.Instant, startedAtUnix: Int64,
        storageStatus: StorageStatus = StorageStatus()
    ) {
        self.version = version
        self.storageBackend = storageBackend
        self.storageStatus = storageStatus
        self.databasePath = databasePath
        self.schemaVersion = schemaVersion
        self.smsSender = smsSender
        self.maximumConnections = maximumConnections
        self.startedAt = startedAt
        self.startedAtUnix = startedAtUnix
    }
}

/// Whether the store answered its last check, set by whoever checks it (otpd's
/// `StorageMonitor`) and read by `ServerInfo` without any I/O.
public final class StorageStatus: Sendable {
    private let state = Mutex<String?>(nil)

    public init() {}

    /// Why the last check failed; nil when it succeeded (or none ran yet).
    public var problem: String? { state.withLock { $0 } }

    public func record(problem: String?) {
        state.withLock { $0 = problem }
    }
}

/// Routes the `otp.v1.TwoFactor` methods: `Health` and `ServerInfo` on the event loop, every
/// other method through the generated `TwoFactorHandler.dispatch(_:_:)` to its handler method
/// (TwoFactorRouter+Handler.swift), which calls the domain service, translating between wire
/// messages and domain values.
public struct TwoFactorRouter: CallRouter {
    private let facts: DaemonFacts
    private let statistics: ConnectionStatistics
    let service: TwoFactorService
    let logger: Logger
    /// The metrics text `GetMetrics` answers with (the daemon's Prometheus registry).
    let metricsText: @Sendable () -> String

    /// - Parameter metricsText: what `GetMetrics` answers; by default nothing.
    public init(
        facts: DaemonFacts, statistics: ConnectionStatistics, service: TwoFactorService, logger: Logger,
        metricsText: @escaping @Sendable () -> String = { "" }
    ) {
        self.facts = facts
        self.statistics = statistics
        self.service = service
        self.logger = logger
        self.metricsText = metricsText
    }

    public func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
        switch context.method {
        case .health:
            do throws(RPCError) {
                if !payload.isEmpty { _ = try HealthRequest(serialized: payload) }  // refuse a malformed one
            } catch {
                return .failure(error)
            }
            return .success(Self.serving)
        case .serverInfo:
            return TwoFactor.serverInfo.serveInline(payload) { _ in currentServerInfo() }
        default:
            return nil
        }
    }

    /// The `Health` answer: it never changes while the daemon serves.
    static let servingResponse = HealthResponse(status: "SERVING")
    /// The same, encoded once for the inline path.
    private static let serving = servingResponse.serialized()

    /// The `ServerInfo` answer, made on the event loop (it needs no I/O).
    func currentServerInfo() -> ServerInfoResponse {
        let uptime = ContinuousClock.now - facts.startedAt
        return ServerInfoResponse(
            version: facts.version, uptimeSeconds: UInt64(max(0, uptime.components.seconds)),
            databasePath: facts.databasePath, schemaVersion: facts.schemaVersion,
            connections: UInt32(statistics.count), maxConnections: UInt32(facts.maximumConnections),
            smsSender: facts.smsSender, startedAt: facts.startedAtUnix,
            unrecordedEvents: UInt64(max(0, service.unrecordedEvents)), storageBackend: facts.storageBackend,
            storageReachable: facts.storageStatus.problem == nil, storageProblem: facts.storageStatus.problem ?? "")
    }

    public func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        do throws(RPCError) {
            return .success(try await dispatch(payload, context))
        } catch {
            return .failure(error)
        }
    }
}
