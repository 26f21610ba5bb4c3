/// A source of cryptographically strong random bytes.
///
/// OTPCore never reaches for randomness on its own: every function that needs it takes a
/// `RandomSource`, so production code passes ``SystemRandom`` and tests pass a deterministic
/// source.
///
/// Conformers promise to fill the *whole* buffer on every call, or to stop the process. A
/// source that can fail must never return with the buffer partly filled or left as it was:
/// the callers use the bytes as secrets.
public protocol RandomSource: Sendable {
    /// Overwrites every byte of `buffer` with random bytes.
    func fill(_ buffer: UnsafeMutableRawBufferPointer)
}

extension RandomSource {
    /// Returns `count` random bytes. `count` must not be negative.
    public func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "byte count must not be negative")
        var result = [UInt8](repeating: 0, count: count)
        result.withUnsafeMutableBytes { fill($0) }
        return result
    }

    /// Returns 64 random bits.
    public func nextUInt64() -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { fill($0) }
        return value
    }

    /// Returns a number drawn uniformly from `0 ..< upperBound`, without modulo bias.
    ///
    /// Draws 64-bit values and rejects those below `2^64 mod upperBound`, so every result is
    /// equally likely (rejection sampling). Fewer than two draws are needed on average, for any
    /// bound. `upperBound` must be greater than zero.
    public func uniform(_ upperBound: UInt64) -> UInt64 {
        precondition(upperBound > 0, "upper bound must be positive")
        // (2^64 - upperBound) mod upperBound == 2^64 mod upperBound: the count of values that
        // would make `x % upperBound` favour the small results. Dropping the lowest `threshold`
        // values leaves a range whose size is a multiple of `upperBound`.
        let threshold = (0 &- upperBound) % upperBound
        while true {
            let candidate = nextUInt64()
            if candidate >= threshold {
                return candidate % upperBound
            }
        }
    }
}

/// The operating system's cryptographically secure random generator.
///
/// Backed by the standard library's `SystemRandomNumberGenerator` (`getrandom(2)` on Linux,
/// `arc4random_buf` on Apple platforms), which stops the process rather than return weak
/// bytes if the kernel cannot supply them.
public struct SystemRandom: RandomSource {
    /// Creates a handle on the system generator; it holds no state.
    public init() {}

    /// Overwrites every byte of `buffer` with bytes from the OS generator.
    public func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var generator = SystemRandomNumberGenerator()
        var index = 0
        while index < buffer.count {
            let word = generator.next()
            withUnsafeBytes(of: word) { wordBytes in
                var offset = 0
                while offset < wordBytes.count, index < buffer.count {
                    buffer[index] = wordBytes[offset]
                    offset += 1
                    index += 1
                }
            }
        }
    }
}

extension RandomSource where Self == SystemRandom {
    /// The operating system's generator, for call sites such as `generate(using: .system)`.
    public static var system: SystemRandom { SystemRandom() }
}
