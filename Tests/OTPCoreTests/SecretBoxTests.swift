import OTPCore
import OTPTestSupport
import Testing

@Suite("SecretBox and DaemonKeys")
struct SecretBoxTests {
    static let master = (1...32).map { UInt8($0) }
    static let secret = Array("12345678901234567890".utf8)

    @Test("DaemonKeys refuses keys that are not 32 bytes, or all zero")
    func keyValidation() {
        for count in [0, 1, 16, 31, 33, 64] {
            #expect(throws: DaemonKeyError.wrongLength(byteCount: count)) {
                try DaemonKeys(masterKey: [UInt8](repeating: 7, count: count))
            }
        }
        #expect(throws: DaemonKeyError.allZero) {
            try DaemonKeys(masterKey: [UInt8](repeating: 0, count: 32))
        }
    }

    @Test("fingerprint is a known answer, stable, and differs between keys")
    func fingerprint() throws {
        let keys = try DaemonKeys(masterKey: Self.master)
        #expect(keys.fingerprint == "a4876cdde6cba2fa")
        #expect(try DaemonKeys(masterKey: Self.master).fingerprint == keys.fingerprint)
        var other = Self.master
        other[31] ^= 0x80
        #expect(try DaemonKeys(masterKey: other).fingerprint != keys.fingerprint)
    }

    @Test("opens a value sealed independently (Python cryptography AESGCM): format is pinned")
    func knownAnswer() throws {
        let sealed = unhex(
            "016465666768696a6b6c6d6e6f2b1cd566a171648b9ef6b61e5961f73b6e50a38e13bf172dde57e07ba2115b63835a164d"
        )
        let box = try DaemonKeys(masterKey: Self.master).encryption
        #expect(try box.open(sealed, accountID: "acct-1") == Self.secret)
    }

    @Test("round trip; each seal uses a fresh nonce")
    func roundTrip() throws {
        let box = try DaemonKeys(masterKey: Self.master).encryption
        let one = try box.seal(Self.secret, accountID: "alice")
        let two = try box.seal(Self.secret, accountID: "alice")
        #expect(one.count == Self.secret.count + SecretBox.overhead)
        #expect(one.first == SecretBox.version)
        #expect(one != two)
        #expect(try box.open(one, accountID: "alice") == Self.secret)
        #expect(try box.open(two, accountID: "alice") == Self.secret)
        // The plaintext does not appear in the sealed bytes.
        #expect(!hex(one).contains(hex(Array(Self.secret.prefix(8)))))
        let empty = try box.seal([], accountID: "alice")
        #expect(try box.open(empty, accountID: "alice") == [])
    }

    @Test("the nonce comes from the injected RandomSource")
    func injectedNonce() throws {
        let box = try DaemonKeys(masterKey: Self.master).encryption
        let a = try box.seal(Self.secret, accountID: "alice", using: SeededRandom(seed: 1))
        let b = try box.seal(Self.secret, accountID: "alice", using: SeededRandom(seed: 1))
        #expect(a == b)
        #expect(Array(a[1..<13]) == SeededRandom(seed: 1).bytes(12))
    }

    @Test("any altered byte is detected")
    func tamper() throws {
        let box = try DaemonKeys(masterKey: Self.master).encryption
        let sealed = try box.seal(Self.secret, accountID: "alice")
        for index in 1..<sealed.count {
            for flip: UInt8 in [0x01, 0x80] {
                var altered = sealed
                altered[index] ^= flip
                #expect(throws: SecretBoxError.authenticationFailed) {
                    try box.open(altered, accountID: "alice")
                }
            }
        }
        #expect(throws: SecretBoxError.authenticationFailed) {
            try box.open(sealed + [0], accountID: "alice")
        }
        #expect(throws: SecretBoxError.authenticationFailed) {
            try box.open(Array(sealed.dropLast()), accountID: "alice")
        }
    }

    @Test("a sealed secret copied to another account, or opened with another key, is refused")
    func wrongAccountOrKey() throws {
        let box = try DaemonKeys(masterKey: Self.master).encryption
        let sealed = try box.seal(Self.secret, accountID: "alice")
        for account in ["bob", "alice ", "Alice", "", "alice\0"] {
            #expect(throws: SecretBoxError.authenticationFailed) {
                try box.open(sealed, accountID: account)
            }
        }
        var otherMaster = Self.master
        otherMaster[5] ^= 1
        let otherBox = try DaemonKeys(masterKey: otherMaster).encryption
        #expect(throws: SecretBoxError.authenticationFailed) {
            try otherBox.open(sealed, accountID: "alice")
        }
    }

    @Test("short or unknown-version input is refused with its own error")
    func malformed() throws {
        let box = try DaemonKeys(masterKey: Self.master).encryption
        let sealed = try box.seal(Self.secret, accountID: "alice")
        #expect(throws: SecretBoxError.malformed) { try box.open([], accountID: "alice") }
        #expect(throws: SecretBoxError.malformed) {
            try box.open(Array(sealed.prefix(SecretBox.overhead - 1)), accountID: "alice")
        }
        var future = sealed
        future[0] = 2
        #expect(throws: SecretBoxError.unsupportedVersion(2)) { try box.open(future, accountID: "alice") }
    }
}
