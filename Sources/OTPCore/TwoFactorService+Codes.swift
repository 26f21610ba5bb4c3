public import Foundation
import Logging
import OTPMetrics
import Synchronization

/// A challenge created and sent: what the caller may show.
public struct ChallengeTicket: Sendable, Equatable {
    public var challengeID: String
    public var expiresAt: Date
    public var destinationMasked: String
    /// When a new code for the same purpose can be requested.
    public var resendAt: Date
    public var codeLength: Int
}

/// The answer to a verification. On failure it says only what the caller may show.
public struct VerifyOutcome: Sendable, Equatable {
    public var success: Bool
    /// The factor the code belonged to, on success.
    public var factor: FactorKind?
    /// On failure: attempts left in this challenge (0 when unknown or used up).
    public var attemptsLeft: Int
    /// Set when the account is locked.
    public var lockedUntil: Date?
    /// On success for a purpose that needs one: the single-use proof.
    public var proofToken: String?
    public var proofExpiresAt: Date?
    public var summary: AccountSummary

    /// The one message for every failed verification, whatever the reason (docs/SECURITY.md §13).
    public static let failureMessage = "The code is not valid"
}

extension TwoFactorService {
    // MARK: Status

    /// What the profile page shows. An unknown account is a valid empty account.
    public func status(accountID: String) async throws(TwoFactorError) -> AccountSummary {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        return try await transact(account: accountID) { tx in
            .success(try self.summary(try tx.account(accountID), id: accountID, in: tx, now: now))
        }
    }

    // MARK: Phone number

    /// Saves a phone number. While SMS is not on, the number is stored "not verified"
    /// (`save_phone` in the step-up table: no proof for an account's first factor, a
    /// `manage_factors` proof once it has any). When a number is verified, the new one needs a
    /// `change_phone` proof and is held as pending: the old number keeps working until a code
    /// sent to the new one is verified. The proof is checked before anything is compared with
    /// the saved number, so a caller without one cannot learn whether a guess matches it.
    ///
    /// - Returns: the new state and whether the number is pending.
    public func setPhone(accountID: String, number: String, proof: ProofInput?) async throws(TwoFactorError) -> (
        summary: AccountSummary, pending: Bool
    ) {
        try Self.checkAccountID(accountID)
        let phone = try allowedPhone(number)
        let now = clock.now()
        return try await transact(account: accountID) { tx in
            var account = try tx.account(accountID) ?? AccountRecord(id: accountID, now: now)
            let change: FactorChange = account.smsEnabled ? .changePhone : .savePhone
            let proved: FactorKind?
            switch try self.authorize(change, proof: proof, account: &account, now: now, in: tx) {
            case .failure(let error): return .failure(error)
            case .success(let factor): proved = factor
            }
            let pending = change == .changePhone
            if pending {
                if account.phone == phone {
                    try tx.saveAccount(account)
                    return .failure(TwoFactorError(.alreadyExists, "This phone number is already verified"))
                }
                account.pendingPhone = phone
                try self.audit(
                    .phoneChangeRequested, .pending, account: accountID, detail: "proof: \(proved?.rawValue ?? "none")",
                    destination: phone.masked, at: now, in: tx)
            } else {
                account.phone = phone
                account.phoneVerified = false
                account.pendingPhone = nil
                try self.audit(
                    .phoneSaved, .notVerified, account: accountID,
                    detail: proved.map { "proof: \($0.rawValue)" } ?? "first factor", destination: phone.masked,
                    at: now, in: tx)
            }
            // Codes already sent to an earlier unverified or pending number stop working.
            try tx.voidActiveChallenges(accountID: accountID, purpose: .verifyPhone)
            account.updatedAt = now
            try tx.saveAccount(account)
            return .success((try self.summary(account, id: accountID, in: tx, now: now), pending))
        }
    }

    /// Parses a number a caller typed (INVALID_ARGUMENT saying what is wrong) and checks that
    /// its country may receive texts.
    func allowedPhone(_ number: String) throws(TwoFactorError) -> PhoneNumber {
        let phone: PhoneNumber
        do {
            phone = try PhoneNumber(parsing: number)
        } catch {
            throw TwoFactorError(.invalidArgument, error.description)
        }
        try checkCountryAllowed(phone)
        return phone
    }

    func checkCountryAllowed(_ phone: PhoneNumber) throws(TwoFactorError) {
        guard policy.allowedCountryCodes.isEmpty || policy.allowedCountryCodes.contains(phone.countryCallingCode)
        else {
            throw TwoFactorError(
                .failedPrecondition, "Text messages to country code +\(phone.countryCallingCode) are not allowed")
        }
    }

    // MARK: Sending a code

    /// Creates a challenge for `purpose`, voiding the previous one of the same purpose, and
    /// sends its code by SMS: `verify_phone` to the unverified or pending number, every other
    /// purpose to the verified number. Answers once the sender took (or refused) the message.
    public func startChallenge(accountID: String, purpose: CodePurpose) async throws(TwoFactorError)
        -> ChallengeTicket
    {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        let prepared: PreparedChallenge = try await transact(account: accountID) { tx in
            try self.prepareChallenge(accountID: accountID, purpose: purpose, now: now, in: tx)
        }
        let message = SMSMessage(
            to: prepared.destination, body: smsText(code: prepared.code, purpose: purpose), purpose: purpose,
            challengeID: prepared.ticket.challengeID, expiresAt: prepared.ticket.expiresAt)
        let result: Result<SMSReceipt, SMSSendError>
        do {
            result = .success(try await sender.send(message))
        } catch {
            result = .failure(error)
        }
        _ = try await recordSend(
            result, to: prepared.destination,
            SentText(
                accountID: accountID, challengeID: prepared.ticket.challengeID, purpose: purpose.rawValue,
                sentKind: .codeSent, failedKind: .codeSendFailed))
        return prepared.ticket
    }

    /// A text handed to the sender, for the delivery log and the audit trail.
    struct SentText: Sendable {
        /// The account it is for ("" for an administrator's test text).
        var accountID: String
        /// Its challenge (a code) or test id; a failed send voids a challenge of this id.
        var challengeID: String
        var purpose: String
        var sentKind: EventKind
        var failedKind: EventKind
        var detail = ""
        /// Say what is wrong with the sender's configuration (to an administrator) instead of
        /// "try again later" (to a user).
        var explainsConfiguration = false
    }

    /// Writes the record of something that already happened outside otpd (a text the provider
    /// took or refused), in a task of its own: the caller's deadline or closed connection must
    /// not skip it. A record that still cannot be written (storage failing) is counted in
    /// ``unrecordedEvents`` and logged with the kind of its event (`kind`), never with a number
    /// or a code; the caller's answer does not depend on it.
    func recordOutsideCancellation(
        _ kind: EventKind, _ body: @escaping @Sendable (any StoreTransaction) throws -> Result<Void, TwoFactorError>
    ) async {
        let failure = await Task { () -> TwoFactorError? in
            do throws(TwoFactorError) {
                try await self.transact(body)
                return nil
            } catch {
                return error
            }
        }.value
        guard let failure else { return }
        let count = unrecorded.add(1, ordering: .relaxed).newValue
        logger.error(
            "the record of a text could not be stored; the delivery log and the audit trail miss it",
            metadata: [
                "event.kind": "\(kind.rawValue)", "unrecorded_events": "\(count)",
                "error": "\(failure.logDetail ?? failure.message)",
            ])
    }

    /// Records what became of a text: the delivery log, the audit event and, for a number the
    /// provider refused, the undeliverable mark (a failed code's challenge is voided). Records
    /// are best effort: the text is already with the provider or refused by it. A send error
    /// becomes the caller's refusal.
    func recordSend(_ result: Result<SMSReceipt, SMSSendError>, to destination: PhoneNumber, _ text: SentText)
        async throws(TwoFactorError) -> SMSReceipt
    {
        let masked = destination.masked
        let suffix = text.detail.isEmpty ? "" : "; \(text.detail)"
        switch result {
        case .success(let receipt):
            OTPMetrics.smsSend(
                provider: receipt.provider, outcome: .accepted, countryCallingCode: destination.countryCallingCode)
            await recordOutsideCancellation(text.sentKind) { tx in
                let now = self.clock.now()
                try tx.insertDelivery(
                    DeliveryRecord(
                        accountID: text.accountID, challengeID: text.challengeID, purpose: text.purpose,
                        destinationMasked: masked, provider: receipt.provider, messageSID: receipt.messageID,
                        status: receipt.status, errorCode: nil, attempts: receipt.attempts, createdAt: now,
                        updatedAt: now))
                try self.audit(
                    text.sentKind, .accepted, account: text.accountID,
                    detail: "\(text.purpose) via \(receipt.provider)\(suffix)", destination: masked, at: now, in: tx)
                return .success(())
            }
            return receipt
        case .failure(let sendError):
            OTPMetrics.smsSend(
                provider: sendError.provider.isEmpty ? sender.name : sendError.provider,
                outcome: sendError.kind.metricOutcome, countryCallingCode: destination.countryCallingCode)
            await recordOutsideCancellation(text.failedKind) { tx in
                let now = self.clock.now()
                try tx.updateChallenge(id: text.challengeID, state: .failed, attemptsLeft: 0)
                try tx.insertDelivery(
                    DeliveryRecord(
                        accountID: text.accountID, challengeID: text.challengeID, purpose: text.purpose,
                        destinationMasked: masked,
                        provider: sendError.provider.isEmpty ? self.sender.name : sendError.provider,
                        messageSID: "", status: sendError.kind == .temporary ? "error" : "rejected",
                        errorCode: sendError.providerCode, attempts: sendError.attempts, createdAt: now, updatedAt: now)
                )
                if sendError.kind == .undeliverable {
                    try tx.markUndeliverable(phone: destination, errorCode: sendError.providerCode, at: now)
                }
                try self.audit(
                    text.failedKind, .failed, account: text.accountID, detail: "\(text.purpose): \(sendError)\(suffix)",
                    destination: masked, at: now, in: tx)
                return .success(())
            }
            switch sendError.kind {
            case .undeliverable:
                throw TwoFactorError(
                    .failedPrecondition, "This phone number cannot receive text messages",
                    logDetail: sendError.description)
            case .configuration where text.explainsConfiguration:
                throw TwoFactorError(
                    .failedPrecondition, "The SMS sender is misconfigured: \(sendError.reason)",
                    logDetail: sendError.description)
            case .temporary, .configuration:
                throw TwoFactorError(
                    .unavailable, "The text message could not be sent; try again later",
                    logDetail: sendError.description)
            }
        }
    }

    struct PreparedChallenge: Sendable {
        var ticket: ChallengeTicket
        var code: OneTimeCode
        var destination: PhoneNumber
    }

    private func prepareChallenge(
        accountID: String, purpose: CodePurpose, now: Date, in tx: any StoreTransaction
    ) throws -> Result<PreparedChallenge, TwoFactorError> {
        guard let account = try tx.account(accountID) else {
            return .failure(
                TwoFactorError(
                    .failedPrecondition,
                    purpose == .verifyPhone ? "No phone number is saved" : "SMS two-factor is not on for this account"))
        }
        if isLocked(account, at: now) {
            return .failure(
                TwoFactorError(
                    .permissionDenied, "The account is locked", retryAfter: retryAfter(account.lockedUntil, now),
                    lockedUntil: account.lockedUntil))
        }
        let destination: PhoneNumber
        if purpose == .verifyPhone {
            if let pending = account.pendingPhone {
                destination = pending
            } else if let phone = account.phone, !account.phoneVerified {
                destination = phone
            } else {
                return .failure(TwoFactorError(.failedPrecondition, "No phone number is waiting for verification"))
            }
        } else {
            guard account.smsEnabled, let phone = account.phone else {
                return .failure(TwoFactorError(.failedPrecondition, "SMS two-factor is not on for this account"))
            }
            destination = phone
        }
        do {
            try checkCountryAllowed(destination)
        } catch {
            return .failure(error)
        }
        // A number the provider called unreachable in the last day is not paid for again.
        if let known = try tx.undeliverable(phone: destination), known.at > now.addingTimeInterval(-86_400) {
            try auditRefusal(
                .codeRefused, .undeliverable, account: accountID,
                detail: "\(purpose.rawValue): the provider refused this number"
                    + (known.errorCode.map { " (error \($0))" } ?? "") + " within the last day",
                destination: destination.masked, at: now, in: tx)
            return .failure(TwoFactorError(.failedPrecondition, "This phone number cannot receive text messages"))
        }
        if let refusal = try checkBudgets(
            SMSBudgetRequest(accountID: accountID, purpose: purpose), phone: destination, now: now, in: tx)
        {
            try auditRefusal(
                .codeRefused, .rateLimited, account: accountID,
                detail: "\(purpose.rawValue): \(refusal.logDetail ?? refusal.message)", destination: destination.masked,
                at: now, in: tx)
            return .failure(refusal)
        }
        if purpose == .verifyPhone,
            let refusal = try breakerRefusal(for: destination, accountID: accountID, now: now, in: tx)
        {
            return .failure(refusal)
        }
        let code = OneTimeCode.generate(length: policy.codeLength, using: random)
        let id = newIdentifier(prefix: "ch_")
        let expiresAt = now.addingTimeInterval(policy.codeLifetime)
        try tx.voidActiveChallenges(accountID: accountID, purpose: purpose)
        try tx.insertChallenge(
            ChallengeRecord(
                id: id, accountID: accountID, purpose: purpose, destination: destination,
                codeHash: keys.hashing.hash(code, challengeID: id, accountID: accountID, purpose: purpose.rawValue),
                createdAt: now, expiresAt: expiresAt, attemptsLeft: policy.attemptsPerChallenge, state: .active))
        try tx.recordSMSSend(
            SMSSendRecord(accountID: accountID, phone: destination, purpose: purpose, challengeID: id, at: now))
        try tx.pruneSMSSends(before: now.addingTimeInterval(-86_400))
        let samePurpose = try tx.smsSends(accountID: accountID, since: now.addingTimeInterval(-3600))
            .filter { $0.purpose == purpose }.count
        let ticket = ChallengeTicket(
            challengeID: id, expiresAt: expiresAt, destinationMasked: destination.masked,
            resendAt: now.addingTimeInterval(policy.cooldown(afterSends: samePurpose)),
            codeLength: policy.codeLength.count)
        return .success(PreparedChallenge(ticket: ticket, code: code, destination: destination))
    }

    /// Who a text is for, for the budgets: an account's code of `purpose`, or (nil) an
    /// administrator's test text, which has no account and is paid from the verification pool.
    struct SMSBudgetRequest {
        var accountID: String
        var purpose: CodePurpose
    }

    /// The first budget the send would exceed, as a refusal with the time to wait.
    func checkBudgets(
        _ request: SMSBudgetRequest?, phone: PhoneNumber, now: Date, in tx: any StoreTransaction
    ) throws -> TwoFactorError? {
        func exhausted(_ message: String, until: Date, _ detail: String, _ budget: OTPMetrics.Budget) -> TwoFactorError
        {
            tx.afterCommit { OTPMetrics.budgetRefusal(budget) }
            return TwoFactorError(.resourceExhausted, message, retryAfter: retryAfter(until, now), logDetail: detail)
        }
        let hourAgo = now.addingTimeInterval(-3600)
        if let request {
            let recent = try tx.smsSends(accountID: request.accountID, since: hourAgo)
            let samePurpose = recent.filter { $0.purpose == request.purpose }
            if let last = samePurpose.first {
                let wait = policy.cooldown(afterSends: samePurpose.count)
                if now < last.at.addingTimeInterval(wait) {
                    return exhausted(
                        "A code was sent moments ago; wait before asking for another",
                        until: last.at.addingTimeInterval(wait), "resend cooldown \(Int(wait)) s", .resendCooldown)
                }
            }
            if recent.count >= policy.smsPerAccountPerHour, let oldest = recent.last {
                return exhausted(
                    "Too many codes were sent to this account; wait before asking for another",
                    until: oldest.at.addingTimeInterval(3600), "account budget \(policy.smsPerAccountPerHour)/h",
                    .account)
            }
        }
        let pool = request.map { SMSPool($0.purpose) } ?? .verification
        let perPhone = pool == .verification ? policy.smsVerificationsPerPhonePerDay : policy.smsPerPhonePerDay
        if try tx.countSMSSends(phone: phone, pool: pool, since: now.addingTimeInterval(-86_400), limit: perPhone)
            >= perPhone
        {
            return exhausted(
                "Too many codes were sent to this phone number today", until: now.addingTimeInterval(3600),
                "phone \(pool) budget \(perPhone)/day", pool == .verification ? .phoneVerification : .phoneVerified)
        }
        if policy.smsPerCountryPerHour > 0,
            try tx.countSMSSends(
                countryCallingCode: phone.countryCallingCode, since: hourAgo, limit: policy.smsPerCountryPerHour)
                >= policy.smsPerCountryPerHour
        {
            return exhausted(
                "Text messages are busy; try again later", until: now.addingTimeInterval(600),
                "country +\(phone.countryCallingCode) budget \(policy.smsPerCountryPerHour)/h", .country)
        }
        if policy.smsGlobalPerMinute > 0,
            try tx.countAllSMSSends(since: now.addingTimeInterval(-60), limit: policy.smsGlobalPerMinute)
                >= policy.smsGlobalPerMinute
        {
            return exhausted(
                "Text messages are busy; try again later", until: now.addingTimeInterval(60),
                "global budget \(policy.smsGlobalPerMinute)/min", .global)
        }
        return nil
    }

    func retryAfter(_ until: Date?, _ now: Date) -> Int? {
        guard let until, until != .distantFuture else { return nil }
        return max(1, Int(until.timeIntervalSince(now).rounded(.up)))
    }

    /// The text of a code message: what it is for and when it expires, and no other secret.
    func smsText(code: OneTimeCode, purpose: CodePurpose) -> String {
        let action =
            switch purpose {
            case .verifyPhone: "to verify this phone number"
            case .login: "to sign in"
            case .changePhone: "to change your phone number"
            case .disableFactor: "to turn off a sign-in method"
            case .manageFactors: "to change your sign-in settings"
            }
        let minutes = max(1, Int(policy.codeLifetime / 60))
        return
            "\(policy.smsBrand): \(code.text) is your code \(action). It expires in \(minutes) minutes. Never share it."
    }

    // MARK: Verifying a code

    /// Checks a code for `purpose`: the SMS code of `challengeID`, or a current authenticator
    /// code (the two are interchangeable, except for `verify_phone`, which proves the number).
    /// Every failure counts against the account, answers the same way, and is audited with its
    /// reason.
    public func verify(accountID: String, purpose: CodePurpose, code: String, challengeID: String?)
        async throws(TwoFactorError) -> VerifyOutcome
    {
        try Self.checkAccountID(accountID)
        let now = clock.now()
        // The keyed hash and a possible proof token are made before the transaction: the
        // single writer should spend its time on the database, not on HMACs. The hash is
        // computed whatever the input, so a malformed code costs the same as a wrong one. A
        // login never issues a proof, so it makes no token (random bytes from the kernel, Base32
        // and a SHA-256: about 4 % of a login Verify's CPU); what it costs depends only on the
        // purpose the caller chose, never on the account or the code.
        let parsed = OneTimeCode(parsing: code, length: policy.codeLength)
        let candidateHash = keys.hashing.hash(
            parsed ?? OneTimeCode.placeholder(policy.codeLength), challengeID: challengeID ?? "",
            accountID: accountID, purpose: purpose.rawValue)
        let token = purpose == .login ? nil : newProofToken()
        return try await transact(account: accountID) { tx in
            .success(
                try self.verifyInTransaction(
                    accountID, purpose, code, parsed: parsed, candidateHash: candidateHash, challengeID, token: token,
                    now: now, tx))
        }
    }

    private func verifyInTransaction(
        _ accountID: String, _ purpose: CodePurpose, _ code: String, parsed: OneTimeCode?, candidateHash: [UInt8],
        _ challengeID: String?, token: ProofToken?, now: Date, _ tx: any StoreTransaction
    ) throws -> VerifyOutcome {
        let stored = try tx.account(accountID)
        var account = stored ?? AccountRecord(id: accountID, now: now)

        // The SMS challenge: usable only if it is this account's active, unexpired challenge of
        // this purpose. The hash is computed whatever the case, so timing does not tell.
        var challenge = try challengeID.flatMap { try tx.challenge(id: $0) }
        var reason = VerifyFailure.wrongCode
        if challengeID != nil && challenge == nil { reason = .unknownChallenge }
        if let found = challenge {
            if !Self.sameAccount(found.accountID, accountID) {
                reason = .otherAccountsChallenge
                challenge = nil
            } else if found.purpose != purpose {
                reason = .challengeFor(found.purpose)
                challenge = nil
            } else if found.state != .active {
                reason = .challengeNotActive(found.state)
                challenge = nil
            } else if found.expiresAt <= now {
                reason = .challengeExpired
                challenge = nil
            }
        }
        var matched: FactorKind?
        if let challenge, parsed != nil, ConstantTime.equals(candidateHash, challenge.codeHash) {
            matched = .sms
        }
        if parsed == nil { reason = .malformedCode }

        let tried: OTPMetrics.Factor = challengeID == nil ? .totp : .sms
        if isLocked(account, at: now), stored != nil {
            // A guess during a lock is still a guess: it counts, and the lock holds even for
            // the right code.
            tx.afterCommit { OTPMetrics.verification(.locked, factor: tried) }
            return try failCounted(
                &account, .verify, detail: "\(purpose.rawValue): account locked", whileLocked: true, now: now, in: tx
            ) { saved in
                VerifyOutcome(
                    success: false, attemptsLeft: challenge?.attemptsLeft ?? 0, lockedUntil: saved.lockedUntil,
                    summary: AccountSummary(accountID: accountID))
            }
        }

        // The authenticator, wherever an SMS code is accepted (not for proving a new number).
        if matched == nil && purpose != .verifyPhone && account.totpEnabled {
            switch try checkTOTP(code, account: &account, now: now, in: tx) {
            case .accepted: matched = .totp
            case .rejected(.replayed): reason = .authenticatorCodeReplayed
            case .rejected: break
            }
        }

        // verify_phone proves the number the code went to: it must still be the one waiting.
        if matched == .sms, purpose == .verifyPhone, let challenge {
            let waiting = account.pendingPhone ?? (account.phoneVerified ? nil : account.phone)
            if waiting != challenge.destination {
                matched = nil
                reason = .numberChanged
            }
        }

        guard let factor = matched, stored != nil else {
            if stored == nil {
                // Nothing to count against: the account has no factor at all. The daemon-wide
                // counter of such attempts takes the account row's place in the commit, so an
                // unknown account costs what a wrong code costs (docs/SECURITY.md §13; without it,
                // bench-uniform.sh measured it 13 % faster).
                let outcome: OTPMetrics.VerificationOutcome = parsed == nil ? .malformed : .wrong
                tx.afterCommit { OTPMetrics.verification(outcome, factor: tried) }
                try tx.countUnknownAccountAttempt()
                try audit(
                    .verify, .failure, account: accountID, detail: "\(purpose.rawValue): no such account", at: now,
                    in: tx)
                return VerifyOutcome(success: false, attemptsLeft: 0, summary: AccountSummary(accountID: accountID))
            }
            var attemptsLeft = 0
            if var challenge {
                challenge.attemptsLeft = max(0, challenge.attemptsLeft - 1)
                attemptsLeft = challenge.attemptsLeft
                try tx.updateChallenge(
                    id: challenge.id, state: attemptsLeft == 0 ? .voided : .active, attemptsLeft: attemptsLeft)
            }
            let outcome = reason.metricOutcome
            tx.afterCommit { OTPMetrics.verification(outcome, factor: tried) }
            // Only the account id comes back: the account's state (its masked number, its
            // failure count) would tell a known account from an unknown one (docs/SECURITY.md §13).
            return try failCounted(
                &account, .verify, detail: "\(purpose.rawValue): \(reason)",
                destination: challenge?.destination.masked ?? "", now: now, in: tx
            ) { saved in
                VerifyOutcome(
                    success: false, attemptsLeft: attemptsLeft,
                    lockedUntil: isLocked(saved, at: now) ? saved.lockedUntil : nil,
                    summary: AccountSummary(accountID: accountID))
            }
        }

        // Success.
        let succeeded: OTPMetrics.Factor = factor == .totp ? .totp : .sms
        tx.afterCommit { OTPMetrics.verification(.success, factor: succeeded) }
        registerSuccess(&account, now: now)
        if let challenge {
            try tx.updateChallenge(id: challenge.id, state: .used, attemptsLeft: challenge.attemptsLeft)
        }
        var proof: (token: String, expiresAt: Date)?
        var kind = EventKind.verify
        var detail = "\(purpose.rawValue) via \(factor.rawValue)"
        switch purpose {
        case .verifyPhone:
            let destination = challenge!.destination
            let before = try activeFactors(account, in: tx)
            if account.pendingPhone == destination {
                kind = .phoneChanged
                detail = "the new number replaced the old one"
                account.pendingPhone = nil
            } else {
                kind = .phoneVerified
                detail = "SMS two-factor is on"
            }
            account.phone = destination
            account.phoneVerified = true
            if account.preferred == nil { account.preferred = .sms }
            // Codes sent to the old number stop working (this challenge is already used).
            try tx.voidActiveChallenges(accountID: accountID, purpose: nil)
            if !before.primary {
                detail += try voidUnprovenEnrolments(&account, keeping: .sms, now: now, in: tx)
            }
            // Enrolment grace: only an account that had no factor at all gets a proof for its
            // first backup codes without another code (step-up table, docs/SECURITY.md).
            if !before.any {
                proof = try issueProof(
                    token ?? newProofToken(), accountID: accountID, purpose: .manageFactors,
                    expiresAt: now.addingTimeInterval(policy.codeLifetime), in: tx)
            }
        case .login:
            break
        case .changePhone, .disableFactor, .manageFactors:
            proof = try issueProof(
                token ?? newProofToken(), accountID: accountID, purpose: purpose,
                expiresAt: challenge?.expiresAt ?? now.addingTimeInterval(policy.codeLifetime), in: tx)
        }
        try tx.saveAccount(account)
        try audit(
            kind, .success, account: accountID, detail: detail, destination: challenge?.destination.masked ?? "",
            at: now, in: tx)
        return VerifyOutcome(
            success: true, factor: factor, attemptsLeft: challenge?.attemptsLeft ?? 0, proofToken: proof?.token,
            proofExpiresAt: proof?.expiresAt, summary: try summary(account, id: accountID, in: tx, now: now))
    }
}

/// Why a verification failed, in the audit detail's words (the caller is told none of it).
enum VerifyFailure: CustomStringConvertible {
    case wrongCode, malformedCode, unknownChallenge, otherAccountsChallenge, challengeExpired
    case challengeFor(CodePurpose)
    case challengeNotActive(ChallengeState)
    case authenticatorCodeReplayed
    case numberChanged

    /// The outcome label of `otpd_verifications_total`.
    var metricOutcome: OTPMetrics.VerificationOutcome {
        switch self {
        case .malformedCode: .malformed
        case .challengeExpired: .expired
        case .authenticatorCodeReplayed: .replay
        case .wrongCode, .unknownChallenge, .otherAccountsChallenge, .challengeFor, .challengeNotActive, .numberChanged:
            .wrong
        }
    }

    var description: String {
        switch self {
        case .wrongCode: "wrong code"
        case .malformedCode: "malformed code"
        case .unknownChallenge: "unknown challenge"
        case .otherAccountsChallenge: "challenge of another account"
        case .challengeExpired: "challenge expired"
        case .challengeFor(let purpose): "challenge for \(purpose.rawValue)"
        case .challengeNotActive(let state): "challenge \(state.rawValue)"
        case .authenticatorCodeReplayed: "authenticator code replayed"
        case .numberChanged: "number changed since the code was sent"
        }
    }
}

extension OneTimeCode {
    /// A well-formed code used only to keep the work of a malformed input the same.
    static func placeholder(_ length: CodeDigits) -> OneTimeCode {
        OneTimeCode(parsing: String(repeating: "0", count: length.count), length: length)!
    }
}

extension BackupCode {
    /// A well-formed code used only to keep the work of a malformed input the same.
    static let placeholder = BackupCode(parsing: String(repeating: "2", count: BackupCode.length))!
}

extension SMSSendError.Kind {
    /// The outcome label of `otpd_sms_sends_total`.
    var metricOutcome: OTPMetrics.SendOutcome {
        switch self {
        case .undeliverable: .undeliverable
        case .temporary: .temporary
        case .configuration: .configuration
        }
    }
}
