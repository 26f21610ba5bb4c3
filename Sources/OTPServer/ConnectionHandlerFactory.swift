package import Logging
package import NIOCore

/// Builds a `ConnectionHandler` for code of this package that drives one without a socket: the
/// connection fuzz harness (`Fuzz/ConnectionHarness`), which puts it on an `EmbeddedChannel`.
/// The daemon itself builds its handlers in `SocketServer`; nothing here is part of the
/// module's public API.
package enum ConnectionHandlerFactory {
    /// A fresh handler for one connection, the only handler its pipeline needs, whose peer is
    /// pid 1 as root.
    ///
    /// - Parameters:
    ///   - router: answers the calls; on an `EmbeddedChannel` it must answer every call inline
    ///     (`handleInline`), since the embedded event loop is not thread-safe.
    ///   - maximumFrame: the largest frame payload accepted.
    ///   - frameTimeout: a frame must arrive whole within this time after its first byte.
    ///   - idleTimeout: a silent connection is closed after this long.
    ///   - maximumInFlight: calls in flight beyond this are refused.
    ///   - answerBytes: answer bytes the connection may hold.
    ///   - daemonAnswerBytes: the ceiling of the daemon-wide answer budget, this connection's own.
    ///   - logger: where the handler logs.
    package static func make(
        router: any CallRouter, maximumFrame: Int, frameTimeout: TimeAmount,
        idleTimeout: TimeAmount, maximumInFlight: Int, answerBytes: Int, daemonAnswerBytes: Int, logger: Logger
    ) -> any ChannelHandler {
        ConnectionHandler(
            router: router, peer: PeerCredentials(pid: 1, uid: 0, gid: 0),
            limits: ConnectionHandler.Limits(
                maximumFrame: maximumFrame, frameTimeout: frameTimeout, idleTimeout: idleTimeout,
                maximumInFlight: maximumInFlight, answerBytes: answerBytes),
            daemonBudget: AnswerBudget(limit: daemonAnswerBytes), logger: logger)
    }
}
