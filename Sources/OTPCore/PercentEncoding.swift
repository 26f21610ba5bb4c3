/// RFC 3986 percent-encoding, for the `otpauth://` URI and Twilio's form bodies.
public enum PercentEncoding {
    /// `text` with every UTF-8 byte outside the unreserved set (`A-Z a-z 0-9 - . _ ~`) and
    /// `alsoKeeping` written as `%XX` (upper-case hex).
    public static func encode(_ text: String, alsoKeeping: Set<UInt8> = []) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(byte)
            case _ where alsoKeeping.contains(byte):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
