/// Why base32 text was refused.
public enum Base32Error: Error, Sendable, Hashable, CustomStringConvertible {
    /// A character outside `A-Z`, `a-z`, `2-7`, space and trailing `=`.
    case invalidCharacter
    /// The number of characters cannot encode whole bytes (or the padding is wrong).
    case invalidLength
    /// The unused low bits of the last character are not zero, so the text is not the
    /// canonical encoding of any byte string.
    case nonZeroTrailingBits

    /// A sentence saying what is wrong.
    public var description: String {
        switch self {
        case .invalidCharacter: "base32 text contains a character outside A-Z and 2-7"
        case .invalidLength: "base32 text has an impossible length or wrong padding"
        case .nonZeroTrailingBits: "base32 text is not canonical (its trailing bits are not zero)"
        }
    }
}

/// Base32 as in RFC 4648 §6 (alphabet `A-Z2-7`), the encoding authenticator apps use for
/// TOTP secrets.
public enum Base32 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// Encodes `bytes` in upper case without `=` padding (the form otpauth URIs use).
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int((buffer >> UInt32(bits)) & 0x1f)])
            }
        }
        if bits > 0 {
            out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 0x1f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes base32 text: letters in either case, ASCII spaces anywhere (ignored), and
    /// optional `=` padding at the end (if present it must pad to a multiple of 8 characters).
    ///
    /// Refuses any other character, a length that cannot encode whole bytes, and non-canonical
    /// text whose unused trailing bits are not zero, so each byte string has one accepted
    /// spelling (up to case, spaces and padding).
    public static func decode(_ text: String) throws(Base32Error) -> [UInt8] {
        var symbols: [UInt8] = []
        var padding = 0
        for byte in text.utf8 {
            if byte == 0x20 { continue }
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            // A data character after padding started.
            guard padding == 0 else { throw .invalidCharacter }
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): symbols.append(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): symbols.append(byte - UInt8(ascii: "a"))
            case UInt8(ascii: "2")...UInt8(ascii: "7"): symbols.append(byte - UInt8(ascii: "2") + 26)
            default: throw .invalidCharacter
            }
        }
        // Characters in a final partial group that encode whole bytes: 2, 4, 5, 7.
        let remainder = symbols.count % 8
        guard [0, 2, 4, 5, 7].contains(remainder) else { throw .invalidLength }
        if padding > 0 {
            guard remainder != 0, padding == 8 - remainder else { throw .invalidLength }
        }
        var out: [UInt8] = []
        out.reserveCapacity(symbols.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        for symbol in symbols {
            buffer = (buffer << 5) | UInt32(symbol)
            bits += 5
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((buffer >> UInt32(bits)) & 0xff))
            }
        }
        if bits > 0, buffer & ((1 << UInt32(bits)) - 1) != 0 {
            throw .nonZeroTrailingBits
        }
        return out
    }
}
