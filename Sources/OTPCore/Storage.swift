public import Foundation

/// What a one-time code is for. A code works only for its own purpose, and the SMS text says
/// what it is for.
public enum CodePurpose: String, Sendable, CaseIterable {
    /// Prove that a new (or pending) phone number receives texts.
    case verifyPhone = "verify_phone"
    /// The second step of a login.
    case login
    /// Proof for replacing the verified number.
    case changePhone = "change_phone"
    /// Proof for turning a factor off.
    case disableFactor = "disable_factor"
    /// Proof for adding an authenticator or regenerating backup codes.
    case manageFactors = "manage_factors"

    /// Purposes whose successful verification yields a single-use proof token.
    public var yieldsProof: Bool {
        switch self {
        case .changePhone, .disableFactor, .manageFactors: true
        case .verifyPhone, .login: false
        }
    }
}

/// A way to prove possession.
public enum FactorKind: String, Sendable, CaseIterable {
    case sms
    case totp
    case backup
}

/// One account's second-factor state, as stored.
public struct AccountRecord: Sendable, Equatable {
    public var id: String
    /// The saved number: verified, or waiting for its first verification.
    public var phone: PhoneNumber?
    public var phoneVerified: Bool
    /// A new number waiting to replace the verified one once a code sent to it is verified.
    public var pendingPhone: PhoneNumber?
    /// The authenticator secret, sealed with ``SecretBox``; non-nil means TOTP is on.
    public var totpSecretSealed: [UInt8]?
    /// The last TOTP step accepted (replay protection).
    public var totpLastStep: UInt64?
    /// An authenticator enrolment waiting for its first code.
    public var pendingTotpSealed: [UInt8]?
    public var pendingTotpExpiresAt: Date?
    public var preferred: FactorKind?
    /// Failed attempts (any factor) since the last success.
    public var consecutiveFailures: Int
    /// How many lockouts this failure streak has caused (drives the growing lock time).
    public var lockCount: Int
    public var lockedUntil: Date?
    public var createdAt: Date
    public var updatedAt: Date

    /// A new, empty account.
    public init(id: String, now: Date) {
        self.id = id
        self.phone = nil
        self.phoneVerified = false
        self.pendingPhone = nil
        self.totpSecretSealed = nil
        self.totpLastStep = nil
        self.pendingTotpSealed = nil
        self.pendingTotpExpiresAt = nil
        self.preferred = nil
        self.consecutiveFailures = 0
        self.lockCount = 0
        self.lockedUntil = nil
        self.createdAt = now
        self.updatedAt = now
    }

    /// SMS two-factor is on once the number is verified.
    public var smsEnabled: Bool { phone != nil && phoneVerified }
    /// The authenticator is on once its enrolment was confirmed.
    public var totpEnabled: Bool { totpSecretSealed != nil }
}

/// The state of a challenge.
public enum ChallengeState: String, Sendable {
    case active
    /// Its code was accepted.
    case used
    /// Replaced by a newer challenge, out of attempts, or cancelled by a change of number.
    case voided
    /// The SMS could not be sent.
    case failed
}

/// One pending code sent by SMS.
public struct ChallengeRecord: Sendable, Equatable {
    public var id: String
    public var accountID: String
    public var purpose: CodePurpose
    public var destination: PhoneNumber
    /// Keyed hash of the code (``CodeHasher``); the code itself is never stored.
    public var codeHash: [UInt8]
    public var createdAt: Date
    public var expiresAt: Date
    public var attemptsLeft: Int
    public var state: ChallengeState

    public init(
        id: String, accountID: String, purpose: CodePurpose, destination: PhoneNumber, codeHash: [UInt8],
        createdAt: Date, expiresAt: Date, attemptsLeft: Int, state: ChallengeState
    ) {
        self.id = id
        self.accountID = accountID
        self.purpose = purpose
        self.destination = destination
        self.codeHash = codeHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.attemptsLeft = attemptsLeft
        self.state = state
    }
}

/// A single-use proof for a sensitive action, stored by the keyed hash of its token.
public struct ProofRecord: Sendable, Equatable {
    public var tokenHash: [UInt8]
    public var accountID: String
    public var purpose: CodePurpose
    public var expiresAt: Date

    public init(tokenHash: [UInt8], accountID: String, purpose: CodePurpose, expiresAt: Date) {
        self.tokenHash = tokenHash
        self.accountID = accountID
        self.purpose = purpose
        self.expiresAt = expiresAt
    }
}

/// The two daily budgets of one phone number. Anyone who may save a number can have
/// verification texts sent to it; only those who proved they receive its texts can have texts
/// sent to it as a verified number. Kept apart, a stranger who drains the first cannot stop the
/// owner's login texts.
public enum SMSPool: Sendable, Equatable {
    /// `verify_phone` texts (and administrators' test texts): to a number that is not (yet) the
    /// account's verified number.
    case verification
    /// Login, change, turn-off and manage texts: to the account's verified number.
    case verified

    /// The pool a text of `purpose` is paid from.
    public init(_ purpose: CodePurpose) {
        self = purpose == .verifyPhone ? .verification : .verified
    }
}

/// One SMS handed to the sender, for the sending budgets.
public struct SMSSendRecord: Sendable, Equatable {
    public var accountID: String
    public var phone: PhoneNumber
    public var purpose: CodePurpose
    public var challengeID: String
    public var at: Date

    public init(accountID: String, phone: PhoneNumber, purpose: CodePurpose, challengeID: String, at: Date) {
        self.accountID = accountID
        self.phone = phone
        self.purpose = purpose
        self.challengeID = challengeID
        self.at = at
    }
}

/// One SMS handed to a provider, in the delivery log. Never the text.
public struct DeliveryRecord: Sendable, Equatable {
    /// Assigned by the store; 0 for a new record.
    public var id: Int64
    public var accountID: String
    public var challengeID: String
    public var purpose: String
    public var destinationMasked: String
    public var provider: String
    /// The provider's message id; empty when the provider never accepted the message.
    public var messageSID: String
    public var status: String
    public var errorCode: Int?
    public var attempts: Int
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: Int64 = 0, accountID: String, challengeID: String, purpose: String, destinationMasked: String,
        provider: String, messageSID: String, status: String, errorCode: Int?, attempts: Int, createdAt: Date,
        updatedAt: Date
    ) {
        self.id = id
        self.accountID = accountID
        self.challengeID = challengeID
        self.purpose = purpose
        self.destinationMasked = destinationMasked
        self.provider = provider
        self.messageSID = messageSID
        self.status = status
        self.errorCode = errorCode
        self.attempts = attempts
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// The account rows: each account's factors, failure counter and lock.
public protocol AccountStorage {
    func account(_ id: String) throws -> AccountRecord?
    /// Inserts or replaces the account row.
    func saveAccount(_ account: AccountRecord) throws
    /// Removes the account and its challenges, proofs and backup codes (events stay).
    func deleteAccountData(_ id: String) throws
    /// Adds one to the daemon-wide count of verifications for accounts that do not exist.
    func countUnknownAccountAttempt() throws
}

/// Codes sent by SMS (challenges) and the single-use proofs that verified codes earn.
public protocol ChallengeStorage {
    func insertChallenge(_ challenge: ChallengeRecord) throws
    func challenge(id: String) throws -> ChallengeRecord?
    func updateChallenge(id: String, state: ChallengeState, attemptsLeft: Int) throws
    /// Voids the account's active challenges of `purpose` (every purpose when nil).
    func voidActiveChallenges(accountID: String, purpose: CodePurpose?) throws
    /// Challenges that expired before `expiredBefore`, at most `limit`; returns how many.
    func deleteChallenges(expiredBefore: Date, limit: Int) throws -> Int

    func insertProof(_ proof: ProofRecord) throws
    /// Removes and returns the proof with this token hash (single use), or nil.
    func takeProof(tokenHash: [UInt8]) throws -> ProofRecord?
    /// Proofs that expired before `expiredBefore`, at most `limit`; returns how many.
    func deleteProofs(expiredBefore: Date, limit: Int) throws -> Int
}

/// Backup codes, by keyed hash.
public protocol BackupCodeStorage {
    /// Replaces the account's backup codes with a new set (the old set is void at once).
    func replaceBackupCodes(accountID: String, hashes: [[UInt8]], at: Date) throws
    /// Marks the unused code with this hash used. True only for the one call that changed the
    /// row (a conditional update whose affected-row count decides).
    func consumeBackupCode(accountID: String, hash: [UInt8], at: Date) throws -> Bool
    func remainingBackupCodes(accountID: String) throws -> Int
}

/// The record of texts sent, for the SMS budgets.
public protocol SMSBudgetStorage {
    /// The account's SMS sends since `since`, newest first.
    func smsSends(accountID: String, since: Date) throws -> [SMSSendRecord]
    /// Sends to `phone` in `pool` since `since`, counted up to `limit` (the count stops
    /// there, so the cost is bounded by the budget, not by the traffic).
    func countSMSSends(phone: PhoneNumber, pool: SMSPool, since: Date, limit: Int) throws -> Int
    func countSMSSends(countryCallingCode: String, since: Date, limit: Int) throws -> Int
    func countAllSMSSends(since: Date, limit: Int) throws -> Int
    func recordSMSSend(_ send: SMSSendRecord) throws
    /// Forgets sends older than `before` (they no longer count toward any budget).
    func pruneSMSSends(before: Date) throws
}

/// A place in the order in which the notification hook reads the audit trail: after every event
/// that sorts at or before it. Positions sort by `transaction`, then by `id`.
///
/// A store whose event ids follow commit order (SQLite's single writer) leaves `transaction` at 0.
/// A store where several writers commit at once (PostgreSQL) puts the writing transaction's
/// number there: ids are handed out before commit, so a smaller id can commit after a larger one
/// was read, but a transaction number below the oldest one still running can never appear again
/// (see `EventStorage.notificationHorizon()`).
public struct EventPosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The order of the transaction that recorded the event; 0 where ids follow commit order.
    public var transaction: UInt64
    /// The event's id.
    public var id: Int64

    public init(transaction: UInt64 = 0, id: Int64) {
        self.transaction = transaction
        self.id = id
    }

    public static func < (lhs: EventPosition, rhs: EventPosition) -> Bool {
        (lhs.transaction, lhs.id) < (rhs.transaction, rhs.id)
    }

    /// After every event there can ever be.
    public static let end = EventPosition(transaction: .max, id: .max)

    /// `ID` when `transaction` is 0, else `TRANSACTION:ID` (how the cursor is stored).
    public var description: String { transaction == 0 ? "\(id)" : "\(transaction):\(id)" }

    /// Parses ``description``; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            guard let id = Int64(parts[0]), id >= 0 else { return nil }
            self.init(id: id)
        case 2:
            guard let transaction = UInt64(parts[0]), let id = Int64(parts[1]), id >= 0 else { return nil }
            self.init(transaction: transaction, id: id)
        default:
            return nil
        }
    }
}

/// One page of the notification hook's reading (`EventStorage.eventsToNotify`).
public struct NotificationPage: Sendable, Equatable {
    /// The events of the requested kinds, in position order, each with its position.
    public var events: [EventRecord]
    public var positions: [EventPosition]
    /// Every event up to here was looked at (those of other kinds skipped), unless the page is
    /// full, when the hook stops at its last event instead.
    public var lookedThrough: EventPosition

    public init(events: [EventRecord], positions: [EventPosition], lookedThrough: EventPosition) {
        self.events = events
        self.positions = positions
        self.lookedThrough = lookedThrough
    }
}

/// The audit trail and the notification hook's position in it.
public protocol EventStorage {
    /// Appends an event and returns its id.
    @discardableResult
    func appendEvent(_ event: EventRecord) throws -> Int64
    /// Events newest first: of one account (or all when nil), with ids below `beforeID`.
    func events(accountID: String?, beforeID: Int64?, limit: Int) throws -> [EventRecord]
    /// The position the notification hook may read up to now: every event at or before it is
    /// committed and visible to this transaction, and no event committed later can sort at or
    /// before it. Everything between the hook's bookmark and this position can be delivered.
    func notificationHorizon() throws -> EventPosition
    /// Events of `kinds` after `after` and at or before `through`, in position order, at most
    /// `limit`, looking at no more than `window` events of any kind (for the notification hook).
    func eventsToNotify(after: EventPosition, through: EventPosition, kinds: Set<EventKind>, window: Int, limit: Int)
        throws -> NotificationPage
    /// How many of `accountID`'s newest `window` events are of `kind` and recorded at or after
    /// `since`. Reads at most `window` of the account's events, however many it has (the cap on
    /// refusal events per account, docs/SECURITY.md §11).
    func countRecentEvents(accountID: String, kind: EventKind, since: Date, window: Int) throws -> Int
    /// The newest event's id, 0 when there is none (the backlog estimate of the metrics).
    func lastEventID() throws -> Int64
    /// The last position the notification hook has handled, nil before its first run.
    func notificationCursor() throws -> EventPosition?
    func setNotificationCursor(_ position: EventPosition) throws
    /// The oldest events, as far as they were recorded before `before`, at most `limit`;
    /// returns how many.
    func deleteEvents(before: Date, limit: Int) throws -> Int
}

/// The delivery log of texts handed to a provider, and the numbers it refused.
public protocol DeliveryStorage {
    /// Appends a delivery log record and returns its id.
    @discardableResult
    func insertDelivery(_ delivery: DeliveryRecord) throws -> Int64
    /// The delivery with this provider message id, if any.
    func delivery(messageSID: String) throws -> DeliveryRecord?
    /// Sets a delivery's status, error code and update time.
    func updateDelivery(id: Int64, status: String, errorCode: Int?, at: Date) throws
    /// Deliveries newest first: of one account (or all when nil), with ids below `beforeID`.
    func deliveries(accountID: String?, beforeID: Int64?, limit: Int) throws -> [DeliveryRecord]
    /// Remembers that `phone` cannot receive texts (the provider's permanent error code).
    func markUndeliverable(phone: PhoneNumber, errorCode: Int?, at: Date) throws
    /// When `phone` was last found unable to receive texts, and the provider's code.
    func undeliverable(phone: PhoneNumber) throws -> (at: Date, errorCode: Int?)?
    /// The oldest delivery records, as far as they were created before `before`, at most
    /// `limit`; returns how many.
    func deleteDeliveries(before: Date, limit: Int) throws -> Int
}

/// The operations of one transaction, by role. Everything done through one transaction object
/// is atomic and isolated from every other transaction: it commits whole or not at all,
/// durably before the caller hears of it. A store implements every role for one transaction,
/// so a rule that reads an account and writes a challenge, an event and a budget row holds as
/// one step.
public protocol StoreTransaction:
    AccountStorage, ChallengeStorage, BackupCodeStorage, SMSBudgetStorage, SMSBreakerStorage, EventStorage,
    DeliveryStorage
{
    /// Runs `action` once this transaction has committed, never if it does not (it fails, or
    /// the store runs the body again after a conflict). For what must count only what is
    /// stored: metrics.
    func afterCommit(_ action: @escaping @Sendable () -> Void)
}

/// Durable storage for the domain. Transactions are serializable: the outcome is that of some
/// order in which no two bodies overlap, so a body's reads and writes form one atomic step
/// (counters, single use, replay checks). A store may run a body more than once (a store that
/// runs transactions at once retries one that conflicted), so a body's only effects are its
/// store operations and its result; what must happen once goes through
/// `StoreTransaction.afterCommit`.
public protocol TwoFactorStore: Sendable {
    /// Runs `body` in a transaction and returns its result once the transaction is durably
    /// committed. If `body` throws, none of its changes are kept. Storage failures throw.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T

    /// The same, for a transaction about the account `accountID`. A store whose transactions
    /// run at once may queue those of one account, so that they do not conflict with each other
    /// (and a burst at one account does not take every connection); the outcome is the same.
    func transaction<T: Sendable>(
        account accountID: String, _ body: @escaping @Sendable (any StoreTransaction) throws -> T
    ) async throws -> T
}

extension TwoFactorStore {
    /// Transactions never overlap in a store that keeps this default: nothing to queue.
    public func transaction<T: Sendable>(
        account accountID: String, _ body: @escaping @Sendable (any StoreTransaction) throws -> T
    ) async throws -> T {
        try await transaction(body)
    }
}
