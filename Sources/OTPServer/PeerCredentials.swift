internal import COTPSys
internal import NIOCore

#if canImport(Glibc)
    internal import Glibc
#endif

/// Who is on the other end of a Unix socket connection, from `SO_PEERCRED`.
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }
}

/// A set of peers by uid or by primary gid, as `SO_PEERCRED` reports them (supplementary
/// groups are not part of `SO_PEERCRED` and do not count): who may talk to the daemon at all
/// (docs/SECURITY.md §17), and who may make administrator calls.
struct PeerPolicy: Sendable {
    let uids: Set<UInt32>
    let gids: Set<UInt32>

    /// The clients: `allowedUIDs` (root and the daemon's own uid when empty) and `allowedGIDs`.
    init(configuration: ServerConfiguration) {
        var uids = configuration.allowedUIDs
        if uids.isEmpty { uids = [0, getuid()] }
        self.uids = uids
        self.gids = configuration.allowedGIDs
    }

    /// The administrators: `adminUIDs` and `adminGIDs`; root and the daemon's own uid when
    /// both are empty. An administrator must also be a client to connect at all.
    init(administratorsOf configuration: ServerConfiguration) {
        if configuration.adminUIDs.isEmpty && configuration.adminGIDs.isEmpty {
            self.uids = [0, getuid()]
        } else {
            self.uids = configuration.adminUIDs
        }
        self.gids = configuration.adminGIDs
    }

    func allows(_ peer: PeerCredentials) -> Bool {
        uids.contains(peer.uid) || gids.contains(peer.gid)
    }
}

extension Channel {
    /// Reads the peer credentials of an accepted Unix socket channel, on its event loop.
    func peerCredentials() -> EventLoopFuture<PeerCredentials> {
        guard let provider = self as? any SocketOptionProvider else {
            return eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        return provider.unsafeGetSocketOption(
            level: SocketOptionLevel(cotp_sol_socket()), name: SocketOptionName(cotp_so_peercred())
        ).map { (raw: cotp_ucred) in
            PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid)
        }
    }
}
