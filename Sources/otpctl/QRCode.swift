internal import CQRencode
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// QR codes for `otpctl totp enroll`: the otpauth URI as a symbol an authenticator app can scan,
/// drawn in the terminal or written as an image file.
///
/// The symbol comes from Debian's libqrencode (error correction level M, 8-bit mode, the
/// smallest version that fits). The logic is split so each part can be checked on its own:
/// `matrix(for:)` gives the modules, `terminalLines(_:colors:)` draws them, and `pgm(_:scale:)`
/// and `png(_:scale:)` make images a decoder such as `zbarimg` reads.
enum QRCode {
    /// Light modules around the symbol on every side (the QR standard asks for 4).
    static let quietZone = 4

    /// Image pixels per module in `--qr-image` files (a 33-module symbol is 328 pixels wide).
    static let imageScale = 8

    /// The text could not be encoded (too long for any QR version, or out of memory).
    struct EncodingFailure: Error, CustomStringConvertible {
        var description: String
    }

    // MARK: - Modules

    /// The symbol's modules for `text`, row by row, `true` for dark; without the quiet zone.
    ///
    /// The matrix is square: 21 modules for version 1, 4 more per version.
    static func matrix(for text: String) throws(EncodingFailure) -> [[Bool]] {
        guard let code = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1) else {
            throw EncodingFailure(description: "cannot make a QR code: \(String(cString: strerror(errno)))")
        }
        defer { QRcode_free(code) }
        let width = Int(code.pointee.width)
        guard width > 0, let data = code.pointee.data else {
            throw EncodingFailure(description: "cannot make a QR code: libqrencode returned an empty symbol")
        }
        // Bit 0 of each byte is the module's colour (1 dark); the other bits describe its role.
        return (0..<width).map { row in (0..<width).map { column in data[row * width + column] & 1 == 1 } }
    }

    /// `matrix` with `margin` light modules added on every side.
    static func addingQuietZone(_ matrix: [[Bool]], margin: Int = quietZone) -> [[Bool]] {
        let width = (matrix.first?.count ?? 0) + 2 * margin
        let light = [Bool](repeating: false, count: width)
        let padding = [Bool](repeating: false, count: margin)
        return [[Bool]](repeating: light, count: margin)
            + matrix.map { padding + $0 + padding }
            + [[Bool]](repeating: light, count: margin)
    }

    // MARK: - Terminal

    /// Sets a black background and a bright white foreground (ANSI SGR 40 and 97).
    static let colorStart = "\u{1B}[40;97m"
    /// Resets the colours at the end of each line, so nothing else is painted.
    static let colorEnd = "\u{1B}[0m"

    /// The symbol (with its quiet zone) as lines of text: each character is one module wide and
    /// two modules high, drawn with the Unicode half blocks `▀`, `▄` and `█`.
    ///
    /// Light modules are drawn in the foreground colour and dark modules are left as background,
    /// so the code is dark-on-light as scanners expect. With `colors` each line sets a black
    /// background and a white foreground, which reads right on dark and light terminals alike;
    /// without colours (`NO_COLOR`, `TERM=dumb`) it relies on the usual light text on a dark
    /// background. When the height is odd, the half below the last row is drawn light, as quiet
    /// zone.
    static func terminalLines(_ matrix: [[Bool]], colors: Bool) -> [String] {
        let framed = addingQuietZone(matrix)
        let width = framed.first?.count ?? 0
        return stride(from: 0, to: framed.count, by: 2).map { top in
            var line = colors ? colorStart : ""
            for column in 0..<width {
                let upperLight = !framed[top][column]
                let lowerLight = top + 1 < framed.count ? !framed[top + 1][column] : true
                switch (upperLight, lowerLight) {
                case (true, true): line += "█"
                case (true, false): line += "▀"
                case (false, true): line += "▄"
                case (false, false): line += " "
                }
            }
            return colors ? line + colorEnd : line
        }
    }

    /// Whether to colour the terminal drawing: not when `NO_COLOR` is set (no-color.org) or the
    /// terminal is `dumb`.
    static func terminalWantsColors(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        if let noColor = environment["NO_COLOR"], !noColor.isEmpty { return false }
        return environment["TERM"] != "dumb"
    }

    // MARK: - Images

    /// The symbol (with its quiet zone) as a binary PGM image (netpbm `P5`, 8-bit grey, 0 dark
    /// and 255 light), `scale` pixels per module.
    static func pgm(_ matrix: [[Bool]], scale: Int = imageScale) -> [UInt8] {
        let framed = addingQuietZone(matrix)
        let side = framed.count * scale
        var bytes = Array("P5\n\(side) \(side)\n255\n".utf8)
        bytes.reserveCapacity(bytes.count + side * side)
        for row in framed {
            let line = row.flatMap { dark in [UInt8](repeating: dark ? 0 : 255, count: scale) }
            for _ in 0..<scale { bytes += line }
        }
        return bytes
    }

    /// The symbol (with its quiet zone) as a PNG image (1-bit greyscale, 1 light), `scale` pixels
    /// per module. The pixel data is stored in uncompressed deflate blocks, which every PNG
    /// reader accepts.
    static func png(_ matrix: [[Bool]], scale: Int = imageScale) -> [UInt8] {
        let framed = addingQuietZone(matrix)
        let side = framed.count * scale
        let rowBytes = (side + 7) / 8
        var raw: [UInt8] = []
        raw.reserveCapacity((rowBytes + 1) * side)
        for row in framed {
            var line = [UInt8](repeating: 0, count: rowBytes + 1)  // filter byte 0: none
            for x in 0..<side where !row[x / scale] {
                line[1 + x / 8] |= 0x80 >> UInt8(x % 8)
            }
            for _ in 0..<scale { raw += line }
        }
        var header: [UInt8] = []
        header += bigEndian(UInt32(side))
        header += bigEndian(UInt32(side))
        header += [1, 0, 0, 0, 0]  // bit depth 1, greyscale, deflate, filter set 0, no interlace
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + pngChunk("IHDR", header) + pngChunk("IDAT", zlibStored(raw)) + pngChunk("IEND", [])
    }

    /// The image format `--qr-image` writes for `path`: PNG when it ends in `.png`, else PGM.
    static func image(_ matrix: [[Bool]], forPath path: String) -> [UInt8] {
        path.lowercased().hasSuffix(".png") ? png(matrix) : pgm(matrix)
    }

    private static func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeAndData = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + typeAndData + bigEndian(crc32(typeAndData))
    }

    /// A zlib stream (RFC 1950) holding `data` in stored deflate blocks (RFC 1951, type 0).
    private static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let count = min(65535, data.count - offset)
            let final = offset + count == data.count
            out.append(final ? 1 : 0)
            out += [UInt8(count & 0xFF), UInt8(count >> 8), UInt8(~count & 0xFF), UInt8((~count >> 8) & 0xFF)]
            out += data[offset..<offset + count]
            offset += count
        } while offset < data.count
        return out + bigEndian(adler32(data))
    }

    private static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    private static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1
        var b: UInt32 = 0
        for byte in data {
            a = (a + UInt32(byte)) % 65521
            b = (b + a) % 65521
        }
        return b << 16 | a
    }

    private static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    private static func crc32(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
