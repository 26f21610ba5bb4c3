import OTPCore
import OTPTestSupport
import Testing

@Suite("Base32 (RFC 4648)")
struct Base32Tests {
    /// RFC 4648 §10 test vectors.
    static let vectors: [(String, String)] = [
        ("", ""), ("f", "MY======"), ("fo", "MZXQ===="), ("foo", "MZXW6==="),
        ("foob", "MZXW6YQ="), ("fooba", "MZXW6YTB"), ("foobar", "MZXW6YTBOI======"),
    ]

    @Test("RFC 4648 vectors: encode without padding, decode with or without")
    func rfcVectors() throws {
        for (plain, encoded) in Self.vectors {
            let unpadded = String(encoded.filter { $0 != "=" })
            #expect(Base32.encode(Array(plain.utf8)) == unpadded)
            #expect(try Base32.decode(encoded) == Array(plain.utf8))
            #expect(try Base32.decode(unpadded) == Array(plain.utf8))
            #expect(try Base32.decode(unpadded.lowercased()) == Array(plain.utf8))
        }
    }

    @Test("spaces and mixed case are tolerated")
    func tolerant() throws {
        #expect(try Base32.decode("mzxw 6ytb oi") == Array("foobar".utf8))
        #expect(try Base32.decode(" MzXw6YtBoI ") == Array("foobar".utf8))
        #expect(
            try Base32.decode("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ")
                == Array("12345678901234567890".utf8))
    }

    @Test("bad characters, impossible lengths, wrong padding and non-canonical text are refused")
    func refused() {
        let invalidCharacter = ["MZXW1", "MZXW0", "MZXW8", "MZ-XW", "MZ\tXW", "MZ\0", "ＭＺ", "M=Y", "MY==\u{3D}=A"]
        for text in invalidCharacter {
            #expect(throws: Base32Error.invalidCharacter, "\(text.debugDescription)") { try Base32.decode(text) }
        }
        for text in ["M", "MZX", "MZXW6Y", "MZXW6YTBO", "M=======", "MY=", "MY=======", "========"] {
            #expect(throws: Base32Error.invalidLength, "\(text)") { try Base32.decode(text) }
        }
        // "MZ": 'f' plus two leftover bits 01, which must be zero.
        #expect(throws: Base32Error.nonZeroTrailingBits) { try Base32.decode("MZ") }
        #expect(throws: Base32Error.nonZeroTrailingBits) { try Base32.decode("MZXW6YTBOJ") }
    }

    @Test("round trip of random byte strings of every length 0...64")
    func roundTrip() throws {
        let random = SeededRandom(seed: 4648)
        for length in 0...64 {
            for _ in 0..<5 {
                let bytes = random.bytes(length)
                let text = Base32.encode(bytes)
                #expect(!text.contains("="))
                #expect(text == text.uppercased())
                #expect(text.count == (length * 8 + 4) / 5)
                #expect(try Base32.decode(text) == bytes)
            }
        }
    }
}
