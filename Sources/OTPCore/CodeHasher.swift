import Crypto

/// Keyed hashes of one-time codes and backup codes, for storage (docs/SECURITY.md §3, §7).
///
/// The hash is HMAC-SHA256 under the daemon's hashing key (see ``DaemonKeys``) over a
/// domain-separated message: a domain tag (`otpd/v1/sms-code` or `otpd/v1/backup-code`)
/// followed by each field as a 4-byte big-endian length and its UTF-8 bytes. The length
/// prefixes make the encoding unambiguous whatever the fields contain (NUL included), and the
/// tag keeps an SMS code's hash from ever equalling a backup code's. The database alone never
/// reveals a code: without the key, a 6-digit code cannot be recovered by trying all 10^6.
///
/// Hashes are deterministic, so a backup code can be redeemed by looking its hash up.
public struct CodeHasher: Sendable {
    /// The length of every hash, in bytes.
    public static let hashByteCount = 32

    /// The raw key bytes. Stored as bytes rather than `SymmetricKey`, which is not `Sendable`
    /// in the swift-crypto version in use; a `SymmetricKey` is made for each operation.
    private let keyBytes: [UInt8]

    init(keyBytes: [UInt8]) {
        self.keyBytes = keyBytes
    }

    /// The hash to store for an SMS code, bound to its challenge, account and purpose, so a
    /// hash copied to another challenge, account or purpose never verifies.
    public func hash(
        _ code: OneTimeCode, challengeID: String, accountID: String, purpose: String
    ) -> [UInt8] {
        mac(
            domain: "otpd/v1/sms-code",
            fields: [
                Array(challengeID.utf8), Array(accountID.utf8), Array(purpose.utf8), code.utf8,
            ])
    }

    /// Whether `code` is the code whose hash is `stored`, for the same challenge, account and
    /// purpose. The comparison is constant-time.
    public func verify(
        _ code: OneTimeCode, challengeID: String, accountID: String, purpose: String,
        against stored: [UInt8]
    ) -> Bool {
        ConstantTime.equals(
            hash(code, challengeID: challengeID, accountID: accountID, purpose: purpose), stored)
    }

    /// The hash to store for a backup code of `accountID` (computed on the normalised code,
    /// so `K7MQ 2XTP...` and `k7mq-2xtp-...` hash alike).
    public func hash(_ code: BackupCode, accountID: String) -> [UInt8] {
        mac(
            domain: "otpd/v1/backup-code",
            fields: [Array(accountID.utf8), Array(code.normalized.utf8)])
    }

    /// Whether `code` is the backup code whose hash is `stored`. Constant-time comparison.
    public func verify(_ code: BackupCode, accountID: String, against stored: [UInt8]) -> Bool {
        ConstantTime.equals(hash(code, accountID: accountID), stored)
    }

    private func mac(domain: String, fields: [[UInt8]]) -> [UInt8] {
        let message = LengthPrefixed.encode([Array(domain.utf8)] + fields)
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: keyBytes)))
    }
}

/// The unambiguous encoding used for MAC messages and associated data: each field as a 4-byte
/// big-endian length followed by its bytes.
enum LengthPrefixed {
    static func encode(_ fields: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for field in fields {
            precondition(field.count <= Int(UInt32.max), "field too long to encode")
            withUnsafeBytes(of: UInt32(field.count).bigEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: field)
        }
        return out
    }
}
