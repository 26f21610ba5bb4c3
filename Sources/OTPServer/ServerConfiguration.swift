internal import NIOCore

/// How the daemon listens and what it allows. Every limit has a default that is safe for a
/// production shop; `otpd` fills this from its TOML file and flags.
public struct ServerConfiguration: Sendable {
    /// Where the daemon listens.
    public enum Listener: Sendable, Equatable {
        /// Bind a filesystem socket at this path (replacing a stale socket file safely).
        case path(String)
        /// Use a socket that is already bound and listening (systemd socket activation).
        case inherited(descriptor: Int32, path: String?)
    }

    public var listener: Listener
    /// Permission bits of a socket file the daemon creates (default 0660).
    public var socketMode: UInt32 = 0o660
    /// Group of a socket file the daemon creates; `nil` keeps the daemon's group.
    public var socketGroup: UInt32?
    /// Peer uids allowed to connect. Empty means: root and the daemon's own uid.
    public var allowedUIDs: Set<UInt32> = []
    /// Peer gids allowed to connect (in addition to the uids).
    public var allowedGIDs: Set<UInt32> = []
    /// Peer uids allowed to make administrator calls (`UnlockAccount`, `ResetAccount`,
    /// `SendTestSms`, and `ListEvents`/`ListDeliveries` across all accounts; see
    /// `TwoFactorMethod.requiresAdministrator(payload:)`). When both this and `adminGIDs` are
    /// empty: root and the daemon's own uid. An administrator must also be allowed to connect
    /// (`allowedUIDs`/`allowedGIDs`).
    public var adminUIDs: Set<UInt32> = []
    /// Peer primary gids (from `SO_PEERCRED`) allowed to make administrator calls, in addition
    /// to `adminUIDs`.
    public var adminGIDs: Set<UInt32> = []
    /// Largest frame payload accepted from a client, in bytes (default 64 KiB).
    public var maximumFrameSize: Int = 64 * 1024
    /// A connection with nothing in flight and no bytes received for this long is closed.
    public var idleTimeout: Duration = .seconds(300)
    /// A frame whose bytes do not all arrive within this time closes the connection
    /// (a client sending one byte a second costs only its own connection).
    public var frameTimeout: Duration = .seconds(10)
    /// Connections beyond this number are closed as soon as they are accepted.
    public var maximumConnections: Int = 1024
    /// Calls in flight on one connection beyond this number are answered RESOURCE_EXHAUSTED.
    public var maximumCallsInFlightPerConnection: Int = 512
    /// Answer bytes one connection may hold (set aside for its calls in flight, or waiting for
    /// its client to read them) before otpd stops reading from it and starts none of its calls
    /// (default 1 MiB). A connection holding nothing may always start one call.
    public var maximumAnswerBytesPerConnection: Int = 1024 * 1024
    /// Answer bytes all connections together may hold (default 64 MiB): past it, connections
    /// wait for room before they start calls, so hostile clients that never read cannot make
    /// the daemon hold more than this in answers, however many connections they open.
    public var maximumAnswerBytes: Int = 64 * 1024 * 1024
    /// Event-loop threads (default: one per two cores, at least one). The loops only frame,
    /// decode and encode; database work runs on the store's writer thread and the Swift
    /// concurrency pool, and the clients (on a Unix socket, always on this machine) need CPU
    /// too. On the 2-core bench machine one loop serves 15-20 % more Health calls per second
    /// than two, which only fight the client and each other for the cores.
    public var eventLoopThreads: Int = max(1, System.coreCount / 2)

    public init(listener: Listener) {
        self.listener = listener
    }
}
