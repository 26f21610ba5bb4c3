internal import CoreMetrics

/// Every instrument otpd records, in one place: its name, its labels, and the fixed set of
/// values each label may take (docs/OPERATIONS.md, "Metrics"). The modules call these functions
/// at the moment a thing happens; the daemon bootstraps swift-metrics with swift-prometheus and
/// serves the registry (`GET /metrics`, `otpctl metrics`). Without a bootstrap (tests, tools)
/// every instrument is swift-metrics' no-op.
///
/// No label ever carries an account id, a phone number, a code or any other caller-chosen
/// text: every value comes from an enumeration here, from the method table, from the
/// configured sender names, or is a country calling code (at most 3 digits). So the number of
/// series is bounded and nothing personal reaches the monitoring system.
public enum OTPMetrics {
    // MARK: Names

    public static let calls = "otpd_calls_total"
    public static let callDuration = "otpd_call_duration_seconds"
    public static let verifications = "otpd_verifications_total"
    public static let lockouts = "otpd_lockouts_total"
    public static let smsSends = "otpd_sms_sends_total"
    public static let deliveryReports = "otpd_sms_delivery_reports_total"
    public static let twilioRequestDuration = "otpd_twilio_request_duration_seconds"
    public static let budgetRefusals = "otpd_sms_budget_refusals_total"
    public static let breakerTrips = "otpd_sms_breaker_trips_total"
    public static let writerBatchSize = "otpd_store_batch_transactions"
    public static let commitDuration = "otpd_store_commit_duration_seconds"
    public static let walBytes = "otpd_store_wal_bytes"
    public static let connections = "otpd_connections"
    public static let callsInFlight = "otpd_calls_in_flight"
    public static let notificationBacklog = "otpd_notification_backlog_events"
    public static let storeConflicts = "otpd_store_conflicts_total"
    public static let storeReachable = "otpd_store_reachable"
    public static let auditEventsCapped = "otpd_audit_events_capped_total"
    public static let residentBytes = "otpd_resident_memory_bytes"

    // MARK: Label values

    /// How a verification (`Verify`, `RedeemBackupCode`) ended.
    public enum VerificationOutcome: String, Sendable, CaseIterable {
        case success
        /// A wrong code, an unknown or used challenge, an unknown account.
        case wrong
        /// The challenge's code had expired.
        case expired
        /// An authenticator step already used.
        case replay
        /// The account is locked.
        case locked
        /// Not a code at all (wrong length, characters).
        case malformed
    }

    /// The factor a verification was for: on success the one that matched; on failure the one
    /// tried (an SMS code with a challenge id, an authenticator code without, a backup code).
    public enum Factor: String, Sendable, CaseIterable {
        case sms, totp, backup
    }

    /// What became of a text handed to a sender.
    public enum SendOutcome: String, Sendable, CaseIterable {
        /// The provider took it.
        case accepted
        /// The number cannot receive texts.
        case undeliverable
        /// A temporary provider failure (after the sender's retries).
        case temporary
        /// otpd's sender settings are wrong.
        case configuration
    }

    /// The SMS budget (or the breaker) that refused a text.
    public enum Budget: String, Sendable, CaseIterable {
        case resendCooldown = "resend_cooldown"
        case account
        case phoneVerification = "phone_verification"
        case phoneVerified = "phone_verified"
        case country
        case global
        case breaker
    }

    /// A refusal whose audit event the per-account cap left unwritten (docs/SECURITY.md §11).
    public enum CappedEvent: String, Sendable, CaseIterable {
        /// A step-up refused for want of its proof.
        case proof
        /// A text refused by a budget, the breaker, or a number known to be unreachable.
        case codeRefused = "code_refused"
    }

    /// What the breaker paused.
    public enum BreakerScope: String, Sendable, CaseIterable {
        case country, range
    }

    /// The delivery statuses a report can carry; anything else is counted as `other`.
    public static let deliveryStatuses: Set<String> = [
        "accepted", "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled",
        "scheduled", "receiving", "received",
    ]

    // MARK: Histogram buckets

    /// Call latency: 100 µs to 5 s (a Verify commits with an fsync; a send waits for Twilio).
    public static let callDurationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]
    /// Twilio requests: 50 ms to 10 s (the sender's timeout).
    public static let twilioDurationBuckets: [Duration] = [
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2),
        .seconds(5), .seconds(10),
    ]
    /// Commits: 100 µs (no fsync) to 1 s (a slow disk).
    public static let commitDurationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1),
    ]
    /// Transactions per commit: 1 to the writer's largest batch.
    public static let batchSizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]

    // MARK: Recording

    public static func verification(_ outcome: VerificationOutcome, factor: Factor) {
        hot.verifications[outcome]?[factor]?.increment()
    }

    /// The instruments recorded on every Verify, every call off the event loop, every
    /// connection and every commit, made once (on first use,
    /// which is after the daemon's bootstrap: otpd bootstraps before it serves) so that the
    /// hot path does no registry lookup.
    private struct HotInstruments: Sendable {
        let verifications: [VerificationOutcome: [Factor: Counter]]
        let batchSize: Recorder
        let commitDuration: Timer
        let connections: Gauge
        let callsInFlight: Gauge

        init() {
            var verifications: [VerificationOutcome: [Factor: Counter]] = [:]
            for outcome in VerificationOutcome.allCases {
                for factor in Factor.allCases {
                    verifications[outcome, default: [:]][factor] = Counter(
                        label: OTPMetrics.verifications,
                        dimensions: [("outcome", outcome.rawValue), ("factor", factor.rawValue)])
                }
            }
            self.verifications = verifications
            batchSize = Recorder(label: writerBatchSize)
            commitDuration = Timer(label: OTPMetrics.commitDuration)
            connections = Gauge(label: OTPMetrics.connections)
            callsInFlight = Gauge(label: OTPMetrics.callsInFlight)
        }
    }

    private static let hot = HotInstruments()

    public static func lockout() {
        Counter(label: lockouts).increment()
    }

    /// - Parameters:
    ///   - provider: the sender's name (`twilio`, `outbox`, a configured sender's name).
    ///   - countryCallingCode: 1-3 digits.
    public static func smsSend(provider: String, outcome: SendOutcome, countryCallingCode: String) {
        Counter(
            label: smsSends,
            dimensions: [
                ("provider", provider), ("outcome", outcome.rawValue), ("country_code", countryCallingCode),
            ]
        ).increment()
    }

    public static func deliveryReport(status: String) {
        let value = deliveryStatuses.contains(status) ? status : "other"
        Counter(label: deliveryReports, dimensions: [("status", value)]).increment()
    }

    public static func twilioRequest(_ duration: Duration) {
        Timer(label: twilioRequestDuration).recordNanoseconds(duration.nanoseconds)
    }

    public static func budgetRefusal(_ budget: Budget) {
        Counter(label: budgetRefusals, dimensions: [("budget", budget.rawValue)]).increment()
    }

    public static func breakerTrip(_ scope: BreakerScope) {
        Counter(label: breakerTrips, dimensions: [("scope", scope.rawValue)]).increment()
    }

    /// A refusal answered but not written to the audit trail: the account already had the
    /// hour's refusal events of that kind. The events stop; the count does not.
    public static func auditEventCapped(_ kind: CappedEvent) {
        Counter(label: auditEventsCapped, dimensions: [("kind", kind.rawValue)]).increment()
    }

    /// One commit of the single writer: how many transactions it carried and how long it took.
    public static func writerCommit(transactions: Int, duration: Duration) {
        hot.batchSize.record(transactions)
        hot.commitDuration.recordNanoseconds(duration.nanoseconds)
    }

    public static func setWALBytes(_ bytes: Int) {
        Gauge(label: walBytes).record(bytes)
    }

    /// The daemon's resident memory (VmRSS), in bytes.
    public static func setResidentBytes(_ bytes: Int) {
        Gauge(label: residentBytes).record(bytes)
    }

    public static func setNotificationBacklog(_ events: Int) {
        Gauge(label: notificationBacklog).record(events)
    }

    /// A transaction the store ran again because it conflicted with another (PostgreSQL's
    /// serialization failures and deadlocks; never on SQLite).
    public static func storeConflict() {
        Counter(label: storeConflicts).increment()
    }

    /// Whether the store answered its last check (1) or not (0).
    public static func setStoreReachable(_ reachable: Bool) {
        Gauge(label: storeReachable).record(reachable ? 1 : 0)
    }

    /// The instruments of the server's hot path, made once per method so that a call costs an
    /// atomic add and a histogram bucket, not a registry lookup.
    public struct CallInstruments: Sendable {
        let method: String
        let succeeded: Counter
        let duration: Timer

        public init(method: String) {
            self.method = method
            succeeded = Counter(label: calls, dimensions: [("method", method), ("status", "OK")])
            duration = Timer(label: callDuration, dimensions: [("method", method)])
        }

        /// One answered call: `status` is its gRPC status name (`OK`, `INVALID_ARGUMENT`, ...),
        /// nil for OK.
        public func record(status: String?, duration elapsed: Duration) {
            count(status: status)
            duration.recordNanoseconds(elapsed.nanoseconds)
        }

        /// One answered call whose time is not measured (see `MeteredRouter`).
        public func count(status: String?) {
            if let status {
                Counter(label: calls, dimensions: [("method", method), ("status", status)]).increment()
            } else {
                succeeded.increment()
            }
        }
    }

    /// Open connections and calls in flight, kept as gauges by the server.
    public static func setConnections(_ count: Int) {
        hot.connections.record(count)
    }

    public static func setCallsInFlight(_ count: Int) {
        hot.callsInFlight.record(count)
    }
}

extension Duration {
    /// The whole duration in nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}
