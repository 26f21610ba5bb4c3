public import Foundation

/// The wall clock OTPCore reads, injected so that tests control time.
///
/// Conformers return the current time; nothing in OTPCore reads the system clock directly.
public protocol OTPClock: Sendable {
    /// The current wall-clock time.
    func now() -> Date
}

/// The system's wall clock (`Date()`).
///
/// It follows the system time, including adjustments; TOTP needs wall time, not a monotonic
/// clock, because the authenticator app on the user's phone uses wall time too.
public struct SystemClock: OTPClock {
    /// Creates a handle on the system clock; it holds no state.
    public init() {}

    /// The current system time.
    public func now() -> Date { Date() }
}

extension OTPClock where Self == SystemClock {
    /// The system clock, for call sites such as `clock: .system`.
    public static var system: SystemClock { SystemClock() }
}
