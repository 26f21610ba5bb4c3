internal import COTPSys
public import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOPosix
internal import OTPMetrics
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
    private let answerBudget: AnswerBudget

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
        self.answerBudget = AnswerBudget(limit: configuration.maximumAnswerBytes)
    }

    /// Answer bytes the connections hold now (set aside for calls in flight, or not yet written).
    public var answerBytesHeld: Int { answerBudget.charged }

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
            maximumInFlight: configuration.maximumCallsInFlightPerConnection,
            answerBytes: configuration.maximumAnswerBytesPerConnection)
        let answerBudget = self.answerBudget
        // Every call is metered, and passes the administrator check before the router sees it.
        let router = MeteredRouter(
            router: AdministratorGate(
                router: self.router, administrators: PeerPolicy(administratorsOf: configuration), logger: logger))
        let logger = self.logger
        let connections = self.connections

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .childChannelInitializer { channel in
                channel.peerCredentials().flatMapThrowing { peer in
                    guard policy.allows(peer) else {
                        logger.warning(
                            "refused connection from a peer that is not allowed",
                            metadata: [
                                "peer.uid": "\(peer.uid)", "peer.gid": "\(peer.gid)", "peer.pid": "\(peer.pid)",
                            ])
                        throw ListenError(description: "peer \(peer) is not allowed")
                    }
                    let admitted = connections.withLockedValue { $0.admit(channel, limit: maximumConnections) }
                    guard admitted else {
                        logger.warning(
                            "refused connection: too many connections",
                            metadata: [
                                "limit": "\(maximumConnections)"
                            ])
                        throw ListenError(description: "too many connections")
                    }
                    channel.closeFuture.whenComplete { _ in
                        connections.withLockedValue { $0.remove(channel) }
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(
                            router: router, peer: peer, limits: limits, daemonBudget: answerBudget, logger: logger))
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
            return try await bindPrivately(bootstrap, at: path)
        }
    }

    /// The bytes a socket path may have: `bindPrivately` binds at `<path>.XXXXXX/s` first,
    /// which is 9 bytes longer and must fit in what SwiftNIO accepts for a Unix socket path
    /// (103 bytes, the portable size of `sun_path` without its NUL).
    public static let maximumSocketPathLength = 103 - 9

    /// Binds and listens on a new socket file at `path` that has its final mode and group from
    /// the moment it appears there.
    ///
    /// Why this way, on Linux: the mode of an AF_UNIX socket file comes from the umask at
    /// `bind(2)` (`fchmod` on the unbound socket does not carry over), and there is no
    /// `fchown` for the file through the socket, so the file can only be adjusted by path once
    /// it exists. Changing the umask around `bind` affects every thread of the process (the
    /// store and the hook create files meanwhile), and `chmod`/`chown` on `path` after `bind`
    /// leave a window in which the file is reachable with the wrong group, and in which
    /// whoever can change the directory could put a symlink there for `chown` to follow. So:
    /// 1. `mkdtemp` makes `<path>.XXXXXX`, mode 0700, owned by otpd: no other user (root
    ///    aside) can enter it, look up or replace anything in it.
    /// 2. The socket is bound (and listening) as `s` inside it; nobody else can connect yet.
    /// 3. `fchmodat`/`fchownat` (without following symlinks) set the mode and group, relative to
    ///    a descriptor of that directory.
    /// 4. `renameat(2)` moves it onto `path` atomically (replacing, never following, whatever
    ///    is there), so the path shows either nothing or the finished socket; then the
    ///    directory is removed.
    /// The directory holding `path` must itself be writable only by trusted users (or sticky,
    /// like /tmp), as it must be for any socket: whoever can write it can replace the socket.
    private func bindPrivately(_ bootstrap: ServerBootstrap, at path: String) async throws -> any Channel {
        guard path.utf8.count <= Self.maximumSocketPathLength else {
            throw ListenError(
                description:
                    "socket path \(path) is too long (at most \(Self.maximumSocketPathLength) bytes: it is bound as \(path).XXXXXX/s first)"
            )
        }
        var template = Array((path + ".XXXXXX").utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ListenError(
                description: "cannot create a private directory beside \(path): \(String(cString: strerror(errno)))")
        }
        let privateDirectory = String(cString: created)
        defer { rmdir(privateDirectory) }
        let directory = open(privateDirectory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard directory >= 0 else {
            throw ListenError(description: "cannot open \(privateDirectory): \(String(cString: strerror(errno)))")
        }
        defer { close(directory) }
        var bound = false
        defer { if bound { unlinkat(directory, "s", 0) } }  // still there only if something failed

        let channel = try await bootstrap.bind(unixDomainSocketPath: privateDirectory + "/s").get()
        bound = true
        do {
            guard fchmodat(directory, "s", mode_t(configuration.socketMode), 0) == 0 else {
                throw ListenError(description: "cannot set mode of \(path): \(String(cString: strerror(errno)))")
            }
            if let gid = configuration.socketGroup, fchownat(directory, "s", uid_t.max, gid, AT_SYMLINK_NOFOLLOW) != 0 {
                throw ListenError(
                    description: "cannot set group \(gid) on \(path): \(String(cString: strerror(errno)))")
            }
            guard renameat(directory, "s", AT_FDCWD, path) == 0 else {
                throw ListenError(description: "cannot move the socket to \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            channel.close(promise: nil)
            throw error
        }
        bound = false
        return channel
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
                    description:
                        "\(path).lock is a symbolic link; otpd does not follow it (remove it if you did not expect it)")
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
        OTPMetrics.setConnections(channels.count)
        return true
    }

    mutating func remove(_ channel: any Channel) {
        channels.removeValue(forKey: ObjectIdentifier(channel))
        OTPMetrics.setConnections(channels.count)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
