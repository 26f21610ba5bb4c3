public import Foundation
public import OTPCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A deterministic `RandomSource` (SplitMix64), so failures reproduce. Never for production.
public final class SeededRandom: RandomSource {
    private let state: Mutex<UInt64>

    public init(seed: UInt64 = 0x5EED) {
        state = Mutex(seed)
    }

    private func next() -> UInt64 {
        state.withLock { state in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    public func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var index = 0
        while index < buffer.count {
            let word = next()
            withUnsafeBytes(of: word) { bytes in
                for byte in bytes where index < buffer.count {
                    buffer[index] = byte
                    index += 1
                }
            }
        }
    }
}

/// A clock the test sets and moves by hand.
public final class ManualClock: OTPClock {
    private let current: Mutex<Date>

    /// Starts at `start` (default: 2027-01-15, a fixed instant well inside the TOTP range).
    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = Mutex(start)
    }

    public func now() -> Date { current.withLock { $0 } }

    /// Moves the clock `seconds` forward (backward when negative).
    public func advance(_ seconds: TimeInterval) {
        current.withLock { $0 += seconds }
    }
}

/// A fresh directory under /tmp, removed by `remove()`. Its path is short, because a Unix
/// socket's path inside it must fit in 107 bytes.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "otpd-test") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(.EIO)
        }
        path = String(cString: created)
    }

    /// The path of `name` inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}
