internal import Foundation
internal import Logging
internal import OTPCore
public import OTPProtocol

/// The handler of every RPC: the generated `dispatch(_:_:)` decodes the request and encodes the
/// answer; each method here makes the domain call and maps between wire messages and domain
/// values. Domain refusals (`TwoFactorError`) become the call's status.
extension TwoFactorRouter: TwoFactorHandler {
    /// Answered inline (`handleInline`); the same answer for a call that comes this way.
    public func health(_ request: HealthRequest, context: CallContext) async throws(RPCError) -> HealthResponse {
        Self.servingResponse
    }

    /// Answered inline (`handleInline`); the same answer for a call that comes this way.
    public func serverInfo(_ request: ServerInfoRequest, context: CallContext) async throws(RPCError)
        -> ServerInfoResponse
    {
        currentServerInfo()
    }

    /// `TwoFactorService.status(accountID:)`.
    public func getStatus(_ request: GetStatusRequest, context: CallContext) async throws(RPCError) -> AccountStatus {
        try await call(context, request.accountId) { () async throws(TwoFactorError) in
            AccountStatus(try await service.status(accountID: request.accountId))
        }
    }

    /// `TwoFactorService.setPhone(accountID:number:proof:)`.
    public func setPhone(_ request: SetPhoneRequest, context: CallContext) async throws(RPCError) -> SetPhoneResponse {
        let proof = try request.proof.map(ProofInput.init)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let result = try await service.setPhone(
                accountID: request.accountId, number: request.phoneNumber, proof: proof)
            return SetPhoneResponse(status: AccountStatus(result.summary), pending: result.pending)
        }
    }

    /// `TwoFactorService.startChallenge(accountID:purpose:)`.
    public func startChallenge(_ request: StartChallengeRequest, context: CallContext) async throws(RPCError)
        -> StartChallengeResponse
    {
        let purpose = try CodePurpose(request.purpose)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let ticket = try await service.startChallenge(accountID: request.accountId, purpose: purpose)
            return StartChallengeResponse(
                challengeId: ticket.challengeID, expiresAt: ticket.expiresAt.unixSeconds,
                destinationMasked: ticket.destinationMasked, resendAt: ticket.resendAt.unixSeconds,
                codeLength: UInt32(ticket.codeLength))
        }
    }

    /// `TwoFactorService.verify(accountID:purpose:code:challengeID:)`.
    public func verify(_ request: VerifyRequest, context: CallContext) async throws(RPCError) -> VerifyResponse {
        let purpose = try CodePurpose(request.purpose)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let outcome = try await service.verify(
                accountID: request.accountId, purpose: purpose, code: request.code,
                challengeID: request.challengeId.isEmpty ? nil : request.challengeId)
            return VerifyResponse(
                success: outcome.success, factor: Factor(outcome.factor), attemptsLeft: UInt32(outcome.attemptsLeft),
                lockedUntil: outcome.lockedUntil.unixSeconds, proofToken: outcome.proofToken ?? "",
                proofExpiresAt: outcome.proofExpiresAt.unixSeconds, status: AccountStatus(outcome.summary))
        }
    }

    /// `TwoFactorService.beginTOTPEnrollment(accountID:label:proof:)`.
    public func beginTotpEnrollment(_ request: BeginTotpEnrollmentRequest, context: CallContext)
        async throws(RPCError) -> BeginTotpEnrollmentResponse
    {
        let proof = try request.proof.map(ProofInput.init)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let enrollment = try await service.beginTOTPEnrollment(
                accountID: request.accountId, label: request.label, proof: proof)
            return BeginTotpEnrollmentResponse(
                secretBase32: enrollment.secretBase32, otpauthUri: enrollment.otpauthURI,
                expiresAt: enrollment.expiresAt.unixSeconds)
        }
    }

    /// `TwoFactorService.confirmTOTPEnrollment(accountID:code:)`.
    public func confirmTotpEnrollment(_ request: ConfirmTotpEnrollmentRequest, context: CallContext)
        async throws(RPCError) -> ConfirmTotpEnrollmentResponse
    {
        try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let result = try await service.confirmTOTPEnrollment(accountID: request.accountId, code: request.code)
            return ConfirmTotpEnrollmentResponse(
                success: result.success, status: AccountStatus(result.summary), proofToken: result.proofToken ?? "",
                proofExpiresAt: result.proofExpiresAt.unixSeconds)
        }
    }

    /// `TwoFactorService.disableFactor(accountID:factor:proof:)`.
    public func disableFactor(_ request: DisableFactorRequest, context: CallContext) async throws(RPCError)
        -> DisableFactorResponse
    {
        let factor = try FactorKind(request.factor, field: "factor")
        let proof = try request.proof.map(ProofInput.init)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            DisableFactorResponse(
                status: AccountStatus(
                    try await service.disableFactor(accountID: request.accountId, factor: factor, proof: proof)))
        }
    }

    /// `TwoFactorService.generateBackupCodes(accountID:proof:)`.
    public func generateBackupCodes(_ request: GenerateBackupCodesRequest, context: CallContext)
        async throws(RPCError) -> GenerateBackupCodesResponse
    {
        let proof = try request.proof.map(ProofInput.init)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let set = try await service.generateBackupCodes(accountID: request.accountId, proof: proof)
            return GenerateBackupCodesResponse(codes: set.codes, generatedAt: set.generatedAt.unixSeconds)
        }
    }

    /// `TwoFactorService.redeemBackupCode(accountID:code:)`.
    public func redeemBackupCode(_ request: RedeemBackupCodeRequest, context: CallContext) async throws(RPCError)
        -> RedeemBackupCodeResponse
    {
        try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let result = try await service.redeemBackupCode(accountID: request.accountId, code: request.code)
            return RedeemBackupCodeResponse(
                success: result.success, remaining: UInt32(result.remaining), low: result.low,
                lockedUntil: result.lockedUntil.unixSeconds)
        }
    }

    /// `TwoFactorService.setPreferredMethod(accountID:method:proof:)`.
    public func setPreferredMethod(_ request: SetPreferredMethodRequest, context: CallContext)
        async throws(RPCError) -> SetPreferredMethodResponse
    {
        let method = try FactorKind(request.method, field: "method")
        let proof = try request.proof.map(ProofInput.init)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            SetPreferredMethodResponse(
                status: AccountStatus(
                    try await service.setPreferredMethod(accountID: request.accountId, method: method, proof: proof)))
        }
    }

    /// `TwoFactorService.listEvents(accountID:pageSize:beforeID:)`; an empty account id lists all.
    public func listEvents(_ request: ListEventsRequest, context: CallContext) async throws(RPCError)
        -> ListEventsResponse
    {
        let (accountID, beforeID) = listing(request.accountId, request.beforeId)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let page = try await service.listEvents(
                accountID: accountID, pageSize: Int(request.pageSize), beforeID: beforeID)
            let (events, next) = Self.boundedPage(
                page.events.map(Event.init), next: page.nextBeforeID, id: { UInt64($0.id) })
            return ListEventsResponse(events: events, nextBeforeId: next)
        }
    }

    /// `TwoFactorService.unlock(accountID:actor:reason:)`.
    public func unlockAccount(_ request: UnlockAccountRequest, context: CallContext) async throws(RPCError)
        -> UnlockAccountResponse
    {
        try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let summary = try await service.unlock(
                accountID: request.accountId, actor: request.actor, reason: request.reason)
            return UnlockAccountResponse(status: AccountStatus(summary))
        }
    }

    /// `TwoFactorService.reset(accountID:actor:reason:)`.
    public func resetAccount(_ request: ResetAccountRequest, context: CallContext) async throws(RPCError)
        -> ResetAccountResponse
    {
        try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let summary = try await service.reset(
                accountID: request.accountId, actor: request.actor, reason: request.reason)
            return ResetAccountResponse(status: AccountStatus(summary))
        }
    }

    /// `TwoFactorService.reportDelivery(url:parameters:signature:)`.
    public func reportDelivery(_ request: ReportDeliveryRequest, context: CallContext) async throws(RPCError)
        -> ReportDeliveryResponse
    {
        let parameters = request.parameters.map { (name: $0.name, value: $0.value) }
        return try await call(context, "") { () async throws(TwoFactorError) in
            let outcome = try await service.reportDelivery(
                url: request.url, parameters: parameters, signature: request.signature)
            return ReportDeliveryResponse(
                updated: outcome.updated, messageSid: outcome.messageSID, status: outcome.status)
        }
    }

    /// `TwoFactorService.listDeliveries(accountID:pageSize:beforeID:)`; an empty account id lists all.
    public func listDeliveries(_ request: ListDeliveriesRequest, context: CallContext) async throws(RPCError)
        -> ListDeliveriesResponse
    {
        let (accountID, beforeID) = listing(request.accountId, request.beforeId)
        return try await call(context, request.accountId) { () async throws(TwoFactorError) in
            let page = try await service.listDeliveries(
                accountID: accountID, pageSize: Int(request.pageSize), beforeID: beforeID)
            let (deliveries, next) = Self.boundedPage(
                page.deliveries.map(Delivery.init), next: page.nextBeforeID, id: { UInt64($0.id) })
            return ListDeliveriesResponse(deliveries: deliveries, nextBeforeId: next)
        }
    }

    /// `TwoFactorService.sendTestSMS(number:actor:)`, the peer as the actor.
    public func sendTestSms(_ request: SendTestSmsRequest, context: CallContext) async throws(RPCError)
        -> SendTestSmsResponse
    {
        try await call(context, "") { () async throws(TwoFactorError) in
            let receipt = try await service.sendTestSMS(
                number: request.phoneNumber, actor: "uid \(context.peer.uid) pid \(context.peer.pid)")
            return SendTestSmsResponse(
                provider: receipt.provider, messageSid: receipt.messageID, status: receipt.status,
                attempts: UInt32(clamping: receipt.attempts))
        }
    }

    /// `TwoFactorService.smsBreakers()`.
    public func listSmsBreakers(_ request: ListSmsBreakersRequest, context: CallContext) async throws(RPCError)
        -> ListSmsBreakersResponse
    {
        try await call(context, "") { () async throws(TwoFactorError) in
            ListSmsBreakersResponse(breakers: try await service.smsBreakers().map(SmsBreaker.init))
        }
    }

    /// `TwoFactorService.updateSMSBreaker(scope:action:actor:reason:)`; the audit trail names
    /// the caller's uid besides the actor it gives.
    public func updateSmsBreaker(_ request: UpdateSmsBreakerRequest, context: CallContext) async throws(RPCError)
        -> UpdateSmsBreakerResponse
    {
        let action: SMSBreakerAction
        switch request.action {
        case .reset: action = .reset
        case .exempt: action = .exempt
        case .removeExemption: action = .removeExemption
        case .unspecified: throw RPCError(code: .invalidArgument, message: "action is required")
        }
        let peer = "uid \(context.peer.uid)"
        let actor = request.actor.isEmpty ? peer : "\(request.actor) (\(peer))"
        return try await call(context, "") { () async throws(TwoFactorError) in
            let status = try await service.updateSMSBreaker(
                scope: request.scope, action: action, actor: actor, reason: request.reason)
            return UpdateSmsBreakerResponse(breaker: SmsBreaker(status))
        }
    }

    /// A listing's account and paging on the wire, as the service takes them: an empty
    /// `account_id` is every account, a `before_id` of 0 starts from the newest.
    private func listing(_ accountId: String, _ beforeId: UInt64) -> (accountID: String?, beforeID: Int64?) {
        (accountId.isEmpty ? nil : accountId, beforeId == 0 ? nil : Int64(clamping: beforeId))
    }

    /// The longest prefix of a page's records whose answer stays within
    /// `TwoFactorMethod.maximumListingAnswerBytes` (at least one record), and the `next_before_id`
    /// that continues after it: the page's own when nothing was cut, else the last record kept.
    /// So the memory the server sets aside for a listing answer is a bound, not a guess.
    static func boundedPage<Record: WireMessage>(
        _ records: [Record], next: Int64?, id: (Record) -> UInt64
    ) -> ([Record], UInt64) {
        // The answer's own fields (next_before_id) and the response envelope around it.
        var size = 64
        for (index, record) in records.enumerated() {
            // Each record is a length-delimited field: one tag byte and at most 3 length bytes.
            size += record.serialized().count + 4
            if size > TwoFactorMethod.maximumListingAnswerBytes && index > 0 {
                return (Array(records.prefix(index)), id(records[index - 1]))
            }
        }
        return (records, UInt64(next ?? 0))
    }

    /// Runs one domain call, logging refusals that need an operator's attention, and turns
    /// `TwoFactorError` into the wire status.
    private func call<Res: WireMessage>(
        _ context: CallContext, _ accountID: String, _ body: () async throws(TwoFactorError) -> Res
    ) async throws(RPCError) -> Res {
        do {
            return try await body()
        } catch {
            var metadata: Logger.Metadata = ["call.id": "\(context.callID)", "method": "\(context.method.name)"]
            metadata["account"] = "\(accountID.prefix(128))"
            switch error.kind {
            case .unavailable, .internal:
                metadata["error"] = "\(error.logDetail ?? error.message)"
                logger.error("call refused: \(error.message)", metadata: metadata)
            default:
                logger.debug("call refused: \(error.message)", metadata: metadata)
            }
            throw RPCError(error)
        }
    }
}

extension RPCError {
    /// The wire form of a domain refusal.
    init(_ error: TwoFactorError) {
        let code: RPCError.Code =
            switch error.kind {
            case .invalidArgument: .invalidArgument
            case .failedPrecondition: .failedPrecondition
            case .permissionDenied: .permissionDenied
            case .resourceExhausted: .resourceExhausted
            case .alreadyExists: .alreadyExists
            case .unavailable: .unavailable
            case .internal: .internal
            case .cancelled: .cancelled
            }
        var detail: ErrorDetail?
        if error.retryAfter != nil || error.lockedUntil != nil {
            detail = ErrorDetail(
                retryAfterSeconds: UInt32(clamping: error.retryAfter ?? 0), lockedUntil: error.lockedUntil.unixSeconds)
        }
        self.init(code: code, message: error.message, detail: detail)
    }
}

extension ProofInput {
    /// The proof the `oneof kind` holds; none, or an empty one, is `invalidArgument`.
    init(_ proof: Proof) throws(RPCError) {
        switch proof.kind {
        case .token(let token) where !token.isEmpty: self = .token(token)
        case .totpCode(let code) where !code.isEmpty: self = .totpCode(code)
        case .backupCode(let code) where !code.isEmpty: self = .backupCode(code)
        case .token, .totpCode, .backupCode, nil:
            throw RPCError(
                code: .invalidArgument, message: "proof: set one of token, totp_code, backup_code, not empty")
        }
    }
}

extension SmsBreaker {
    init(_ status: SMSBreakerStatus) {
        let state: SmsBreakerState =
            switch status.state {
            case .watched: .watched
            case .tripped: .tripped
            case .exempt: .exempt
            }
        self.init(
            scope: status.scope.prefix, state: state, texts: UInt32(clamping: status.count.texts),
            verified: UInt32(clamping: status.count.verified), pausedUntil: status.trippedUntil?.unixSeconds ?? 0,
            trips: UInt32(clamping: status.trips))
    }
}

extension CodePurpose {
    init(_ purpose: Purpose) throws(RPCError) {
        switch purpose {
        case .verifyPhone: self = .verifyPhone
        case .login: self = .login
        case .changePhone: self = .changePhone
        case .disableFactor: self = .disableFactor
        case .manageFactors: self = .manageFactors
        case .unspecified: throw RPCError(code: .invalidArgument, message: "purpose is required")
        }
    }
}

extension FactorKind {
    init(_ factor: Factor, field: String) throws(RPCError) {
        switch factor {
        case .sms: self = .sms
        case .totp: self = .totp
        case .backup: self = .backup
        case .unspecified: throw RPCError(code: .invalidArgument, message: "\(field) is required")
        }
    }
}

extension Factor {
    init(_ kind: FactorKind?) {
        switch kind {
        case .sms: self = .sms
        case .totp: self = .totp
        case .backup: self = .backup
        case nil: self = .unspecified
        }
    }
}

extension AccountStatus {
    init(_ summary: AccountSummary) {
        self.init(
            accountId: summary.accountID, phoneMasked: summary.phoneMasked, phoneVerified: summary.phoneVerified,
            pendingPhoneMasked: summary.pendingPhoneMasked, smsEnabled: summary.smsEnabled,
            totpEnabled: summary.totpEnabled, backupCodesRemaining: UInt32(summary.backupCodesRemaining),
            preferredMethod: Factor(summary.preferred), setupRequired: summary.setupRequired, locked: summary.locked,
            lockedUntil: summary.lockedUntil.unixSeconds, consecutiveFailures: UInt32(summary.consecutiveFailures))
    }
}

extension Delivery {
    init(_ record: DeliveryRecord) {
        self.init(
            id: UInt64(max(0, record.id)), accountId: record.accountID, challengeId: record.challengeID,
            purpose: record.purpose, destinationMasked: record.destinationMasked, provider: record.provider,
            messageSid: record.messageSID, status: record.status, errorCode: Int32(clamping: record.errorCode ?? 0),
            attempts: UInt32(clamping: record.attempts), createdAt: record.createdAt.unixSeconds,
            updatedAt: record.updatedAt.unixSeconds)
    }
}

extension Event {
    init(_ record: EventRecord) {
        self.init(
            id: UInt64(max(0, record.id)), accountId: record.accountID, kind: record.kind.rawValue,
            outcome: record.outcome.rawValue,
            detail: record.detail, destinationMasked: record.destinationMasked,
            atMs: Int64((record.at.timeIntervalSince1970 * 1000).rounded()))
    }
}

extension Optional where Wrapped == Date {
    /// Unix seconds, 0 for none (and for "until an administrator unlocks": the far future is
    /// sent as `WireTime.lockedUntilAdministratorUnlocks`).
    var unixSeconds: Int64 {
        guard let date = self else { return 0 }
        return date.unixSeconds
    }
}

extension Date {
    var unixSeconds: Int64 {
        if self == .distantFuture { return WireTime.lockedUntilAdministratorUnlocks }
        return Int64(timeIntervalSince1970.rounded(.up))
    }
}
