/// Why a phone number was refused. Each case's `description` tells the user what to fix.
public enum PhoneNumberError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Nothing but separators (or nothing at all) was given.
    case empty
    /// The input is longer than ``PhoneNumber/maximumInputBytes`` bytes.
    case inputTooLong
    /// The number does not start with `+`.
    case missingPlus
    /// A `+` appears after the start.
    case misplacedPlus
    /// The input contains letters.
    case letters
    /// The input contains parentheses, which are refused on purpose (see ``PhoneNumber``).
    case parentheses
    /// The input contains a character that is not an ASCII digit, `+` or a separator
    /// (for example a full-width digit, a tab or a slash).
    case invalidCharacter(String)
    /// Fewer than 8 digits.
    case tooShort(digitCount: Int)
    /// More than 15 digits.
    case tooLong(digitCount: Int)
    /// The first digit after `+` is 0; no country calling code starts with 0.
    case leadingZero

    /// A sentence saying exactly what is wrong.
    public var description: String {
        switch self {
        case .empty:
            "phone number is empty"
        case .inputTooLong:
            "phone number input is longer than \(PhoneNumber.maximumInputBytes) bytes"
        case .missingPlus:
            "phone number must start with + and the country calling code (write +44 instead of 0044 or 0)"
        case .misplacedPlus:
            "phone number may contain + only at the start"
        case .letters:
            "phone number must not contain letters"
        case .parentheses:
            "phone number must not contain parentheses; write it without them, and leave out a trunk prefix such as (0)"
        case .invalidCharacter(let character):
            "phone number contains \(character.debugDescription); only ASCII digits after a leading + are allowed, separated by spaces, dashes or dots"
        case .tooShort(let count):
            "phone number has \(count) digits; at least \(PhoneNumber.minimumDigits) are required, including the country calling code"
        case .tooLong(let count):
            "phone number has \(count) digits; at most \(PhoneNumber.maximumDigits) are allowed (E.164)"
        case .leadingZero:
            "the country calling code after + must not start with 0"
        }
    }
}

/// A phone number in E.164 form: `+`, then 8 to 15 digits, the first not 0.
///
/// Parsing tolerates spaces, dashes and dots anywhere, as separators. Parentheses are refused
/// on purpose: the common notation `+44 (0)20 7946 0958` marks a trunk `0` that must be
/// dropped, and silently removing the parentheses would keep it and text a different number.
/// Nothing else is tolerated: no letters, no `00` or national prefixes, no digits of other
/// scripts.
///
/// `description` is the masked form, so interpolating a number into a log line does not leak
/// it (docs/SECURITY.md §16).
public struct PhoneNumber: Sendable, Hashable, CustomStringConvertible,
    CustomDebugStringConvertible
{
    /// The fewest digits accepted, country calling code included.
    public static let minimumDigits = 8
    /// The most digits accepted (E.164).
    public static let maximumDigits = 15
    /// The longest input examined, in UTF-8 bytes, separators included.
    public static let maximumInputBytes = 64

    /// The canonical form, e.g. `+14155552671`: what to store and what to send to.
    public let e164: String

    /// Parses `input`; throws a ``PhoneNumberError`` that says what is wrong.
    ///
    /// Checks, in order: input length, characters (letters, parentheses, other characters,
    /// `+` after the start), the leading `+`, the digit count, and the first digit.
    public init(parsing input: String) throws(PhoneNumberError) {
        guard input.utf8.count <= Self.maximumInputBytes else { throw .inputTooLong }
        var sawPlus = false
        var digits: [UInt8] = []
        for scalar in input.unicodeScalars {
            switch scalar {
            case " ", "-", ".":
                continue
            case "+":
                guard digits.isEmpty, !sawPlus else { throw .misplacedPlus }
                sawPlus = true
            case "0"..."9":
                digits.append(UInt8(scalar.value))
            case "a"..."z", "A"..."Z":
                throw .letters
            case "(", ")":
                throw .parentheses
            default:
                throw .invalidCharacter(String(scalar))
            }
        }
        guard sawPlus || !digits.isEmpty else { throw .empty }
        guard sawPlus else { throw .missingPlus }
        guard digits.count >= Self.minimumDigits else { throw .tooShort(digitCount: digits.count) }
        guard digits.count <= Self.maximumDigits else { throw .tooLong(digitCount: digits.count) }
        guard digits[0] != UInt8(ascii: "0") else { throw .leadingZero }
        self.e164 = "+" + String(decoding: digits, as: UTF8.self)
    }

    /// The digits after the `+`.
    private var digits: Substring { e164.dropFirst() }

    /// The country calling code (ITU-T E.164 assignments), e.g. `"1"`, `"44"`, `"353"`.
    ///
    /// Best effort, from the leading digits alone: `1` (North American Numbering Plan) and `7`
    /// (Russia, Kazakhstan) are the only one-digit codes; a fixed list of two-digit codes
    /// follows; every other number is taken to have a three-digit code. Note for allow-lists
    /// that `1` covers the United States, Canada and many Caribbean countries alike.
    public var countryCallingCode: String {
        let first = digits.first!
        if first == "1" || first == "7" { return String(first) }
        let two = String(digits.prefix(2))
        if Self.twoDigitCodes.contains(two) { return two }
        return String(digits.prefix(3))
    }

    /// The number with all but its country calling code and last digits hidden, e.g.
    /// `+1******4567` or `+44******0958`. One `*` replaces each hidden digit.
    ///
    /// The last 4 digits are shown when at least 8 digits follow the country code; for shorter
    /// national numbers only the last 2, so that at least 3 digits stay hidden. Safe to log and
    /// to show to the user.
    public var masked: String {
        let code = countryCallingCode
        let national = digits.count - code.count
        let shown = national >= 8 ? 4 : 2
        return "+" + code + String(repeating: "*", count: national - shown)
            + String(digits.suffix(shown))
    }

    /// The masked form (``masked``); never the full number.
    public var description: String { masked }

    /// The masked form (``masked``); never the full number.
    public var debugDescription: String { "PhoneNumber(\(masked))" }

    /// Two-digit country calling codes assigned by the ITU (zones 2-9).
    static let twoDigitCodes: Set<String> = [
        "20", "27",
        "30", "31", "32", "33", "34", "36", "39",
        "40", "41", "43", "44", "45", "46", "47", "48", "49",
        "51", "52", "53", "54", "55", "56", "57", "58",
        "60", "61", "62", "63", "64", "65", "66",
        "81", "82", "84", "86",
        "90", "91", "92", "93", "94", "95", "98",
    ]
}
