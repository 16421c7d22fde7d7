package import Foundation
import NIOCore
import PostgresNIO
package import SQLKit

/// A time bound as a statement parameter, exact to the microsecond on both backends.
///
/// PostgresNIO encodes a `Date` as `Int64(seconds since 2000 × 1e6)`, a truncation of a product of doubles:
/// about one time in four a whole-microsecond `Date` was stored one microsecond early, so a time written
/// and the same time read back printed differently (an evidence bundle regenerated from the stored
/// checkpoint differed from the first one). Here the microseconds are rounded, as ``Timestamp`` prints them.
struct StoredTime: Encodable, Sendable {
    var date: Date

    init(_ date: Date) { self.date = date }

    /// Whole microseconds since 1970, rounded (the value ``Timestamp/rfc3339(_:)`` prints).
    var microsecondsSince1970: Int64 { Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(date)
    }
}

extension StoredTime: PostgresNonThrowingEncodable {
    static var psqlType: PostgresDataType { .timestamptz }
    static var psqlFormat: PostgresFormat { .binary }

    func encode<JSONEncoder: PostgresJSONEncoder>(into byteBuffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        // PostgreSQL's epoch is 2000-01-01T00:00:00Z, 946,684,800 s after 1970's.
        byteBuffer.writeInteger(microsecondsSince1970 - 946_684_800_000_000)
    }
}

extension SQLQueryString {
    /// Binds a time exactly (see ``StoredTime``); chosen over sql-kit's generic `bind:` for every `Date`.
    package mutating func appendInterpolation(bind value: Date) {
        appendInterpolation(bind: StoredTime(value))
    }

    /// Binds an optional time exactly, or NULL.
    package mutating func appendInterpolation(bind value: Date?) {
        appendInterpolation(bind: value.map(StoredTime.init))
    }
}
