import Crypto
import Foundation

/// Why the daemon's master key was refused.
public enum DaemonKeyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The key is not exactly 32 bytes long.
    case wrongLength(byteCount: Int)
    /// The key is all zero bytes: a blank or truncated-then-padded key file, not a real key.
    case allZero

    /// A sentence saying what is wrong.
    public var description: String {
        switch self {
        case .wrongLength(let count):
            "master key has \(count) bytes; exactly \(DaemonKeys.masterKeyByteCount) are required"
        case .allZero:
            "master key is all zero bytes; generate a random key"
        }
    }
}

/// The keys derived from the daemon's 32-byte master key.
///
/// Each purpose gets its own key, derived with HKDF-SHA256 (RFC 5869, no salt) under a distinct
/// info string, so the keys are independent: the code-hashing key (`otpd/v1/code-hash
/// hmac-sha256`), the secret-encryption key (`otpd/v1/secret-box aes-256-gcm`) and a public
/// fingerprint (`otpd/v1/key-fingerprint`). The derivation is fixed: changing it would make
/// every stored hash and secret unreadable.
public struct DaemonKeys: Sendable {
    /// The required length of the master key, in bytes.
    public static let masterKeyByteCount = 32

    /// Hashes codes for storage (docs/SECURITY.md §3, §7).
    public let hashing: CodeHasher
    /// Encrypts TOTP secrets at rest (docs/SECURITY.md §5).
    public let encryption: SecretBox
    /// 16 lower-case hex characters (64 bits derived from the master key) that identify the
    /// key without revealing it or the derived keys. Store it beside the data to detect a
    /// daemon started with the wrong key file; it is safe to log.
    public let fingerprint: String

    /// Derives the keys; throws unless `masterKey` is exactly 32 bytes and not all zero.
    public init(masterKey: [UInt8]) throws(DaemonKeyError) {
        guard masterKey.count == Self.masterKeyByteCount else {
            throw .wrongLength(byteCount: masterKey.count)
        }
        guard masterKey.contains(where: { $0 != 0 }) else { throw .allZero }
        let master = SymmetricKey(data: masterKey)
        func derive(_ info: String, _ byteCount: Int) -> [UInt8] {
            HKDF<SHA256>.deriveKey(
                inputKeyMaterial: master, info: Array(info.utf8), outputByteCount: byteCount
            ).withUnsafeBytes { Array($0) }
        }
        self.hashing = CodeHasher(keyBytes: derive("otpd/v1/code-hash hmac-sha256", 32))
        self.encryption = SecretBox(keyBytes: derive("otpd/v1/secret-box aes-256-gcm", 32))
        let print = derive("otpd/v1/key-fingerprint", 8)
        self.fingerprint = print.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// Why a sealed secret could not be opened (or, rarely, sealed).
public enum SecretBoxError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Too short to be a sealed secret.
    case malformed
    /// The first byte names a format this version does not know.
    case unsupportedVersion(UInt8)
    /// The ciphertext was altered, belongs to another account, or was sealed under another key.
    case authenticationFailed
    /// The cipher refused to seal (not expected in practice).
    case sealingFailed

    /// A sentence saying what is wrong; never contains key or secret material.
    public var description: String {
        switch self {
        case .malformed: "sealed secret is malformed (too short)"
        case .unsupportedVersion(let version): "sealed secret has unknown format version \(version)"
        case .authenticationFailed:
            "sealed secret failed authentication (altered, another account's, or another key)"
        case .sealingFailed: "could not seal secret"
        }
    }
}

/// Encrypts TOTP secrets at rest with AES-256-GCM under a key kept outside the database
/// (docs/SECURITY.md §5).
///
/// Sealed format: `version (1 byte, 1) || nonce (12) || ciphertext || tag (16)`. The nonce is
/// random per seal. The associated data binds the ciphertext to the account id (and to the
/// format version), so a sealed secret copied to another account's row does not open, and any
/// change to any byte is detected.
public struct SecretBox: Sendable {
    /// The current format version, the first byte of every sealed value.
    public static let version: UInt8 = 1
    /// Bytes added to the plaintext by sealing: version, nonce and tag.
    public static let overhead = 1 + nonceByteCount + tagByteCount

    static let nonceByteCount = 12
    static let tagByteCount = 16

    /// The raw key bytes. Stored as bytes rather than `SymmetricKey`, which is not `Sendable`
    /// in the swift-crypto version in use; a `SymmetricKey` is made for each operation.
    private let keyBytes: [UInt8]

    init(keyBytes: [UInt8]) {
        self.keyBytes = keyBytes
    }

    /// Encrypts `plaintext` for `accountID`, with a fresh nonce drawn from `random`.
    public func seal(
        _ plaintext: [UInt8], accountID: String, using random: some RandomSource = SystemRandom()
    ) throws(SecretBoxError) -> [UInt8] {
        let nonceBytes = random.bytes(Self.nonceByteCount)
        do {
            let nonce = try AES.GCM.Nonce(data: nonceBytes)
            let box = try AES.GCM.seal(
                plaintext, using: SymmetricKey(data: keyBytes), nonce: nonce,
                authenticating: Self.associatedData(version: Self.version, accountID: accountID))
            return [Self.version] + nonceBytes + Array(box.ciphertext) + Array(box.tag)
        } catch {
            throw .sealingFailed
        }
    }

    /// Decrypts a value made by ``seal(_:accountID:using:)`` for the same `accountID` and key.
    ///
    /// Throws ``SecretBoxError/authenticationFailed`` if anything differs (a byte, the account,
    /// the key); it never returns unauthenticated plaintext.
    public func open(_ sealed: [UInt8], accountID: String) throws(SecretBoxError) -> [UInt8] {
        guard let version = sealed.first else { throw .malformed }
        guard version == Self.version else { throw .unsupportedVersion(version) }
        guard sealed.count >= Self.overhead else { throw .malformed }
        let nonceEnd = 1 + Self.nonceByteCount
        let tagStart = sealed.count - Self.tagByteCount
        do {
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: sealed[1..<nonceEnd]),
                ciphertext: sealed[nonceEnd..<tagStart],
                tag: sealed[tagStart...])
            let plaintext = try AES.GCM.open(
                box, using: SymmetricKey(data: keyBytes),
                authenticating: Self.associatedData(version: version, accountID: accountID))
            return Array(plaintext)
        } catch {
            throw .authenticationFailed
        }
    }

    private static func associatedData(version: UInt8, accountID: String) -> [UInt8] {
        LengthPrefixed.encode([Array("otpd/v1/totp-secret".utf8), [version], Array(accountID.utf8)])
    }
}
