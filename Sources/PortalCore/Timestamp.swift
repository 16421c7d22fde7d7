package import Foundation

/// RFC 3339 UTC timestamps, the one format of times in the API and the ledger.
package enum Timestamp {
    /// 0000-01-01T00:00:00.000000Z and 9999-12-31T23:59:59.999999Z, in microseconds since 1970.
    static let earliestMicros: Int64 = -62_167_219_200_000_000
    static let latestMicros: Int64 = 253_402_300_799_999_999

    /// The longest lifetime a token taken from a request may have: 10 years.
    package static let maxLifetime: TimeInterval = 10 * 366 * 86_400

    /// `2026-11-25T16:30:00.123456Z`: UTC, always six fractional digits.
    ///
    /// Total: a time outside the four-digit years RFC 3339 can write (0000 to 9999), or not finite, is written
    /// as the nearest end of that range, never a trap (a duration of 84,382,554 weeks from a request once
    /// crashed the server here).
    package static func rfc3339(_ date: Date) -> String {
        // Rounded, not truncated: a stored time is whole microseconds, and a REAL read back from SQLite may
        // land a hair below it.
        let scaled = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let micros: Int64 = scaled.isNaN ? Self.earliestMicros : scaled >= Double(Self.latestMicros) ? Self.latestMicros
            : scaled <= Double(Self.earliestMicros) ? Self.earliestMicros : Int64(scaled)
        let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        let fraction = micros - seconds * 1_000_000
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        // Digits written by hand: String(format:) was a visible cost on the gateway's hot path.
        var bytes = [UInt8](repeating: 0, count: 27)
        func put(_ value: Int, at offset: Int, width: Int) {
            var v = value
            for i in stride(from: offset + width - 1, through: offset, by: -1) {
                bytes[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, at: 0, width: 4)
        bytes[4] = UInt8(ascii: "-")
        put(Int(parts.tm_mon) + 1, at: 5, width: 2)
        bytes[7] = UInt8(ascii: "-")
        put(Int(parts.tm_mday), at: 8, width: 2)
        bytes[10] = UInt8(ascii: "T")
        put(Int(parts.tm_hour), at: 11, width: 2)
        bytes[13] = UInt8(ascii: ":")
        put(Int(parts.tm_min), at: 14, width: 2)
        bytes[16] = UInt8(ascii: ":")
        put(Int(parts.tm_sec), at: 17, width: 2)
        bytes[19] = UInt8(ascii: ".")
        put(Int(fraction), at: 20, width: 6)
        bytes[26] = UInt8(ascii: "Z")
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (the form ``rfc3339(_:)`` writes); nil for anything else.
    package static func parse(_ text: String) -> Date? {
        let chars = Array(text.utf8)
        guard chars.count >= 20, chars.last == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= chars.count else { return nil }
            var v = 0
            for i in range {
                guard chars[i] >= 0x30, chars[i] <= 0x39 else { return nil }
                v = v * 10 + Int(chars[i] - 0x30)
            }
            return v
        }
        guard let year = number(0..<4), chars[4] == 0x2D, let month = number(5..<7), chars[7] == 0x2D,
              let day = number(8..<10), chars[10] == UInt8(ascii: "T"), let hour = number(11..<13), chars[13] == 0x3A,
              let minute = number(14..<16), chars[16] == 0x3A, let second = number(17..<19)
        else { return nil }
        var micros = 0
        if chars[19] == UInt8(ascii: ".") {
            let digits = chars.count - 21
            guard (1...9).contains(digits), let fraction = number(20..<(chars.count - 1)) else { return nil }
            var f = fraction
            var d = digits
            while d > 6 { f /= 10; d -= 1 }
            while d < 6 { f *= 10; d += 1 }
            micros = f
        } else if chars.count != 20 {
            return nil
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        return Date(timeIntervalSince1970: Double(seconds) + Double(micros) / 1_000_000)
    }
}
