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

extension TwoFactorMethod {
    /// Whether this call needs an administrator peer (`ServerConfiguration.adminUIDs` and
    /// `adminGIDs`) rather than any peer allowed to connect. The one list of administrative
    /// calls: `UnlockAccount`, `ResetAccount` and `SendTestSms` always; `ListEvents` and
    /// `ListDeliveries` when they ask across all accounts (an empty `account_id`). A listing
    /// request that does not decode counts as administrative, so a doubtful call is refused
    /// rather than let through.
    ///
    /// - Parameter payload: the call's encoded request; only the two listing calls read it.
    public func requiresAdministrator(payload: [UInt8]) -> Bool {
        switch self {
        case .unlockAccount, .resetAccount, .sendTestSms:
            return true
        case .listEvents:
            return (try? ListEventsRequest(serialized: payload))?.accountId.isEmpty ?? true
        case .listDeliveries:
            return (try? ListDeliveriesRequest(serialized: payload))?.accountId.isEmpty ?? true
        case .health, .serverInfo, .getStatus, .setPhone, .startChallenge, .verify, .beginTotpEnrollment,
            .confirmTotpEnrollment, .disableFactor, .generateBackupCodes, .redeemBackupCode, .setPreferredMethod,
            .reportDelivery:
            return false
        }
    }
}

extension TwoFactorMethod {
    /// The method whose wire name is exactly these UTF-8 bytes, or `nil`. Allocates nothing:
    /// the server looks up every call's method this way.
    public init?(utf8 name: UnsafeRawBufferPointer) {
        guard let start = name.baseAddress else { return nil }
        for (method, wireName) in Self.wireNames where wireName.count == name.count {
            let equal = wireName.withUnsafeBytes { memcmp($0.baseAddress!, start, name.count) == 0 }
            if equal {
                self = method
                return
            }
        }
        return nil
    }

    private static let wireNames: [(TwoFactorMethod, [UInt8])] = allCases.map { ($0, Array($0.rawValue.utf8)) }
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

#if canImport(Glibc)
    internal import Glibc
#endif
