import OTPCore
import OTPSMS
import Testing

@Suite("Twilio request signatures")
struct TwilioSignatureTests {
    // Twilio's documented example ("Validating requests are coming from Twilio"). The expected
    // value was also computed independently with Python's hmac/hashlib/base64.
    static let url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    static let token = "12345"
    static let parameters: [(name: String, value: String)] = [
        ("Digits", "1234"), ("To", "+18005551212"), ("From", "+12349013030"), ("Caller", "+12349013030"),
        ("CallSid", "CA1234567890ABCDE"),
    ]
    static let expected = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

    @Test func twilioDocumentedVector() {
        #expect(
            TwilioSignature.signature(url: Self.url, parameters: Self.parameters, authToken: Self.token)
                == Self.expected)
        let dictionary = Dictionary(uniqueKeysWithValues: Self.parameters.map { ($0.name, $0.value) })
        #expect(
            TwilioSignature.signature(url: Self.url, parameters: dictionary, authToken: Self.token) == Self.expected)
        #expect(
            TwilioSignature.isValid(
                signature: Self.expected, url: Self.url, parameters: Self.parameters, authToken: Self.token))
        #expect(
            TwilioSignature.isValid(
                signature: Self.expected, url: Self.url, parameters: dictionary, authToken: Self.token))
    }

    @Test func theParameterOrderDoesNotMatter() {
        #expect(
            TwilioSignature.isValid(
                signature: Self.expected, url: Self.url, parameters: Self.parameters.reversed(), authToken: Self.token))
    }

    struct Tamper: Sendable, CustomTestStringConvertible {
        var name: String
        var signature: String = TwilioSignatureTests.expected
        var url: String = TwilioSignatureTests.url
        var parameters: [Pair] = TwilioSignatureTests.parameters.map { Pair(name: $0.name, value: $0.value) }
        var token: String = TwilioSignatureTests.token
        var testDescription: String { name }

        struct Pair: Sendable {
            var name: String
            var value: String
        }
    }

    static let tampered: [Tamper] = {
        var cases: [Tamper] = []
        var changedValue = Tamper(name: "changed parameter value")
        changedValue.parameters[1].value = "+18005551213"
        cases.append(changedValue)
        var changedName = Tamper(name: "renamed parameter")
        changedName.parameters[0].name = "digits"
        cases.append(changedName)
        var extra = Tamper(name: "extra parameter")
        extra.parameters.append(.init(name: "MessageStatus", value: "delivered"))
        cases.append(extra)
        var missing = Tamper(name: "missing parameter")
        missing.parameters.removeLast()
        cases.append(missing)
        cases.append(Tamper(name: "changed URL", url: "https://mycompany.com/myapp.php?foo=1&bar=3"))
        cases.append(Tamper(name: "other host", url: "https://evil.example/myapp.php?foo=1&bar=2"))
        cases.append(Tamper(name: "http instead of https", url: "http://mycompany.com/myapp.php?foo=1&bar=2"))
        cases.append(Tamper(name: "other token", token: "12346"))
        cases.append(Tamper(name: "flipped signature byte", signature: "1/KCTR6DLpKmkAf8muzZqo1nDgQ="))
        cases.append(Tamper(name: "truncated signature", signature: "0/KCTR6DLpKmkAf8muzZqo1nDg"))
        cases.append(Tamper(name: "not base64", signature: "0/KCTR6DLpKmkAf8muzZqo1nD!Q="))
        cases.append(Tamper(name: "empty signature", signature: ""))
        return cases
    }()

    @Test(arguments: tampered)
    func aChangedRequestOrSignatureIsRefused(_ tamper: Tamper) {
        #expect(
            !TwilioSignature.isValid(
                signature: tamper.signature, url: tamper.url,
                parameters: tamper.parameters.map { (name: $0.name, value: $0.value) }, authToken: tamper.token))
    }

    @Test func repeatedNamesAreSignedByValueOrder() {
        // Twilio's helpers sort the values of a repeated name; the order of arrival must not matter.
        let a: [(name: String, value: String)] = [("A", "2"), ("B", "x"), ("A", "1")]
        let b: [(name: String, value: String)] = [("A", "1"), ("A", "2"), ("B", "x")]
        #expect(
            TwilioSignature.signature(url: "https://x.example/cb", parameters: a, authToken: "t")
                == TwilioSignature.signature(url: "https://x.example/cb", parameters: b, authToken: "t"))
    }

    @Test func theReportVerifierChecksWithTheAuthToken() {
        let verifier = TwilioReportVerifier(authToken: Self.token)
        #expect(verifier.isAuthentic(url: Self.url, parameters: Self.parameters, signature: Self.expected))
        #expect(!verifier.isAuthentic(url: Self.url + "&x=1", parameters: Self.parameters, signature: Self.expected))
    }
}
