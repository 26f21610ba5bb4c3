import Foundation
import OTPCore
import OTPTestSupport
import Testing

@Suite("Clock")
struct ClockTests {
    @Test("SystemClock reads the current time")
    func systemClock() {
        let before = Date()
        let now = SystemClock().now()
        let after = Date()
        #expect(before <= now && now <= after)
    }

    @Test("ManualClock moves only when told")
    func manualClock() {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_000))
        #expect(clock.now() == Date(timeIntervalSince1970: 1_000))
        clock.advance(30)
        #expect(clock.now() == Date(timeIntervalSince1970: 1_030))
    }
}
