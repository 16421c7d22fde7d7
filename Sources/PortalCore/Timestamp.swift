public import Foundation

/// RFC 3339 UTC timestamps, the one format of times in the API and the ledger.
public enum Timestamp {
    /// `2026-11-25T16:30:00.123456Z`: UTC, always six fractional digits.
    public static func rfc3339(_ date: Date) -> String {
        // Rounded, not truncated: a stored time is whole microseconds, and a REAL read back from SQLite may
        // land a hair below it.
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        let fraction = micros - seconds * 1_000_000
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let base = String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d",
            Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec)
        )
        return base + "." + String(format: "%06lld", fraction) + "Z"
    }
}
