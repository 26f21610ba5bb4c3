internal import OTPMetrics
internal import OTPProtocol
internal import Synchronization

/// Stands in front of every router (outside the administrator check, so refusals count too)
/// and records each answered call: `otpd_calls_total` by method and status,
/// `otpd_call_duration_seconds` by method, and the daemon's `otpd_calls_in_flight`. The
/// instruments of each method are made once (`OTPMetrics.CallInstruments`), so a call costs two
/// clock reads, an atomic add and a histogram bucket.
///
/// Calls answered inline on the event loop (`Health`, `ServerInfo`, and refusals made before a
/// call starts) are counted but not timed: they take well under the smallest bucket (100 µs),
/// and timing them cost a third more CPU per `Health` call with 64 in flight (1.17 to 1.72 µs,
/// `scripts/bench.sh`), where counting alone costs an atomic add.
struct MeteredRouter: CallRouter {
    let router: any CallRouter
    private let instruments: [TwoFactorMethod: OTPMetrics.CallInstruments]
    private let inFlight: InFlightCount

    init(router: any CallRouter) {
        self.router = router
        instruments = Dictionary(
            uniqueKeysWithValues: TwoFactorMethod.allCases.map { ($0, OTPMetrics.CallInstruments(method: $0.name)) })
        inFlight = InFlightCount()
    }

    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
        guard let result = router.handleInline(payload: payload, context: context) else { return nil }
        instruments[context.method]?.count(status: Self.status(result))
        return result
    }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        let started = ContinuousClock.now
        inFlight.change(by: 1)
        defer { inFlight.change(by: -1) }
        let result = await router.handle(payload: payload, context: context)
        record(result, context.method, since: started)
        return result
    }

    private func record(
        _ result: Result<[UInt8], RPCError>, _ method: TwoFactorMethod, since started: ContinuousClock.Instant
    ) {
        instruments[method]?.record(status: Self.status(result), duration: ContinuousClock.now - started)
    }

    /// The status label: nil for OK (its counter is made once), else the code's name.
    private static func status(_ result: Result<[UInt8], RPCError>) -> String? {
        switch result {
        case .success: nil
        case .failure(let error): error.code.description
        }
    }
}

/// The daemon's calls running off the event loops, kept in the `otpd_calls_in_flight` gauge.
final class InFlightCount: Sendable {
    private let count = Atomic<Int>(0)

    func change(by delta: Int) {
        let now = count.add(delta, ordering: .relaxed).newValue
        OTPMetrics.setCallsInFlight(now)
    }
}
