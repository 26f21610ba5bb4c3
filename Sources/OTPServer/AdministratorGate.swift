internal import Logging
internal import OTPProtocol

/// Stands in front of the daemon's router and refuses administrator calls
/// (`TwoFactorMethod.requiresAdministrator(payload:)`) from peers that are not administrators
/// (`ServerConfiguration.adminUIDs`/`adminGIDs`), by their `SO_PEERCRED` credentials.
///
/// This is the one place the check is made: `SocketServer` wraps every router in it, so the
/// router, and the service and store behind it, never see a refused call; nothing of the
/// account is read or written for it.
struct AdministratorGate: CallRouter {
    let router: any CallRouter
    let administrators: PeerPolicy
    let logger: Logger

    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
        if let refusal = refusal(payload, context) { return .failure(refusal) }
        return router.handleInline(payload: payload, context: context)
    }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        // Normally refused in `handleInline` already; checked again for a caller that comes
        // here directly.
        if let refusal = refusal(payload, context) { return .failure(refusal) }
        return await router.handle(payload: payload, context: context)
    }

    /// PERMISSION_DENIED when the call is administrative and the peer is no administrator.
    /// Logs who asked, never what (the payload may hold a phone number). The peer is looked at
    /// first: an administrator's listing request is not decoded here at all.
    private func refusal(_ payload: [UInt8], _ context: CallContext) -> RPCError? {
        guard !administrators.allows(context.peer), context.method.requiresAdministrator(payload: payload) else {
            return nil
        }
        logger.notice(
            "refused an administrator call from a peer that is not an administrator",
            metadata: [
                "method": "\(context.method.name)", "call.id": "\(context.callID)", "peer.uid": "\(context.peer.uid)",
                "peer.gid": "\(context.peer.gid)", "peer.pid": "\(context.peer.pid)",
            ])
        return RPCError(code: .permissionDenied, message: "\(context.method.name) needs an administrator peer")
    }
}
