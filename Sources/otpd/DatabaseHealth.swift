import Foundation
import OTPProtocol
import OTPServer
import OTPStore
import Synchronization

/// Whether the background database check found damage; read by every `Health` call on the
/// event loop, so it is one atomic load.
final class DatabaseDamage: Sendable {
    private let damaged = Atomic<Bool>(false)

    var isDamaged: Bool { damaged.load(ordering: .relaxed) }

    func record(_ verdict: IntegrityVerdict) {
        if case .failed = verdict { damaged.store(true, ordering: .relaxed) }
    }
}

/// The daemon's router with `Health` telling about the database: `DATABASE_DAMAGED` instead of
/// `SERVING` once the background check (`BackgroundIntegrityCheck`) has found damage. otpd
/// goes on serving what it can still read (a request that meets a damaged page is refused with
/// UNAVAILABLE, never granted), so that monitoring and `otpctl doctor` see the damage without
/// every administrator being locked out at once.
struct DatabaseHealthRouter: CallRouter {
    let inner: TwoFactorRouter
    let damage: DatabaseDamage

    /// The `Health` answer once the database check has found damage.
    static let damagedStatus = "DATABASE_DAMAGED"
    private static let damagedAnswer = HealthResponse(status: damagedStatus).serialized()

    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
        let answer = inner.handleInline(payload: payload, context: context)
        if context.method == .health, case .success = answer, damage.isDamaged {
            return .success(Self.damagedAnswer)
        }
        return answer
    }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        await inner.handle(payload: payload, context: context)
    }
}
