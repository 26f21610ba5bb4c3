import Crypto
import Foundation
public import OTPCore

/// Twilio's request signature (`X-Twilio-Signature`), as used on status callbacks:
/// base64(HMAC-SHA1(auth token, URL + each POST parameter's name immediately followed by its
/// value, sorted by name)).
///
/// `url` must be the full URL Twilio requested, exactly as configured in `StatusCallback`
/// (scheme, host, port if any, path and query). Parameters are sorted by name, byte-wise on
/// UTF-8; a name that occurs more than once contributes its distinct values sorted the same way,
/// as Twilio's own helper libraries do.
public enum TwilioSignature {
    /// The signature Twilio would send for `url` and the form `parameters` (any order).
    public static func signature(url: String, parameters: [(name: String, value: String)], authToken: String)
        -> String
    {
        Data(mac(url: url, parameters: parameters, authToken: authToken)).base64EncodedString()
    }

    /// The signature Twilio would send for `url` and the form `parameters`.
    public static func signature(url: String, parameters: [String: String], authToken: String) -> String {
        signature(url: url, parameters: parameters.map { (name: $0.key, value: $0.value) }, authToken: authToken)
    }

    /// Whether `signature` (the header's base64 value) is Twilio's signature of `url` and
    /// `parameters`; the MAC is compared in constant time. A signature that is not base64 of
    /// 20 bytes is refused.
    public static func isValid(
        signature: String, url: String, parameters: [(name: String, value: String)], authToken: String
    ) -> Bool {
        guard signature.utf8.count == 28, let given = Data(base64Encoded: signature), given.count == 20 else {
            return false
        }
        return HMAC<Insecure.SHA1>.isValidAuthenticationCode(
            given, authenticating: Data(signedText(url: url, parameters: parameters).utf8),
            using: SymmetricKey(data: Data(authToken.utf8)))
    }

    /// Whether `signature` is Twilio's signature of `url` and `parameters`.
    public static func isValid(signature: String, url: String, parameters: [String: String], authToken: String)
        -> Bool
    {
        isValid(
            signature: signature, url: url, parameters: parameters.map { (name: $0.key, value: $0.value) },
            authToken: authToken)
    }

    /// The text that is signed: `url`, then for each name in byte-wise order its distinct values
    /// in byte-wise order, each as name immediately followed by value.
    static func signedText(url: String, parameters: [(name: String, value: String)]) -> String {
        var byName: [String: Set<String>] = [:]
        for (name, value) in parameters { byName[name, default: []].insert(value) }
        let before: (String, String) -> Bool = { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var text = url
        for name in byName.keys.sorted(by: before) {
            for value in byName[name]!.sorted(by: before) {
                text += name
                text += value
            }
        }
        return text
    }

    private static func mac(url: String, parameters: [(name: String, value: String)], authToken: String) -> [UInt8] {
        Array(
            HMAC<Insecure.SHA1>.authenticationCode(
                for: Data(signedText(url: url, parameters: parameters).utf8),
                using: SymmetricKey(data: Data(authToken.utf8))))
    }
}

/// Checks delivery reports with ``TwilioSignature`` under the account's auth token (for
/// `TwoFactorService`'s `reportVerifier`).
///
/// Twilio signs callbacks with the account's auth token even when messages are sent with an API
/// key, so this needs the auth token.
public struct TwilioReportVerifier: DeliveryReportVerifier {
    private let authToken: String

    public init(authToken: String) {
        self.authToken = authToken
    }

    /// Whether `signature` is Twilio's signature of `url` and `parameters` (constant-time).
    public func isAuthentic(url: String, parameters: [(name: String, value: String)], signature: String) -> Bool {
        TwilioSignature.isValid(signature: signature, url: url, parameters: parameters, authToken: authToken)
    }
}
