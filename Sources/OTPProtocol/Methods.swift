// The method table itself (`TwoFactorMethod`, the typed descriptors in `TwoFactor`) is
// generated from the service in proto/otp/v1/two_factor.proto: Methods.generated.swift.

/// One RPC with the message types it takes and answers, in the style of grpc-swift's method
/// descriptors. The generated `TwoFactor` namespace holds one per RPC (`TwoFactor.verify` is a
/// `MethodDescriptor<VerifyRequest, VerifyResponse>`); only generated code makes them, so a
/// descriptor's types are always its method's.
public struct MethodDescriptor<Input: WireMessage, Output: WireMessage>: Sendable {
    /// The method: its wire name, and what the untyped paths (the server's method lookup, the
    /// administrator check) know it by.
    public let method: TwoFactorMethod

    init(_ method: TwoFactorMethod) {
        self.method = method
    }
}

extension TwoFactorMethod {
    /// Whether this call needs an administrator peer (`ServerConfiguration.adminUIDs` and
    /// `adminGIDs`) rather than any peer allowed to connect. The one list of administrative
    /// calls: `UnlockAccount`, `ResetAccount`, `SendTestSms` and the SMS breaker's
    /// `ListSmsBreakers` and `UpdateSmsBreaker` always; `ListEvents` and
    /// `ListDeliveries` when they ask across all accounts (an empty `account_id`). A listing
    /// request that does not decode counts as administrative, so a doubtful call is refused
    /// rather than let through.
    ///
    /// - Parameter payload: the call's encoded request; only the two listing calls read it.
    public func requiresAdministrator(payload: [UInt8]) -> Bool {
        switch self {
        case .unlockAccount, .resetAccount, .sendTestSms, .listSmsBreakers, .updateSmsBreaker:
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
    /// The most bytes a listing answer (`ListEvents`, `ListDeliveries`) encodes to. A page that
    /// would be larger is cut short, and its `next_before_id` continues it, so a caller asking
    /// for 500 large records gets them over several pages rather than in one unbounded answer.
    /// 60 KiB leaves room for the response envelope under the 64 KiB frame that the clients
    /// accept by default.
    public static let maximumListingAnswerBytes = 60 * 1024

    /// The bytes the server sets aside for this call, from its connection's and the daemon's
    /// answer budgets, from the moment it starts the call until its answer is written to the
    /// socket (from its end on, the answer's own bytes are counted instead). It covers the
    /// call's working memory, not only its answer: a listing's page of up to 500 records is
    /// held decoded (Swift strings and arrays, about three times their encoded size) until
    /// the writer's batch that read it commits, then encoded; so a listing sets aside four
    /// times its largest answer (``maximumListingAnswerBytes``). Every other answer is a
    /// handful of short fields (an account status, ten backup codes, an `otpauth://` URI),
    /// well under 1 KiB, except the SMS breaker's list (at most 100 short entries).
    public var answerReservation: Int {
        switch self {
        case .listEvents, .listDeliveries:
            return 4 * Self.maximumListingAnswerBytes
        case .health, .serverInfo, .getStatus, .setPhone, .startChallenge, .verify, .beginTotpEnrollment,
            .confirmTotpEnrollment, .disableFactor, .generateBackupCodes, .redeemBackupCode, .setPreferredMethod,
            .unlockAccount, .resetAccount, .reportDelivery, .sendTestSms, .updateSmsBreaker:
            return Self.shortAnswerReservation
        case .listSmsBreakers:
            // At most 100 entries of about 40 bytes, held decoded meanwhile.
            return 16 * 1024
        }
    }

    /// ``answerReservation`` of every call but the listings, and of an answer that is an error.
    public static let shortAnswerReservation = 1024
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
