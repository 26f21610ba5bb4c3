import Foundation
import Logging
import OTPCore
import OTPSMS
import TOMLKit

#if canImport(Glibc)
    import Glibc
#endif

/// One `[[twilio]]` table: a Twilio sender. Several tables are tried in order when one fails
/// with a temporary error (e.g. a Messaging Service first, then a plain `From` number, or a
/// second account).
struct TwilioSettings: Sendable {
    var accountSID = ""
    var authTokenFile: String?
    var apiKeySID: String?
    var apiKeySecretFile: String?
    var from: String?
    var messagingServiceSID: String?
    var baseURL = TwilioConfiguration.defaultBaseURL
    var statusCallbackURL: String?
    var timeoutSeconds = 5
    var maxAttempts = 3
    var maxConcurrentRequests = 16

    /// Reads one `[[twilio]]` table; its keys are exactly the ones read here (any other is
    /// refused before the values are checked together).
    init(reader r: TableReader) throws(ConfigurationError) {
        try r.string("account_sid") { accountSID = $0 }
        try r.string("auth_token_file") { authTokenFile = $0 }
        try r.string("api_key_sid") { apiKeySID = $0 }
        try r.string("api_key_secret_file") { apiKeySecretFile = $0 }
        try r.string("from") { from = $0 }
        try r.string("messaging_service_sid") { messagingServiceSID = $0 }
        try r.string("base_url") { baseURL = $0 }
        try r.string("status_callback_url") { statusCallbackURL = $0 }
        try r.int("timeout_seconds", 1...60) { timeoutSeconds = $0 }
        try r.int("max_attempts", 1...10) { maxAttempts = $0 }
        try r.int("max_concurrent_requests", 1...1024) { maxConcurrentRequests = $0 }
        try r.refuseKeysNotRead()
        guard !accountSID.isEmpty else {
            throw ConfigurationError(description: "\(r.file): twilio.account_sid is required")
        }
        guard (from == nil) != (messagingServiceSID == nil) else {
            throw ConfigurationError(
                description: "\(r.file): set exactly one of twilio.from and twilio.messaging_service_sid")
        }
        guard (apiKeySID == nil) == (apiKeySecretFile == nil) else {
            throw ConfigurationError(
                description: "\(r.file): twilio.api_key_sid and twilio.api_key_secret_file go together")
        }
        // Twilio posts each delivery report there with the full phone number in it.
        if let statusCallbackURL, !TwilioConfiguration.isAcceptableStatusCallbackURL(statusCallbackURL) {
            throw ConfigurationError(
                description:
                    "\(r.file): twilio.status_callback_url must be an https:// URL with a host (delivery reports carry full phone numbers)"
            )
        }
    }

    /// The auth token: from `auth_token_file`, else `$CREDENTIALS_DIRECTORY/twilio-auth-token`.
    /// Never from the TOML or the command line, never logged.
    func authToken(environment: [String: String]) throws(ConfigurationError) -> String? {
        if let authTokenFile { return try Self.readSecret(authTokenFile, name: "twilio.auth_token_file") }
        if let directory = environment["CREDENTIALS_DIRECTORY"] {
            let path = directory + "/twilio-auth-token"
            if FileManager.default.fileExists(atPath: path) {
                return try Self.readSecret(path, name: "$CREDENTIALS_DIRECTORY/twilio-auth-token")
            }
        }
        return nil
    }

    func configuration(environment: [String: String]) throws(ConfigurationError) -> (TwilioConfiguration, String?) {
        let token = try authToken(environment: environment)
        let credentials: TwilioConfiguration.Credentials
        if let apiKeySID, let apiKeySecretFile {
            credentials = .apiKey(
                sid: apiKeySID, secret: try Self.readSecret(apiKeySecretFile, name: "twilio.api_key_secret_file"))
        } else if let token {
            credentials = .authToken(token)
        } else {
            throw ConfigurationError(
                description:
                    "twilio: no auth token: set auth_token_file, or pass it as the systemd credential twilio-auth-token"
            )
        }
        let sender: TwilioConfiguration.Sender = from.map { .from($0) } ?? .messagingService(messagingServiceSID ?? "")
        let configuration = TwilioConfiguration(
            accountSID: accountSID, credentials: credentials, sender: sender, baseURL: baseURL,
            statusCallbackURL: statusCallbackURL, requestTimeout: .seconds(timeoutSeconds), maxAttempts: maxAttempts,
            maxConcurrentRequests: maxConcurrentRequests)
        do {
            try configuration.validate()
        } catch {
            throw ConfigurationError(description: "twilio: \(error)")
        }
        return (configuration, token)
    }

    /// Reads a secret file: it must be readable only by its owner (`DaemonKey.isPrivate`).
    static func readSecret(_ path: String, name: String) throws(ConfigurationError) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ConfigurationError(description: "\(name): cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let directory = ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"]
        guard DaemonKey.isPrivate(mode: info.st_mode, path: path, credentialsDirectory: directory) else {
            throw ConfigurationError(description: "\(name): \(path) is readable by group or others; chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path),
            let text = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
            !text.isEmpty
        else {
            throw ConfigurationError(description: "\(name): \(path) is empty or not text")
        }
        return text
    }
}

/// Checks `X-Twilio-Signature` with every configured account's auth token (a report is
/// authentic when one of them signed it).
struct AnyAccountReportVerifier: DeliveryReportVerifier {
    let accounts: [TwilioReportVerifier]

    func isAuthentic(url: String, parameters: [(name: String, value: String)], signature: String) -> Bool {
        accounts.contains { $0.isAuthentic(url: url, parameters: parameters, signature: signature) }
    }
}

/// The SMS sender otpd uses, built from the configuration.
struct SMSSetup {
    let sender: any SMSSender
    let verifier: (any DeliveryReportVerifier)?
    /// What the provider's delivery statuses mean (with `verifier`, for delivery reports).
    let statuses: (any DeliveryStatusOrder)?
    let shutdown: @Sendable () async -> Void

    static func make(
        _ configuration: DaemonConfiguration, environment: [String: String], logger: Logger
    ) throws(ConfigurationError) -> SMSSetup {
        switch configuration.smsSender {
        case "twilio":
            var senders: [TwilioSender] = []
            var tokens: [String] = []
            for settings in configuration.twilio {
                let (twilio, token) = try settings.configuration(environment: environment)
                do {
                    senders.append(try TwilioSender(configuration: twilio, logger: logger))
                } catch {
                    throw ConfigurationError(description: "twilio: \(error)")
                }
                if let token { tokens.append(token) }
            }
            let all = senders
            let sender: any SMSSender =
                senders.count == 1 ? senders[0] : FailoverSender(senders: senders, logger: logger)
            return SMSSetup(
                sender: sender,
                verifier: tokens.isEmpty
                    ? nil : AnyAccountReportVerifier(accounts: tokens.map(TwilioReportVerifier.init)),
                statuses: TwilioDeliveryStatuses(),
                shutdown: { for sender in all { try? await sender.shutdown() } })
        default:
            return SMSSetup(
                sender: OutboxSender(path: configuration.outboxPath, logger: logger), verifier: nil, statuses: nil,
                shutdown: {})
        }
    }
}
