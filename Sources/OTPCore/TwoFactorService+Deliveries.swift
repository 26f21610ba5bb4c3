import Foundation
import OTPMetrics

/// Checks that a delivery report really comes from the provider (Twilio: `X-Twilio-Signature`,
/// an HMAC of the URL and the form fields under the auth token).
public protocol DeliveryReportVerifier: Sendable {
    func isAuthentic(url: String, parameters: [(name: String, value: String)], signature: String) -> Bool
}

/// What a provider's delivery statuses mean (Twilio's are in OTPSMS): the domain knows no
/// provider's vocabulary.
public protocol DeliveryStatusOrder: Sendable {
    /// How far along `status` is, 0 for a status the provider does not define. A report moves a
    /// delivery only to a higher rank, never back (reports may come more than once and in any
    /// order).
    func rank(_ status: String) -> Int
    /// For a status that says the message will not arrive: the outcome of the
    /// `sms_delivery_failed` event it is audited with. Nil for every other status.
    func failureOutcome(_ status: String) -> EventOutcome?
}

/// The answer to a delivery report.
public struct DeliveryReportOutcome: Sendable, Equatable {
    public var updated: Bool
    public var messageSID: String
    public var status: String
}

/// One page of the delivery log.
public struct DeliveryPage: Sendable, Equatable {
    public var deliveries: [DeliveryRecord]
    public var nextBeforeID: Int64?
}

extension TwoFactorService {
    /// Applies a provider's status callback after checking its signature.
    ///
    /// - Throws: `permissionDenied` for a missing or wrong signature (a forged or altered
    ///   report), `invalidArgument` for a report without `MessageSid`/`MessageStatus`,
    ///   `failedPrecondition` when no verifier or no status order is configured.
    public func reportDelivery(url: String, parameters: [(name: String, value: String)], signature: String)
        async throws(TwoFactorError) -> DeliveryReportOutcome
    {
        guard let verifier = reportVerifier, let statuses = deliveryStatuses else {
            throw TwoFactorError(.failedPrecondition, "Delivery reports need the Twilio sender to be configured")
        }
        guard url.utf8.count <= 2048, parameters.count <= 100, signature.utf8.count <= 256 else {
            throw TwoFactorError(.invalidArgument, "The delivery report is too large")
        }
        guard !signature.isEmpty, verifier.isAuthentic(url: url, parameters: parameters, signature: signature) else {
            throw TwoFactorError(.permissionDenied, "The delivery report's signature is not valid")
        }
        func value(_ name: String) -> String? { parameters.last { $0.name == name }?.value }
        guard let sid = value("MessageSid"), !sid.isEmpty, let status = value("MessageStatus"), !status.isEmpty
        else {
            throw TwoFactorError(.invalidArgument, "The delivery report has no MessageSid or MessageStatus")
        }
        let errorCode = value("ErrorCode").flatMap { Int($0) }
        let now = clock.now()
        // Every authentic report is counted by the status it carries (repeats included).
        OTPMetrics.deliveryReport(status: status)
        return try await transact { tx in
            guard let delivery = try tx.delivery(messageSID: sid) else {
                return .success(DeliveryReportOutcome(updated: false, messageSID: sid, status: "unknown"))
            }
            guard statuses.rank(status) > statuses.rank(delivery.status) else {
                return .success(DeliveryReportOutcome(updated: false, messageSID: sid, status: delivery.status))
            }
            try tx.updateDelivery(id: delivery.id, status: status, errorCode: errorCode ?? delivery.errorCode, at: now)
            if let outcome = statuses.failureOutcome(status) {
                try self.audit(
                    .smsDeliveryFailed, outcome, account: delivery.accountID,
                    detail: "\(delivery.purpose) message \(sid)" + (errorCode.map { ", error \($0)" } ?? ""),
                    destination: delivery.destinationMasked, at: now, in: tx)
            }
            return .success(DeliveryReportOutcome(updated: true, messageSID: sid, status: status))
        }
    }

    /// The delivery log, newest first: of one account, or of every account when nil.
    public func listDeliveries(accountID: String?, pageSize: Int, beforeID: Int64?) async throws(TwoFactorError)
        -> DeliveryPage
    {
        if let accountID { try Self.checkAccountID(accountID) }
        let limit = Self.pageLimit(pageSize)
        return try await transact { tx in
            let (deliveries, next) = Self.page(
                try tx.deliveries(accountID: accountID, beforeID: beforeID, limit: limit + 1), limit: limit, id: \.id)
            return .success(DeliveryPage(deliveries: deliveries, nextBeforeID: next))
        }
    }

    /// Administrator: sends a test text through the configured sender (no code in it). It is
    /// paid from the number's verification pool and the country and overall budgets like any
    /// other text (an administrator's mistake or a stolen admin session cannot pump texts),
    /// and is recorded in the delivery log and the audit trail (kinds `test_sms_sent`,
    /// `test_sms_failed`, `code_refused`, with account id "" and `actor` in the detail).
    public func sendTestSMS(number: String, actor: String) async throws(TwoFactorError) -> SMSReceipt {
        let phone = try allowedPhone(number)
        let now = clock.now()
        let id = newIdentifier(prefix: "ts_")
        let who = Self.adminDetail(actor: actor, reason: "")
        let _: Void = try await transact { tx in
            if let refusal = try self.checkBudgets(nil, phone: phone, now: now, in: tx) {
                try self.audit(
                    .codeRefused, .rateLimited, account: "",
                    detail: "test text \(who): \(refusal.logDetail ?? refusal.message)", destination: phone.masked,
                    at: now, in: tx)
                return .failure(refusal)
            }
            try tx.recordSMSSend(
                SMSSendRecord(accountID: "", phone: phone, purpose: .verifyPhone, challengeID: id, at: now))
            return .success(())
        }
        let message = SMSMessage(
            to: phone, body: "\(policy.smsBrand): test message from otpd. Your text message settings work.",
            purpose: .login, challengeID: id, expiresAt: now.addingTimeInterval(policy.codeLifetime))
        let result: Result<SMSReceipt, SMSSendError>
        do {
            result = .success(try await sender.send(message))
        } catch {
            result = .failure(error)
        }
        return try await recordSend(
            result, to: phone,
            SentText(
                accountID: "", challengeID: id, purpose: "test", sentKind: .testSMSSent,
                failedKind: .testSMSFailed, detail: who, explainsConfiguration: true))
    }
}
