/// One typed method per RPC of `otp.v1.TwoFactor`.
extension OTPClient {
    /// `SERVING` while the daemon accepts calls.
    public func health(deadline: Duration? = nil) async throws(RPCError) -> HealthResponse {
        try await call(.health, HealthRequest(), deadline: deadline)
    }

    /// Version, uptime, database and connection facts.
    public func serverInfo(deadline: Duration? = nil) async throws(RPCError) -> ServerInfoResponse {
        try await call(.serverInfo, ServerInfoRequest(), deadline: deadline)
    }

    public func getStatus(_ request: GetStatusRequest, deadline: Duration? = nil) async throws(RPCError) -> AccountStatus {
        try await call(.getStatus, request, deadline: deadline)
    }

    public func setPhone(_ request: SetPhoneRequest, deadline: Duration? = nil) async throws(RPCError) -> SetPhoneResponse {
        try await call(.setPhone, request, deadline: deadline)
    }

    public func startChallenge(_ request: StartChallengeRequest, deadline: Duration? = nil) async throws(RPCError)
        -> StartChallengeResponse
    {
        try await call(.startChallenge, request, deadline: deadline)
    }

    public func verify(_ request: VerifyRequest, deadline: Duration? = nil) async throws(RPCError) -> VerifyResponse {
        try await call(.verify, request, deadline: deadline)
    }

    public func beginTotpEnrollment(_ request: BeginTotpEnrollmentRequest, deadline: Duration? = nil)
        async throws(RPCError) -> BeginTotpEnrollmentResponse
    {
        try await call(.beginTotpEnrollment, request, deadline: deadline)
    }

    public func confirmTotpEnrollment(_ request: ConfirmTotpEnrollmentRequest, deadline: Duration? = nil)
        async throws(RPCError) -> ConfirmTotpEnrollmentResponse
    {
        try await call(.confirmTotpEnrollment, request, deadline: deadline)
    }

    public func disableFactor(_ request: DisableFactorRequest, deadline: Duration? = nil) async throws(RPCError)
        -> DisableFactorResponse
    {
        try await call(.disableFactor, request, deadline: deadline)
    }

    public func generateBackupCodes(_ request: GenerateBackupCodesRequest, deadline: Duration? = nil)
        async throws(RPCError) -> GenerateBackupCodesResponse
    {
        try await call(.generateBackupCodes, request, deadline: deadline)
    }

    public func redeemBackupCode(_ request: RedeemBackupCodeRequest, deadline: Duration? = nil) async throws(RPCError)
        -> RedeemBackupCodeResponse
    {
        try await call(.redeemBackupCode, request, deadline: deadline)
    }

    public func setPreferredMethod(_ request: SetPreferredMethodRequest, deadline: Duration? = nil)
        async throws(RPCError) -> SetPreferredMethodResponse
    {
        try await call(.setPreferredMethod, request, deadline: deadline)
    }

    public func listEvents(_ request: ListEventsRequest, deadline: Duration? = nil) async throws(RPCError)
        -> ListEventsResponse
    {
        try await call(.listEvents, request, deadline: deadline)
    }

    public func unlockAccount(_ request: UnlockAccountRequest, deadline: Duration? = nil) async throws(RPCError)
        -> UnlockAccountResponse
    {
        try await call(.unlockAccount, request, deadline: deadline)
    }

    public func resetAccount(_ request: ResetAccountRequest, deadline: Duration? = nil) async throws(RPCError)
        -> ResetAccountResponse
    {
        try await call(.resetAccount, request, deadline: deadline)
    }

    /// Forwards a provider's delivery report (status callback) for a signature check.
    public func reportDelivery(_ request: ReportDeliveryRequest, deadline: Duration? = nil) async throws(RPCError)
        -> ReportDeliveryResponse
    {
        try await call(.reportDelivery, request, deadline: deadline)
    }

    /// The SMS delivery log, newest first.
    public func listDeliveries(_ request: ListDeliveriesRequest, deadline: Duration? = nil) async throws(RPCError)
        -> ListDeliveriesResponse
    {
        try await call(.listDeliveries, request, deadline: deadline)
    }

    /// Sends a test text through the configured sender.
    public func sendTestSms(_ request: SendTestSmsRequest, deadline: Duration? = nil) async throws(RPCError)
        -> SendTestSmsResponse
    {
        try await call(.sendTestSms, request, deadline: deadline)
    }
}
