public import Foundation

/// A refusal from the domain, with what the caller may be shown. The server maps `kind` to a
/// gRPC status code; `logDetail` goes to the log only.
public struct TwoFactorError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case invalidArgument
        case failedPrecondition
        case permissionDenied
        case resourceExhausted
        case alreadyExists
        case unavailable
        case `internal`
        /// The caller stopped waiting (its deadline passed or its connection closed) before the
        /// work reached the store: nothing was changed.
        case cancelled
    }

    public var kind: Kind
    /// Safe to show: never a code, a secret or a full phone number.
    public var message: String
    /// For rate limits and locks: seconds until a retry can succeed.
    public var retryAfter: Int?
    /// When the account's lock ends, if it is locked.
    public var lockedUntil: Date?
    /// For the log only (e.g. the storage error behind `unavailable`).
    public var logDetail: String?

    public init(
        _ kind: Kind, _ message: String, retryAfter: Int? = nil, lockedUntil: Date? = nil, logDetail: String? = nil
    ) {
        self.kind = kind
        self.message = message
        self.retryAfter = retryAfter
        self.lockedUntil = lockedUntil
        self.logDetail = logDetail
    }

    public var description: String { "\(kind): \(message)" + (logDetail.map { " (\($0))" } ?? "") }

    /// The one answer for every kind of bad proof (wrong, expired, used, another account's).
    static let proofRefused = TwoFactorError(.permissionDenied, "The proof is not valid or has expired")
}
