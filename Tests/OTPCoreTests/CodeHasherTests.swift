import OTPCore
import Testing

@Suite("CodeHasher")
struct CodeHasherTests {
    /// Master key 0x01...0x20; the expected values below were computed independently
    /// (Python hmac/hashlib: HKDF-SHA256 without salt, HMAC-SHA256 over length-prefixed fields),
    /// so a change to the derivation or the encoding, which would orphan stored hashes, fails.
    static let master = (1...32).map { UInt8($0) }

    @Test("known answers pin the derivation and the message encoding")
    func knownAnswers() throws {
        let keys = try DaemonKeys(masterKey: Self.master)
        let code = try #require(OneTimeCode(parsing: "123456", length: .six))
        #expect(
            hex(keys.hashing.hash(code, challengeID: "ch-1", accountID: "acct-1", purpose: "login"))
                == "0101428d071b02f752706f9b3fd10147aa2d67ef5faafa8ac365e73feda1b624")
        let backup = try #require(BackupCode(parsing: "k7mq-2xtp-9fhw-c3rd"))
        #expect(
            hex(keys.hashing.hash(backup, accountID: "acct-1"))
                == "5451c12daae25622f546777f119008c487992bd656d221b9f2452cc1ab4fe0dd")
    }

    @Test("verify accepts the same code and refuses any change of code or binding")
    func binding() throws {
        let hasher = try DaemonKeys(masterKey: Self.master).hashing
        let code = try #require(OneTimeCode(parsing: "654321", length: .six))
        let other = try #require(OneTimeCode(parsing: "654320", length: .six))
        let stored = hasher.hash(code, challengeID: "c1", accountID: "a1", purpose: "login")
        #expect(stored.count == CodeHasher.hashByteCount)
        #expect(hasher.verify(code, challengeID: "c1", accountID: "a1", purpose: "login", against: stored))
        #expect(!hasher.verify(other, challengeID: "c1", accountID: "a1", purpose: "login", against: stored))
        #expect(!hasher.verify(code, challengeID: "c2", accountID: "a1", purpose: "login", against: stored))
        #expect(!hasher.verify(code, challengeID: "c1", accountID: "a2", purpose: "login", against: stored))
        #expect(!hasher.verify(code, challengeID: "c1", accountID: "a1", purpose: "change_phone", against: stored))
        #expect(
            !hasher.verify(
                code, challengeID: "c1", accountID: "a1", purpose: "login", against: Array(stored.dropLast())))
        #expect(!hasher.verify(code, challengeID: "c1", accountID: "a1", purpose: "login", against: []))
    }

    @Test("field boundaries cannot be shifted (length-prefixed encoding)")
    func unambiguousFields() throws {
        let hasher = try DaemonKeys(masterKey: Self.master).hashing
        let code = try #require(OneTimeCode(parsing: "111111", length: .six))
        let a = hasher.hash(code, challengeID: "ab", accountID: "c", purpose: "login")
        let b = hasher.hash(code, challengeID: "a", accountID: "bc", purpose: "login")
        let c = hasher.hash(code, challengeID: "a\0", accountID: "c", purpose: "login")
        let d = hasher.hash(code, challengeID: "a", accountID: "\0c", purpose: "login")
        #expect(Set([hex(a), hex(b), hex(c), hex(d)]).count == 4)
    }

    @Test("different master keys give different hashes; hashes are deterministic")
    func keyed() throws {
        let code = try #require(OneTimeCode(parsing: "123456", length: .six))
        var otherMaster = Self.master
        otherMaster[0] ^= 1
        let one = try DaemonKeys(masterKey: Self.master).hashing
        let again = try DaemonKeys(masterKey: Self.master).hashing
        let two = try DaemonKeys(masterKey: otherMaster).hashing
        let h1 = one.hash(code, challengeID: "c", accountID: "a", purpose: "login")
        #expect(h1 == again.hash(code, challengeID: "c", accountID: "a", purpose: "login"))
        #expect(h1 != two.hash(code, challengeID: "c", accountID: "a", purpose: "login"))
        #expect(!two.verify(code, challengeID: "c", accountID: "a", purpose: "login", against: h1))
    }

    @Test("backup-code hashes ignore formatting but not the account or the code")
    func backupCodes() throws {
        let hasher = try DaemonKeys(masterKey: Self.master).hashing
        let shown = try #require(BackupCode(parsing: "k7mq-2xtp-9fhw-c3rd"))
        let typed = try #require(BackupCode(parsing: "K7MQ 2XTP 9FHW C3RD"))
        let wrong = try #require(BackupCode(parsing: "k7mq-2xtp-9fhw-c3re"))
        let stored = hasher.hash(shown, accountID: "acct")
        #expect(hasher.verify(typed, accountID: "acct", against: stored))
        #expect(!hasher.verify(wrong, accountID: "acct", against: stored))
        #expect(!hasher.verify(typed, accountID: "acct2", against: stored))
    }
}
