import Crypto
public import Foundation
public import Logging
import OTPMetrics
import Synchronization

/// The second factor of one shop: phone enrolment and verification, SMS and authenticator
/// codes, proofs for sensitive actions, backup codes, limits, lockout and the audit trail.
///
/// Every decision that reads and changes state runs inside one store transaction, so counters,
/// single use and replay checks hold under any concurrency. Failures that must be counted are
/// committed before the caller hears of them; nothing the caller is told "done" is lost.
public final class TwoFactorService: Sendable {
    let store: any TwoFactorStore
    let sender: any SMSSender
    let keys: DaemonKeys
    let policy: TwoFactorPolicy
    let clock: any OTPClock
    let random: AnyRandomSource
    let reportVerifier: (any DeliveryReportVerifier)?
    let deliveryStatuses: (any DeliveryStatusOrder)?
    let unrecorded = Atomic<Int>(0)
    let logger: Logger

    /// Delivery reports are accepted only with both `reportVerifier` and `deliveryStatuses`
    /// (the provider's). `logger` gets what only an operator can act on (a record that could
    /// not be stored); the default logs through the process's logging system as `otpd`.
    ///
    /// - Throws: `TwoFactorError` when `policy` breaks a security rule.
    public init(
        store: any TwoFactorStore, sender: any SMSSender, keys: DaemonKeys, policy: TwoFactorPolicy,
        clock: any OTPClock = SystemClock(), random: any RandomSource = SystemRandom(),
        reportVerifier: (any DeliveryReportVerifier)? = nil, deliveryStatuses: (any DeliveryStatusOrder)? = nil,
        logger: Logger = Logger(label: "otpd")
    ) throws(TwoFactorError) {
        try policy.validate()
        self.store = store
        self.sender = sender
        self.keys = keys
        self.policy = policy
        self.clock = clock
        self.random = AnyRandomSource(random)
        self.reportVerifier = reportVerifier
        self.deliveryStatuses = deliveryStatuses
        self.logger = logger
    }

    /// Records of texts already sent (or refused by the provider) that could not be written
    /// since start-up, because storage failed: the delivery log and the audit trail miss them.
    /// Anything above 0 needs an operator's attention: each one is logged at `.error` with its
    /// event kind, and `ServerInfo` reports the count.
    public var unrecordedEvents: Int { unrecorded.load(ordering: .relaxed) }

    /// The name of the SMS sender in use.
    public var smsSenderName: String { sender.name }

    // MARK: Shared steps

    /// Account ids are opaque to otpd but bounded: 1-128 bytes of UTF-8 without control
    /// characters.
    static func checkAccountID(_ id: String) throws(TwoFactorError) {
        guard !id.isEmpty, id.utf8.count <= 128 else {
            throw TwoFactorError(.invalidArgument, "account_id must be 1-128 bytes")
        }
        guard !id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw TwoFactorError(.invalidArgument, "account_id must not contain control characters")
        }
    }

    /// Runs a transaction, turning storage failures into `unavailable` (fail closed).
    /// `account` names the account the transaction is about, when it is about one.
    func transact<T: Sendable>(
        account: String? = nil, _ body: @escaping @Sendable (any StoreTransaction) throws -> Result<T, TwoFactorError>
    ) async throws(TwoFactorError) -> T {
        let result: Result<T, TwoFactorError>
        do {
            if let account {
                result = try await store.transaction(account: account, body)
            } else {
                result = try await store.transaction(body)
            }
        } catch let error as TwoFactorError {
            throw error
        } catch is CancellationError {
            throw TwoFactorError(.cancelled, "The call was cancelled before anything was changed")
        } catch {
            throw TwoFactorError(
                .unavailable, "Storage is unavailable; nothing was changed. Try again.", logDetail: "\(error)")
        }
        return try result.get()
    }

    func isLocked(_ account: AccountRecord, at now: Date) -> Bool {
        guard let until = account.lockedUntil else { return false }
        return until > now
    }

    /// Counts one failed attempt against the account and locks it at the thresholds.
    /// Returns true when this failure locked the account.
    @discardableResult
    func registerFailure(_ account: inout AccountRecord, now: Date, in tx: any StoreTransaction) throws -> Bool {
        account.consecutiveFailures += 1
        account.updatedAt = now
        var locked = false
        if account.consecutiveFailures >= policy.maximumConsecutiveFailures {
            // Locked for good. Only the failure that reaches the maximum locks it: later ones
            // find it locked already, and one event (and one notification) per guess would say
            // nothing new.
            locked = account.lockedUntil != .distantFuture
            account.lockedUntil = .distantFuture
        } else if account.consecutiveFailures % policy.lockThreshold == 0 {
            account.lockCount += 1
            account.lockedUntil = now.addingTimeInterval(policy.lockDuration(forLock: account.lockCount))
            locked = true
        }
        if locked {
            tx.afterCommit { OTPMetrics.lockout() }
            let until =
                account.lockedUntil == .distantFuture
                ? "until an administrator unlocks it" : "for \(Int(account.lockedUntil!.timeIntervalSince(now))) s"
            try audit(
                .accountLocked, .locked, account: account.id,
                detail: "\(account.consecutiveFailures) consecutive failures; locked \(until)", at: now, in: tx)
        }
        return locked
    }

    /// The one way a verification, a redemption or a confirmation fails with a counted attempt
    /// (docs/SECURITY.md §10, §11): counts the failure against `account` (locking it at the
    /// thresholds), saves the account, appends the failure's audit event (`kind`, outcome
    /// `.failure`), and only then makes the caller's answer from the saved account. The answer
    /// exists only after the save, so a counted failure cannot be lost by forgetting it.
    ///
    /// `whileLocked`: the guess was refused because the account is locked. It counts like any
    /// other, but its event is written only when `policy.auditsGuessWhileLocked` says so, with
    /// the failure count in its detail (docs/SECURITY.md §11).
    func failCounted<Answer>(
        _ account: inout AccountRecord, _ kind: EventKind, detail: String, destination: String = "",
        whileLocked: Bool = false, now: Date, in tx: any StoreTransaction,
        answer: (_ saved: AccountRecord) throws -> Answer
    ) throws -> Answer {
        try registerFailure(&account, now: now, in: tx)
        try tx.saveAccount(account)
        if !whileLocked {
            try audit(kind, .failure, account: account.id, detail: detail, destination: destination, at: now, in: tx)
        } else if policy.auditsGuessWhileLocked(consecutiveFailures: account.consecutiveFailures) {
            try audit(
                kind, .failure, account: account.id,
                detail: "\(detail); \(account.consecutiveFailures) consecutive failures", destination: destination,
                at: now, in: tx)
        }
        return try answer(account)
    }

    func registerSuccess(_ account: inout AccountRecord, now: Date) {
        account.consecutiveFailures = 0
        account.lockCount = 0
        account.lockedUntil = nil
        account.updatedAt = now
    }

    func summary(_ account: AccountRecord?, id: String, in tx: any StoreTransaction, now: Date) throws
        -> AccountSummary
    {
        guard let account else { return AccountSummary(accountID: id) }
        return AccountSummary(
            accountID: account.id, phoneMasked: account.phone?.masked ?? "", phoneVerified: account.phoneVerified,
            pendingPhoneMasked: account.pendingPhone?.masked ?? "", smsEnabled: account.smsEnabled,
            totpEnabled: account.totpEnabled, backupCodesRemaining: try tx.remainingBackupCodes(accountID: account.id),
            preferred: account.preferred, locked: isLocked(account, at: now),
            lockedUntil: isLocked(account, at: now) ? account.lockedUntil : nil,
            consecutiveFailures: account.consecutiveFailures)
    }

    /// A fresh identifier: 48 bits of the clock's milliseconds, then 128 random bits, in
    /// lower-case base32. The random part makes it unguessable; the time prefix makes new rows
    /// land at the end of the database's index instead of on a random page.
    func newIdentifier(prefix: String) -> String {
        let milliseconds = UInt64(max(0, clock.now().timeIntervalSince1970 * 1000))
        let time = (0..<6).map { UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - $0))) }
        return prefix + Base32.encode(time + random.bytes(16)).lowercased()
    }

    /// Proof tokens carry 256 bits; the store keeps only their SHA-256.
    static func tokenHash(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(token.utf8)))
    }

    /// A fresh proof token (256 random bits) and the hash the store keeps.
    struct ProofToken: Sendable {
        var token: String
        var hash: [UInt8]
    }

    func newProofToken() -> ProofToken {
        let token = "pf_" + Base32.encode(random.bytes(32)).lowercased()
        return ProofToken(token: token, hash: Self.tokenHash(token))
    }

    /// Stores `token` as a single-use proof for `purpose`.
    func issueProof(
        _ token: ProofToken, accountID: String, purpose: CodePurpose, expiresAt: Date, in tx: any StoreTransaction
    ) throws -> (token: String, expiresAt: Date) {
        try tx.insertProof(
            ProofRecord(tokenHash: token.hash, accountID: accountID, purpose: purpose, expiresAt: expiresAt))
        return (token.token, expiresAt)
    }

    /// The account's active factors, as the step-up table sees them.
    func activeFactors(_ account: AccountRecord, in tx: any StoreTransaction) throws -> ActiveFactors {
        ActiveFactors(
            sms: account.smsEnabled, totp: account.totpEnabled,
            backupCodes: try tx.remainingBackupCodes(accountID: account.id) > 0)
    }

    /// Asks the step-up table (``StepUpPolicy``) what `change` needs for this account and
    /// checks (and consumes) the offered proof against it. Every factor change goes through
    /// here; none decides on its own whether a proof is needed.
    ///
    /// On a refusal the account row is saved whenever the attempt changed it (a wrong
    /// authenticator or backup code counts as a failed attempt, also during a lock), so a
    /// counted failure can never be lost by a caller that forgets to save.
    ///
    /// - Returns: the factor that proved possession, or nil when no proof was needed (the
    ///   account's first enrolment).
    func authorize(
        _ change: FactorChange, proof: ProofInput?, account: inout AccountRecord, now: Date,
        in tx: any StoreTransaction
    ) throws -> Result<FactorKind?, TwoFactorError> {
        let before = account
        let result = try checkStepUp(change, proof: proof, account: &account, now: now, in: tx)
        if case .failure = result, account != before { try tx.saveAccount(account) }
        return result
    }

    private func checkStepUp(
        _ change: FactorChange, proof: ProofInput?, account: inout AccountRecord, now: Date,
        in tx: any StoreTransaction
    ) throws -> Result<FactorKind?, TwoFactorError> {
        let locked = isLocked(account, at: now)
        let requirement = StepUpPolicy.requirement(
            for: change, factors: try activeFactors(account, in: tx), locked: locked,
            backupCodeProofPurposes: policy.backupCodeProofPurposes)
        switch requirement {
        case .noProof:
            return .success(nil)
        case .refused(let kind, let message):
            guard locked else { return .failure(TwoFactorError(kind, message)) }
            // A code offered during a lock is still a guess: it counts.
            if let proof, proof.kind != .token {
                try registerFailure(&account, now: now, in: tx)
                if policy.auditsGuessWhileLocked(consecutiveFailures: account.consecutiveFailures) {
                    try auditRefusedProof(
                        change, "locked; \(account.consecutiveFailures) consecutive failures", account: account,
                        now: now, in: tx)
                }
            } else {
                try auditRefusedProof(change, "locked", account: account, now: now, in: tx)
            }
            var error = TwoFactorError(.permissionDenied, "The account is locked")
            error.lockedUntil = account.lockedUntil
            error.retryAfter = retryAfter(account.lockedUntil, now)
            return .failure(error)
        case .proof(let purpose, let accepted):
            guard let proof else {
                try auditRefusedProof(change, "no proof offered", account: account, now: now, in: tx)
                return .failure(
                    TwoFactorError(
                        .permissionDenied,
                        "This action needs a proof from a current factor: a code for \(purpose.rawValue)"
                            + (accepted.contains(.authenticatorCode) ? " or an authenticator code" : "")))
            }
            guard accepted.contains(proof.kind) else {
                try auditRefusedProof(
                    change, "\(proof.kind.rawValue) not accepted here", account: account, now: now, in: tx)
                return .failure(
                    TwoFactorError(
                        .permissionDenied,
                        proof.kind == .backupCode
                            ? "A backup code is not accepted for this action"
                            : "An authenticator code is not accepted: the authenticator is not on"))
            }
            return try checkProof(proof, purpose: purpose, change: change, account: &account, now: now, in: tx)
                .map { Optional($0) }
        }
    }

    /// The audit event of a refused proof: the change and why, never the proof itself; at most
    /// `refusalEventsPerHour` an hour per account (`auditRefusal`).
    private func auditRefusedProof(
        _ change: FactorChange, _ why: String, account: AccountRecord, now: Date, in tx: any StoreTransaction
    ) throws {
        try auditRefusal(.proof, .refused, account: account.id, detail: "\(change.rawValue): \(why)", at: now, in: tx)
    }

    /// Checks (and consumes) a proof the step-up table accepts. A token must be this
    /// account's (compared byte for byte, not by Unicode equivalence), of `purpose`, unexpired
    /// and unused; it is consumed whatever the verdict. A wrong authenticator or backup code
    /// counts as a failed attempt.
    private func checkProof(
        _ proof: ProofInput, purpose: CodePurpose, change: FactorChange, account: inout AccountRecord, now: Date,
        in tx: any StoreTransaction
    ) throws -> Result<FactorKind, TwoFactorError> {
        switch proof {
        case .token(let token):
            guard let record = try tx.takeProof(tokenHash: Self.tokenHash(token)),
                Self.sameAccount(record.accountID, account.id), record.purpose == purpose, record.expiresAt > now
            else {
                try auditRefusedProof(
                    change, "token unknown, used, expired or for another action", account: account, now: now, in: tx)
                return .failure(.proofRefused)
            }
            return .success(.sms)
        case .totpCode(let code):
            switch try checkTOTP(code, account: &account, now: now, in: tx) {
            case .accepted:
                registerSuccess(&account, now: now)
                return .success(.totp)
            case .rejected(let reason):
                try registerFailure(&account, now: now, in: tx)
                try auditRefusedProof(change, "authenticator code \(reason)", account: account, now: now, in: tx)
                return .failure(.proofRefused)
            }
        case .backupCode(let code):
            if try consumeBackupCode(code, account: account, now: now, in: tx) {
                registerSuccess(&account, now: now)
                try audit(
                    .backupCodeRedeemed, .success, account: account.id, detail: "as proof for \(change.rawValue)",
                    at: now, in: tx)
                return .success(.backup)
            }
            try registerFailure(&account, now: now, in: tx)
            try auditRefusedProof(change, "backup code not valid", account: account, now: now, in: tx)
            return .failure(.proofRefused)
        }
    }

    /// Called when an account's first SMS or authenticator is turned on: voids what could
    /// have been started without a proof while the account had no factor, so that a person
    /// who held the session before the owner enrolled keeps nothing of it. That is the
    /// pending authenticator enrolment (when SMS is the new factor), the unverified number and
    /// the codes sent to it (when the authenticator is), and any backup codes (which the
    /// step-up table lets no one make without a primary factor).
    ///
    /// - Returns: a note for the audit event ("" when nothing was voided).
    func voidUnprovenEnrolments(
        _ account: inout AccountRecord, keeping factor: FactorKind, now: Date, in tx: any StoreTransaction
    ) throws -> String {
        var voided: [String] = []
        if factor != .totp, account.pendingTotpSealed != nil {
            account.pendingTotpSealed = nil
            account.pendingTotpExpiresAt = nil
            voided.append("the pending authenticator enrolment")
        }
        if factor != .sms, account.phone != nil, !account.phoneVerified {
            account.phone = nil
            account.pendingPhone = nil
            try tx.voidActiveChallenges(accountID: account.id, purpose: .verifyPhone)
            voided.append("the unverified phone number")
        }
        let codes = try tx.remainingBackupCodes(accountID: account.id)
        if codes > 0 {
            try tx.replaceBackupCodes(accountID: account.id, hashes: [], at: now)
            voided.append("\(codes) backup codes made before any factor")
        }
        return voided.isEmpty ? "" : "; voided " + voided.joined(separator: ", ")
    }

    /// Account ids match only when their bytes do: Swift's `==` on strings treats canonically
    /// equivalent spellings ("é" precomposed and decomposed) as equal, the store does not.
    static func sameAccount(_ a: String, _ b: String) -> Bool {
        a.utf8.elementsEqual(b.utf8)
    }

    enum TOTPCheck {
        case accepted(step: UInt64)
        case rejected(TOTPRejection)
    }

    /// Why an authenticator code was not accepted; the description is the audit wording.
    enum TOTPRejection: String, CustomStringConvertible {
        case notEnabled = "not enabled", malformed, wrong, replayed

        var description: String { rawValue }
    }

    /// Checks an authenticator code against the enabled secret and records the accepted step,
    /// so no step is ever accepted twice (docs/SECURITY.md §6). Does not touch the failure counter.
    func checkTOTP(_ input: String, account: inout AccountRecord, now: Date, in tx: any StoreTransaction) throws
        -> TOTPCheck
    {
        guard let sealed = account.totpSecretSealed else { return .rejected(.notEnabled) }
        guard let candidate = OneTimeCode(parsing: input, length: .six) else { return .rejected(.malformed) }
        let secret: [UInt8]
        do {
            secret = try keys.encryption.open(sealed, accountID: account.id)
        } catch {
            throw TwoFactorError(
                .internal, "The authenticator secret cannot be read", logDetail: "secret does not open: \(error)")
        }
        let totp = try TOTP(secret: secret)
        guard let step = totp.verify(candidate, at: now, window: policy.totpWindow) else { return .rejected(.wrong) }
        guard TOTP.acceptableStep(matched: step, lastAccepted: account.totpLastStep) else {
            try audit(
                .totpReplayRefused, .refused, account: account.id,
                detail: "step \(step) is not after the last accepted step", at: now, in: tx)
            return .rejected(.replayed)
        }
        account.totpLastStep = step
        return .accepted(step: step)
    }

    /// Consumes an unused backup code of the account; false for anything else (malformed,
    /// unknown, used). Exactly one of any number of concurrent calls with one code wins.
    func consumeBackupCode(_ input: String, account: AccountRecord, now: Date, in tx: any StoreTransaction) throws
        -> Bool
    {
        // Hash something even for malformed input so both paths cost about the same.
        let code = BackupCode(parsing: input)
        let hash = keys.hashing.hash(code ?? BackupCode.placeholder, accountID: account.id)
        guard code != nil else { return false }
        return try tx.consumeBackupCode(accountID: account.id, hash: hash, at: now)
    }
}

/// A type-erased `RandomSource`, so the generic helpers that take `some RandomSource` can use
/// the injected source.
struct AnyRandomSource: RandomSource {
    let base: any RandomSource

    init(_ base: any RandomSource) { self.base = base }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) { base.fill(buffer) }
}

/// A proof offered for a sensitive action.
public enum ProofInput: Sendable, Equatable {
    /// The proof token from a successful `verify` of the action's purpose.
    case token(String)
    /// A current authenticator code.
    case totpCode(String)
    /// An unused backup code (consumed).
    case backupCode(String)
}

/// What the profile page shows for an account.
public struct AccountSummary: Sendable, Equatable {
    public var accountID: String
    public var phoneMasked = ""
    public var phoneVerified = false
    public var pendingPhoneMasked = ""
    public var smsEnabled = false
    public var totpEnabled = false
    public var backupCodesRemaining = 0
    public var preferred: FactorKind?
    public var locked = false
    public var lockedUntil: Date?
    public var consecutiveFailures = 0

    /// No second factor is on yet: the first login must set one up.
    public var setupRequired: Bool { !smsEnabled && !totpEnabled }

    public init(
        accountID: String, phoneMasked: String = "", phoneVerified: Bool = false, pendingPhoneMasked: String = "",
        smsEnabled: Bool = false, totpEnabled: Bool = false, backupCodesRemaining: Int = 0,
        preferred: FactorKind? = nil, locked: Bool = false, lockedUntil: Date? = nil, consecutiveFailures: Int = 0
    ) {
        self.accountID = accountID
        self.phoneMasked = phoneMasked
        self.phoneVerified = phoneVerified
        self.pendingPhoneMasked = pendingPhoneMasked
        self.smsEnabled = smsEnabled
        self.totpEnabled = totpEnabled
        self.backupCodesRemaining = backupCodesRemaining
        self.preferred = preferred
        self.locked = locked
        self.lockedUntil = lockedUntil
        self.consecutiveFailures = consecutiveFailures
    }
}
