/// Comparisons whose running time does not depend on the contents being compared.
public enum ConstantTime {
    /// Returns whether `lhs` and `rhs` hold the same bytes.
    ///
    /// When the lengths are equal, every byte is examined whatever the contents, so the time
    /// taken reveals nothing about where the inputs differ. Lengths are treated as public:
    /// inputs of different lengths return `false` at once.
    public static func equals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        equalityMask(lhs, rhs) != 0
    }

    /// All ones if `lhs == rhs`, zero otherwise, computed without a data-dependent branch, so
    /// callers can fold results together with bitwise operations instead of `if`.
    static func equalityMask(_ lhs: [UInt8], _ rhs: [UInt8]) -> UInt64 {
        guard lhs.count == rhs.count else { return 0 }
        var difference: UInt8 = 0
        for index in lhs.indices {
            difference |= lhs[index] ^ rhs[index]
        }
        // difference == 0: 0 &- 1 has the top bit set; 1...255: it does not.
        let isEqual = (UInt64(difference) &- 1) >> 63
        return 0 &- isEqual
    }

    /// `a` where `mask` is all ones, `b` where it is zero, without a branch.
    static func select(_ mask: UInt64, _ a: UInt64, _ b: UInt64) -> UInt64 {
        (a & mask) | (b & ~mask)
    }
}
