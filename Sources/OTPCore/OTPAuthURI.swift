/// Why an otpauth URI could not be built.
public enum OTPAuthURIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The issuer is empty.
    case emptyIssuer
    /// The account name is empty.
    case emptyAccountName
    /// The issuer or account name contains a colon, which the key-URI format reserves as the
    /// separator between them.
    case colonInLabel
    /// The issuer or account name contains a control character (NUL, newline, ...).
    case controlCharacter

    /// A sentence saying what is wrong.
    public var description: String {
        switch self {
        case .emptyIssuer: "otpauth issuer must not be empty"
        case .emptyAccountName: "otpauth account name must not be empty"
        case .colonInLabel: "otpauth issuer and account name must not contain a colon"
        case .controlCharacter: "otpauth issuer and account name must not contain control characters"
        }
    }
}

/// The Google Authenticator key-URI format, which authenticator apps read from a QR code.
public enum OTPAuthURI {
    /// Builds `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`.
    ///
    /// The label parts and the issuer parameter are percent-encoded as UTF-8: every byte other
    /// than `A-Z a-z 0-9 - . _ ~ @` becomes `%XX` (so a space is `%20`, never `+`). The issuer
    /// and account name must be non-empty and contain no colon (the format forbids one in
    /// either, encoded or not) and no control character. The secret is base32 without padding.
    /// The URI contains the secret: show it once, never log it.
    public static func totp(
        secret: [UInt8], issuer: String, accountName: String,
        parameters: TOTPParameters = .standard
    ) throws(OTPAuthURIError) -> String {
        guard !issuer.isEmpty else { throw .emptyIssuer }
        guard !accountName.isEmpty else { throw .emptyAccountName }
        for part in [issuer, accountName] {
            if part.utf8.contains(UInt8(ascii: ":")) { throw .colonInLabel }
            if part.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw .controlCharacter
            }
        }
        let encodedIssuer = percentEncode(issuer)
        return "otpauth://totp/\(encodedIssuer):\(percentEncode(accountName))"
            + "?secret=\(Base32.encode(secret))"
            + "&issuer=\(encodedIssuer)"
            + "&algorithm=\(parameters.algorithm.rawValue)"
            + "&digits=\(parameters.digits.count)"
            + "&period=\(parameters.period)"
    }

    /// Percent-encodes every UTF-8 byte outside the RFC 3986 unreserved set and `@`.
    static func percentEncode(_ text: String) -> String {
        PercentEncoding.encode(text, alsoKeeping: [UInt8(ascii: "@")])
    }
}
