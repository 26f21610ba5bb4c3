/// The RPCs of the `otp.v1.TwoFactor` service, by their wire method name.
public enum TwoFactorMethod: String, Sendable, CaseIterable {
    case health = "/otp.v1.TwoFactor/Health"
    case serverInfo = "/otp.v1.TwoFactor/ServerInfo"
    case getStatus = "/otp.v1.TwoFactor/GetStatus"
    case setPhone = "/otp.v1.TwoFactor/SetPhone"
    case startChallenge = "/otp.v1.TwoFactor/StartChallenge"
    case verify = "/otp.v1.TwoFactor/Verify"
    case beginTotpEnrollment = "/otp.v1.TwoFactor/BeginTotpEnrollment"
    case confirmTotpEnrollment = "/otp.v1.TwoFactor/ConfirmTotpEnrollment"
    case disableFactor = "/otp.v1.TwoFactor/DisableFactor"
    case generateBackupCodes = "/otp.v1.TwoFactor/GenerateBackupCodes"
    case redeemBackupCode = "/otp.v1.TwoFactor/RedeemBackupCode"
    case setPreferredMethod = "/otp.v1.TwoFactor/SetPreferredMethod"
    case listEvents = "/otp.v1.TwoFactor/ListEvents"
    case unlockAccount = "/otp.v1.TwoFactor/UnlockAccount"
    case resetAccount = "/otp.v1.TwoFactor/ResetAccount"
    case reportDelivery = "/otp.v1.TwoFactor/ReportDelivery"
    case listDeliveries = "/otp.v1.TwoFactor/ListDeliveries"
    case sendTestSms = "/otp.v1.TwoFactor/SendTestSms"

    /// The short RPC name, e.g. `Verify`.
    public var name: String { String(rawValue.split(separator: "/").last!) }
}

extension Response {
    /// A response carrying `error`'s status (and its detail, if any) for call `callId`.
    public init(callId: UInt64, error: RPCError) {
        self.init(
            callId: callId, status: Status(code: error.code.rawValue, message: error.message),
            payload: error.detail?.serialized() ?? [])
    }

    /// A successful response carrying `message`.
    public init<M: WireMessage>(callId: UInt64, message: M) {
        self.init(callId: callId, status: nil, payload: message.serialized())
    }

    /// The status as an error, or `nil` when the call succeeded.
    public var error: RPCError? {
        let code = status?.code ?? 0
        guard code != 0 else { return nil }
        let detail = try? ErrorDetail(serialized: payload)
        return RPCError(
            code: RPCError.Code(rawValue: code) ?? .unknown, message: status?.message ?? "",
            detail: detail == ErrorDetail() ? nil : detail)
    }
}
