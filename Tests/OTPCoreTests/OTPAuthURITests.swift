import OTPCore
import Testing

@Suite("otpauth URI")
struct OTPAuthURITests {
    static let secret = Array("12345678901234567890".utf8)

    @Test("Google Authenticator key-URI format, exact string")
    func exact() throws {
        let uri = try OTPAuthURI.totp(
            secret: Self.secret, issuer: "Example Shop", accountName: "alice@example.com")
        #expect(
            uri == "otpauth://totp/Example%20Shop:alice@example.com"
                + "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Shop"
                + "&algorithm=SHA1&digits=6&period=30")
    }

    @Test("non-default parameters appear in the URI")
    func parameters() throws {
        let parameters = try #require(
            TOTPParameters(algorithm: .sha256, digits: .eight, period: 60))
        let uri = try OTPAuthURI.totp(
            secret: Self.secret, issuer: "Shop", accountName: "bob", parameters: parameters)
        #expect(uri.hasSuffix("&algorithm=SHA256&digits=8&period=60"))
    }

    @Test("reserved and non-ASCII characters are percent-encoded as UTF-8")
    func encoding() throws {
        let uri = try OTPAuthURI.totp(
            secret: Self.secret, issuer: "A&B=C?D#E/F%G+H", accountName: "josé ü")
        #expect(uri.hasPrefix("otpauth://totp/A%26B%3DC%3FD%23E%2FF%25G%2BH:jos%C3%A9%20%C3%BC?"))
        #expect(uri.contains("&issuer=A%26B%3DC%3FD%23E%2FF%25G%2BH&"))
        #expect(!uri.contains(" "))
    }

    @Test("colons, control characters and empty parts are refused")
    func refused() {
        #expect(throws: OTPAuthURIError.colonInLabel) {
            try OTPAuthURI.totp(secret: Self.secret, issuer: "Shop:EU", accountName: "alice")
        }
        #expect(throws: OTPAuthURIError.colonInLabel) {
            try OTPAuthURI.totp(secret: Self.secret, issuer: "Shop", accountName: "a:b")
        }
        #expect(throws: OTPAuthURIError.controlCharacter) {
            try OTPAuthURI.totp(secret: Self.secret, issuer: "Shop", accountName: "a\nb")
        }
        #expect(throws: OTPAuthURIError.controlCharacter) {
            try OTPAuthURI.totp(secret: Self.secret, issuer: "Sh\0op", accountName: "ab")
        }
        #expect(throws: OTPAuthURIError.emptyIssuer) {
            try OTPAuthURI.totp(secret: Self.secret, issuer: "", accountName: "alice")
        }
        #expect(throws: OTPAuthURIError.emptyAccountName) {
            try OTPAuthURI.totp(secret: Self.secret, issuer: "Shop", accountName: "")
        }
    }
}
