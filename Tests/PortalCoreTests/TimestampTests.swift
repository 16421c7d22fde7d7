import Foundation
import PortalCore
import Testing

@Suite("RFC 3339 timestamps")
struct TimestampTests {
    @Test("times are written with six fractional digits and read back")
    func roundTrip() throws {
        let date = Date(timeIntervalSince1970: 1_795_000_000.123456)
        let text = Timestamp.rfc3339(date)
        #expect(text == "2026-11-18T11:06:40.123456Z")
        #expect(Timestamp.parse(text).map { abs($0.timeIntervalSince(date)) < 0.000001 } == true)
    }

    @Test("a time outside years 0000 to 9999, or not finite, is written as the nearest end, never a trap")
    func outOfRange() {
        // 84,382,554 weeks from now: the duration a request once sent, which trapped converting to Int64.
        let far = Date().addingTimeInterval(84_382_554 * 7 * 86_400)
        #expect(Timestamp.rfc3339(far) == "9999-12-31T23:59:59.999999Z")
        #expect(Timestamp.rfc3339(.distantFuture) == "4001-01-01T00:00:00.000000Z")
        #expect(Timestamp.rfc3339(Date(timeIntervalSince1970: .greatestFiniteMagnitude)) == "9999-12-31T23:59:59.999999Z")
        #expect(Timestamp.rfc3339(Date(timeIntervalSince1970: .infinity)) == "9999-12-31T23:59:59.999999Z")
        #expect(Timestamp.rfc3339(Date(timeIntervalSince1970: -.greatestFiniteMagnitude)) == "0000-01-01T00:00:00.000000Z")
        #expect(Timestamp.rfc3339(Date(timeIntervalSince1970: .nan)) == "0000-01-01T00:00:00.000000Z")
        #expect(Timestamp.rfc3339(Date(timeIntervalSince1970: 253_402_300_799)) == "9999-12-31T23:59:59.000000Z")
    }
}
