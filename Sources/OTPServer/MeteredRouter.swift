internal import OTPMetrics
internal import OTPProtocol
internal import Synchronization

/// Stands in front of every router (outside the administrator check, so refusals count too)
/// and records each answered call: `otpd_calls_total` by method and status,
/// `otpd_call_duration_seconds` by method, and the daemon's `otpd_calls_in_flight`. The
/// instruments of each method are made once (`OTPMetrics.CallInstruments`), so a call costs two
/// clock reads, an atomic add and a histogram bucket.
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
        let started = ContinuousClock.now
        guard let result = router.handleInline(payload: payload, context: context) else { return nil }
        record(result, context.method, since: started)
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
        let status: String?
        switch result {
        case .success: status = nil
        case .failure(let error): status = error.code.description
        }
        instruments[method]?.record(status: status, duration: ContinuousClock.now - started)
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
