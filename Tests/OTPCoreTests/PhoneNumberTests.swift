import OTPCore
import Testing

@Suite("PhoneNumber (E.164)")
struct PhoneNumberTests {
    @Test(
        "accepted inputs and their E.164 form",
        arguments: [
            ("+14155552671", "+14155552671"),
            ("+1 415 555 2671", "+14155552671"),
            ("+1-415-555-2671", "+14155552671"),
            ("+1.415.555.2671", "+14155552671"),
            (" +44 20 7946 0958 ", "+442079460958"),
            ("+49 30-123.456", "+4930123456"),
            ("+86 138 1234 5678", "+8613812345678"),
            ("+12345678", "+12345678"),  // 8 digits: the minimum
            ("+123456789012345", "+123456789012345"),  // 15 digits: the maximum
            ("+ 7 912 345 67 89", "+79123456789"),
        ])
    func accepted(input: String, e164: String) throws {
        #expect(try PhoneNumber(parsing: input).e164 == e164)
    }

    @Test(
        "refused inputs and the reason given",
        arguments: [
            ("", PhoneNumberError.empty),
            ("  - . ", .empty),
            ("4155552671", .missingPlus),
            ("0044 20 7946 0958", .missingPlus),
            ("020 7946 0958", .missingPlus),
            ("1+4155552671", .misplacedPlus),
            ("++14155552671", .misplacedPlus),
            ("+1415+5552671", .misplacedPlus),
            ("+1 415 CALL NOW", .letters),
            ("+1415555267x", .letters),
            ("tel:+14155552671", .letters),
            ("+1 (415) 555-2671", .parentheses),
            ("+44 (0)20 7946 0958", .parentheses),
            ("+１４１５５５５２６７１", .invalidCharacter("１")),
            ("+1\t4155552671", .invalidCharacter("\t")),
            ("+14155552671\0", .invalidCharacter("\0")),
            ("+1/415/555/2671", .invalidCharacter("/")),
            ("+٤١٥٥٥٥٢٦٧١", .invalidCharacter("٤")),
            ("+1234567", .tooShort(digitCount: 7)),
            ("+", .tooShort(digitCount: 0)),
            ("+1234567890123456", .tooLong(digitCount: 16)),
            ("+0441234567", .leadingZero),
            (String(repeating: "1", count: 65), .inputTooLong),
            ("+1" + String(repeating: " ", count: 70) + "4155552671", .inputTooLong),
        ])
    func refused(input: String, error: PhoneNumberError) {
        #expect(throws: error) { try PhoneNumber(parsing: input) }
    }

    @Test("error messages say what is wrong")
    func messages() {
        #expect(PhoneNumberError.missingPlus.description.contains("start with +"))
        #expect(PhoneNumberError.letters.description.contains("letters"))
        #expect(PhoneNumberError.tooShort(digitCount: 7).description.contains("at least 8"))
        #expect(PhoneNumberError.tooLong(digitCount: 16).description.contains("at most 15"))
        #expect(PhoneNumberError.leadingZero.description.contains("must not start with 0"))
        #expect(PhoneNumberError.parentheses.description.contains("parentheses"))
        #expect(PhoneNumberError.misplacedPlus.description.contains("only at the start"))
    }

    @Test(
        "country calling codes",
        arguments: [
            ("+14155552671", "1"), ("+18765551234", "1"), ("+79123456789", "7"),
            ("+77012345678", "7"), ("+442079460958", "44"), ("+4930123456", "49"),
            ("+8613812345678", "86"), ("+201001234567", "20"), ("+27821234567", "27"),
            ("+353861234567", "353"), ("+211912345678", "211"), ("+8801712345678", "880"),
            ("+972501234567", "972"), ("+380501234567", "380"), ("+421901234567", "421"),
        ])
    func countryCallingCode(input: String, code: String) throws {
        #expect(try PhoneNumber(parsing: input).countryCallingCode == code)
    }

    @Test(
        "masking keeps the country code and the last digits only",
        arguments: [
            ("+14155554567", "+1******4567"),
            ("+442079460958", "+44******0958"),
            ("+8613812345678", "+86*******5678"),
            ("+353861234567", "+353*****4567"),
            ("+35312345", "+353***45"),  // short national number: only 2 digits shown
            ("+4930123456", "+49****3456"),  // 8 national digits: last 4 shown
            ("+491234567", "+49*****67"),  // 7 national digits: last 2 shown
            ("+123456789012345", "+1**********2345"),
        ])
    func masking(input: String, masked: String) throws {
        let number = try PhoneNumber(parsing: input)
        #expect(number.masked == masked)
        #expect("\(number)" == masked)
        #expect(!String(reflecting: number).contains(number.e164.dropFirst()))
        #expect(number.masked.count == number.e164.count)
    }
}
