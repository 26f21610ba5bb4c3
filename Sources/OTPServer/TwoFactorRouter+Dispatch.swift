internal import Foundation
internal import Logging
internal import OTPCore
internal import OTPProtocol

/// The domain RPCs: decode, call the service, encode; domain refusals become statuses.
extension TwoFactorRouter {
    func dispatch(_ payload: [UInt8], _ context: CallContext) async throws(RPCError) -> [UInt8] {
        switch context.method {
        case .health, .serverInfo:
            // Answered inline; reaching here means the inline path declined (never today).
            throw RPCError(code: .internal, message: "\(context.method.name) is answered inline")
        case .getStatus:
            let request = try GetStatusRequest(serialized: payload)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                AccountStatus(try await service.status(accountID: request.accountId))
            }
        case .setPhone:
            let request = try SetPhoneRequest(serialized: payload)
            let proof = try request.proof.map(ProofInput.init)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let result = try await service.setPhone(
                    accountID: request.accountId, number: request.phoneNumber, proof: proof)
                return SetPhoneResponse(status: AccountStatus(result.summary), pending: result.pending)
            }
        case .startChallenge:
            let request = try StartChallengeRequest(serialized: payload)
            let purpose = try CodePurpose(request.purpose)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let ticket = try await service.startChallenge(accountID: request.accountId, purpose: purpose)
                return StartChallengeResponse(
                    challengeId: ticket.challengeID, expiresAt: ticket.expiresAt.unixSeconds,
                    destinationMasked: ticket.destinationMasked, resendAt: ticket.resendAt.unixSeconds,
                    codeLength: UInt32(ticket.codeLength))
            }
        case .verify:
            let request = try VerifyRequest(serialized: payload)
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
        case .beginTotpEnrollment:
            let request = try BeginTotpEnrollmentRequest(serialized: payload)
            let proof = try request.proof.map(ProofInput.init)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let enrollment = try await service.beginTOTPEnrollment(
                    accountID: request.accountId, label: request.label, proof: proof)
                return BeginTotpEnrollmentResponse(
                    secretBase32: enrollment.secretBase32, otpauthUri: enrollment.otpauthURI,
                    expiresAt: enrollment.expiresAt.unixSeconds)
            }
        case .confirmTotpEnrollment:
            let request = try ConfirmTotpEnrollmentRequest(serialized: payload)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let result = try await service.confirmTOTPEnrollment(accountID: request.accountId, code: request.code)
                return ConfirmTotpEnrollmentResponse(
                    success: result.success, status: AccountStatus(result.summary), proofToken: result.proofToken ?? "",
                    proofExpiresAt: result.proofExpiresAt.unixSeconds)
            }
        case .disableFactor:
            let request = try DisableFactorRequest(serialized: payload)
            let factor = try FactorKind(request.factor, field: "factor")
            let proof = try request.proof.map(ProofInput.init)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                DisableFactorResponse(
                    status: AccountStatus(
                        try await service.disableFactor(
                            accountID: request.accountId, factor: factor, proof: proof)))
            }
        case .generateBackupCodes:
            let request = try GenerateBackupCodesRequest(serialized: payload)
            let proof = try request.proof.map(ProofInput.init)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let set = try await service.generateBackupCodes(
                    accountID: request.accountId, proof: proof)
                return GenerateBackupCodesResponse(codes: set.codes, generatedAt: set.generatedAt.unixSeconds)
            }
        case .redeemBackupCode:
            let request = try RedeemBackupCodeRequest(serialized: payload)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let result = try await service.redeemBackupCode(accountID: request.accountId, code: request.code)
                return RedeemBackupCodeResponse(
                    success: result.success, remaining: UInt32(result.remaining), low: result.low,
                    lockedUntil: result.lockedUntil.unixSeconds)
            }
        case .setPreferredMethod:
            let request = try SetPreferredMethodRequest(serialized: payload)
            let method = try FactorKind(request.method, field: "method")
            let proof = try request.proof.map(ProofInput.init)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                SetPreferredMethodResponse(
                    status: AccountStatus(
                        try await service.setPreferredMethod(accountID: request.accountId, method: method, proof: proof)))
            }
        case .listEvents:
            let request = try ListEventsRequest(serialized: payload)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let page = try await service.listEvents(
                    accountID: request.accountId.isEmpty ? nil : request.accountId, pageSize: Int(request.pageSize),
                    beforeID: request.beforeId == 0 ? nil : Int64(clamping: request.beforeId))
                return ListEventsResponse(
                    events: page.events.map(Event.init), nextBeforeId: UInt64(page.nextBeforeID ?? 0))
            }
        case .unlockAccount:
            let request = try UnlockAccountRequest(serialized: payload)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                UnlockAccountResponse(
                    status: AccountStatus(
                        try await service.unlock(accountID: request.accountId, actor: request.actor, reason: request.reason)))
            }
        case .resetAccount:
            let request = try ResetAccountRequest(serialized: payload)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                ResetAccountResponse(
                    status: AccountStatus(
                        try await service.reset(accountID: request.accountId, actor: request.actor, reason: request.reason)))
            }
        case .reportDelivery:
            let request = try ReportDeliveryRequest(serialized: payload)
            let parameters = request.parameters.map { (name: $0.name, value: $0.value) }
            return try await call(context, "") { () async throws(TwoFactorError) in
                let outcome = try await service.reportDelivery(
                    url: request.url, parameters: parameters, signature: request.signature)
                return ReportDeliveryResponse(updated: outcome.updated, messageSid: outcome.messageSID, status: outcome.status)
            }
        case .listDeliveries:
            let request = try ListDeliveriesRequest(serialized: payload)
            return try await call(context, request.accountId) { () async throws(TwoFactorError) in
                let page = try await service.listDeliveries(
                    accountID: request.accountId.isEmpty ? nil : request.accountId, pageSize: Int(request.pageSize),
                    beforeID: request.beforeId == 0 ? nil : Int64(clamping: request.beforeId))
                return ListDeliveriesResponse(
                    deliveries: page.deliveries.map(Delivery.init), nextBeforeId: UInt64(page.nextBeforeID ?? 0))
            }
        case .sendTestSms:
            let request = try SendTestSmsRequest(serialized: payload)
            return try await call(context, "") { () async throws(TwoFactorError) in
                let receipt = try await service.sendTestSMS(
                    number: request.phoneNumber, actor: "uid \(context.peer.uid) pid \(context.peer.pid)")
                return SendTestSmsResponse(
                    provider: receipt.provider, messageSid: receipt.messageID, status: receipt.status,
                    attempts: UInt32(clamping: receipt.attempts))
            }
        }
    }

    /// Runs one domain call, logging refusals that need an operator's attention, and turns
    /// `TwoFactorError` into the wire status.
    private func call<Res: WireMessage>(
        _ context: CallContext, _ accountID: String, _ body: () async throws(TwoFactorError) -> Res
    ) async throws(RPCError) -> [UInt8] {
        do {
            return try await body().serialized()
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
    init(_ proof: Proof) throws(RPCError) {
        let set = [proof.token, proof.totpCode, proof.backupCode].filter { !$0.isEmpty }.count
        guard set == 1 else {
            throw RPCError(code: .invalidArgument, message: "proof: set exactly one of token, totp_code, backup_code")
        }
        if !proof.token.isEmpty {
            self = .token(proof.token)
        } else if !proof.totpCode.isEmpty {
            self = .totpCode(proof.totpCode)
        } else {
            self = .backupCode(proof.backupCode)
        }
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
            id: UInt64(max(0, record.id)), accountId: record.accountID, kind: record.kind.rawValue, outcome: record.outcome.rawValue,
            detail: record.detail, destinationMasked: record.destinationMasked,
            atMs: Int64((record.at.timeIntervalSince1970 * 1000).rounded()))
    }
}

extension Optional where Wrapped == Date {
    /// Unix seconds, 0 for none (and for "until an administrator unlocks": the far future is
    /// sent as the largest time the wire can carry).
    var unixSeconds: Int64 {
        guard let date = self else { return 0 }
        return date.unixSeconds
    }
}

extension Date {
    var unixSeconds: Int64 {
        if self == .distantFuture { return Int64(Int32.max) }
        return Int64(timeIntervalSince1970.rounded(.up))
    }
}
