import Crypto

/// The hash function behind an HMAC-based one-time password.
///
/// The raw values are the names used by the otpauth URI `algorithm` parameter.
public enum OTPHashAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// HMAC-SHA1: RFC 4226, and the only algorithm all authenticator apps support.
    case sha1 = "SHA1"
    /// HMAC-SHA256 (RFC 6238).
    case sha256 = "SHA256"
    /// HMAC-SHA512 (RFC 6238).
    case sha512 = "SHA512"
}

/// HOTP, RFC 4226: one-time passwords from a shared secret and a counter.
///
/// These are the raw primitives; ``TOTP`` builds on them and checks the secret's length.
public enum HOTP {
    /// The 31-bit number that RFC 4226 §5.3 "dynamic truncation" extracts from
    /// `HMAC(secret, counter)`, the counter taken as 8 big-endian bytes.
    public static func truncatedValue(
        secret: [UInt8], counter: UInt64, algorithm: OTPHashAlgorithm = .sha1
    ) -> UInt32 {
        let mac = authenticationCode(secret: secret, counter: counter, algorithm: algorithm)
        let offset = Int(mac[mac.count - 1] & 0x0f)
        return (UInt32(mac[offset] & 0x7f) << 24)
            | (UInt32(mac[offset + 1]) << 16)
            | (UInt32(mac[offset + 2]) << 8)
            | UInt32(mac[offset + 3])
    }

    /// The HOTP code for `counter`: the truncated value modulo 10^digits, with leading zeros.
    ///
    /// With 10 digits the code is the whole 31-bit value, so it carries no more than 31 bits.
    public static func code(
        secret: [UInt8], counter: UInt64, digits: CodeDigits = .six,
        algorithm: OTPHashAlgorithm = .sha1
    ) -> OneTimeCode {
        var value = UInt64(truncatedValue(secret: secret, counter: counter, algorithm: algorithm))
        value %= digits.modulus
        var ascii = [UInt8](repeating: 0x30, count: digits.count)
        var index = digits.count - 1
        while value > 0 {
            ascii[index] = 0x30 + UInt8(value % 10)
            value /= 10
            index -= 1
        }
        return OneTimeCode(validatedDigits: ascii, length: digits)
    }

    /// HMAC(secret, counter as 8 big-endian bytes).
    static func authenticationCode(
        secret: [UInt8], counter: UInt64, algorithm: OTPHashAlgorithm
    ) -> [UInt8] {
        let key = SymmetricKey(data: secret)
        let message = withUnsafeBytes(of: counter.bigEndian) { Array($0) }
        switch algorithm {
        case .sha1:
            return Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: key))
        case .sha256:
            return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
        case .sha512:
            return Array(HMAC<SHA512>.authenticationCode(for: message, using: key))
        }
    }
}
