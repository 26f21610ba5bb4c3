internal import COTPSys
public import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOPosix
internal import OTPProtocol
public import ServiceLifecycle

#if canImport(Glibc)
    internal import Glibc
#endif

/// Why the daemon cannot listen.
public struct ListenError: Error, CustomStringConvertible {
    public var description: String
}

/// The otpd socket server: a `Service` that listens on a Unix socket, admits peers by their
/// credentials, serves calls through a `CallRouter`, and on graceful shutdown stops accepting,
/// lets calls in flight finish, and then returns.
public final class SocketServer: Service, Sendable {
    private enum State: Sendable {
        case idle
        case listening(any Channel)
        case stopped
    }

    private let configuration: ServerConfiguration
    private let router: any CallRouter
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let state = NIOLockedValueBox(State.idle)
    private let connections: ConnectionStatistics
    private let readiness: @Sendable () -> Void

    /// - Parameter onReady: called once the socket accepts connections (otpd sends
    ///   `READY=1` to systemd here).
    public init(
        configuration: ServerConfiguration, router: any CallRouter, statistics: ConnectionStatistics,
        logger: Logger, onReady: @escaping @Sendable () -> Void = {}
    ) {
        self.connections = statistics
        self.configuration = configuration
        self.router = router
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoopThreads))
        self.readiness = onReady
    }

    /// Connections open right now.
    public var connectionCount: Int { connections.count }

    public func run() async throws {
        let channel = try await listen()
        state.withLockedValue { $0 = .listening(channel) }
        logger.info("listening", metadata: ["socket": "\(socketPathDescription)"])
        readiness()
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        logger.info("stopped accepting; finishing calls in flight", metadata: ["connections": "\(connectionCount)"])
        await drainConnections()
        removeSocketFileIfOwned()
        state.withLockedValue { $0 = .stopped }
        try? await group.shutdownGracefully()
    }

    private var socketPathDescription: String {
        switch configuration.listener {
        case .path(let path): path
        case .inherited(let fd, let path): path ?? "inherited descriptor \(fd)"
        }
    }

    // MARK: Listening

    private func listen() async throws -> any Channel {
        let policy = PeerPolicy(configuration: configuration)
        let maximumConnections = configuration.maximumConnections
        let limits = ConnectionHandler.Limits(
            maximumFrame: configuration.maximumFrameSize,
            frameTimeout: TimeAmount(configuration.frameTimeout),
            idleTimeout: TimeAmount(configuration.idleTimeout),
            maximumInFlight: configuration.maximumCallsInFlightPerConnection)
        // Every call passes the administrator check before the router sees it.
        let router = AdministratorGate(
            router: self.router, administrators: PeerPolicy(administratorsOf: configuration), logger: logger)
        let logger = self.logger
        let connections = self.connections

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .childChannelInitializer { channel in
                channel.peerCredentials().flatMapThrowing { peer in
                    guard policy.allows(peer) else {
                        logger.warning("refused connection from a peer that is not allowed", metadata: [
                            "peer.uid": "\(peer.uid)", "peer.gid": "\(peer.gid)", "peer.pid": "\(peer.pid)",
                        ])
                        throw ListenError(description: "peer \(peer) is not allowed")
                    }
                    let admitted = connections.withLockedValue { $0.admit(channel, limit: maximumConnections) }
                    guard admitted else {
                        logger.warning("refused connection: too many connections", metadata: [
                            "limit": "\(maximumConnections)"
                        ])
                        throw ListenError(description: "too many connections")
                    }
                    channel.closeFuture.whenComplete { _ in
                        connections.withLockedValue { $0.remove(channel) }
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(router: router, peer: peer, limits: limits, logger: logger))
                }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            // One read per readiness event: clients send a call and wait for the answer, so a
            // second read would almost always be a wasted syscall that returns EAGAIN.
            .childChannelOption(.maxMessagesPerRead, value: 1)

        switch configuration.listener {
        case .inherited(let descriptor, _):
            return try await bootstrap.withBoundSocket(descriptor).get()
        case .path(let path):
            try prepareSocketPath(path)
            let previous = cotp_umask(0o777 & ~configuration.socketMode)
            defer { _ = cotp_umask(previous) }
            let channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
            guard chmod(path, mode_t(configuration.socketMode)) == 0 else {
                throw ListenError(description: "cannot set mode of \(path): \(String(cString: strerror(errno)))")
            }
            if let gid = configuration.socketGroup, chown(path, uid_t.max, gid) != 0 {
                throw ListenError(description: "cannot set group \(gid) on \(path): \(String(cString: strerror(errno)))")
            }
            return channel
        }
    }

    /// Takes the per-socket lock and removes a stale socket file; refuses when another otpd is
    /// live on the path or the path is something other than a socket.
    private func prepareSocketPath(_ path: String) throws {
        let lock = cotp_lock_file(path + ".lock")
        if lock == -2 {
            throw ListenError(description: "\(path).lock is not a regular file; refusing to use it as the lock")
        }
        if lock < 0 {
            switch errno {
            case EWOULDBLOCK:
                throw ListenError(description: "another otpd is running on \(path) (\(path).lock is held)")
            case ELOOP:
                throw ListenError(
                    description: "\(path).lock is a symbolic link; otpd does not follow it (remove it if you did not expect it)")
            default:
                throw ListenError(description: "cannot lock \(path).lock: \(String(cString: strerror(errno)))")
            }
        }
        // The descriptor stays open (and locked) until the process exits.
        var info = stat()
        guard lstat(path, &info) == 0 else { return }  // nothing there
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ListenError(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        switch cotp_unix_socket_is_live(path) {
        case 1:
            throw ListenError(description: "another process is accepting connections on \(path)")
        case 0:
            logger.notice("removing stale socket file", metadata: ["socket": "\(path)"])
            guard unlink(path) == 0 || errno == ENOENT else {
                throw ListenError(description: "cannot remove stale \(path): \(String(cString: strerror(errno)))")
            }
        default:
            throw ListenError(description: "cannot check \(path): \(String(cString: strerror(errno)))")
        }
    }

    private func removeSocketFileIfOwned() {
        if case .path(let path) = configuration.listener {
            unlink(path)
        }
    }

    /// Asks every connection to close once its calls in flight are answered, then waits.
    private func drainConnections() async {
        let channels = connections.withLockedValue { Array($0.channels.values) }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(QuiesceEvent())
        }
        for channel in channels {
            try? await channel.closeFuture.get()
        }
    }
}

/// The open connections of a server, for the connection limit, `ServerInfo` and graceful
/// shutdown. Shared between the server and whoever reports on it.
public final class ConnectionStatistics: Sendable {
    private let registry = NIOLockedValueBox(ConnectionRegistry())

    public init() {}

    /// Connections open right now.
    public var count: Int { registry.withLockedValue { $0.channels.count } }

    func withLockedValue<T>(_ body: (inout ConnectionRegistry) -> T) -> T {
        registry.withLockedValue(body)
    }
}

struct ConnectionRegistry: Sendable {
    var channels: [ObjectIdentifier: any Channel] = [:]

    mutating func admit(_ channel: any Channel, limit: Int) -> Bool {
        guard channels.count < limit else { return false }
        channels[ObjectIdentifier(channel)] = channel
        return true
    }

    mutating func remove(_ channel: any Channel) {
        channels.removeValue(forKey: ObjectIdentifier(channel))
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
