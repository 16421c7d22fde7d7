import Foundation
import PortalCore

/// What ``EntryScanner`` learned about a canonical entry: the fields the verifier checks, as byte ranges
/// of the scanned buffer (strings in their encoded form, without quotes).
struct ScannedEntry: Sendable {
    var seq: Int64
    var org: Range<Int>
    var prev: Range<Int>
}

/// Checks that bytes are exactly the canonical form of a version 1 ledger entry (RFC 8785 over the
/// ledger's JSON subset, DESIGN section 4.1) in one pass, without building any value: the verifier's hot
/// path, where parsing and re-encoding each entry cost fifty times the hashing (the profile in docs/performance.md).
///
/// It accepts exactly what `LedgerEntry(canonical:)` accepts: the top-level members in canonical order
/// (`actor`, `data`, `integration` optional, `org`, `prev`, `seq`, `time`, `type`, `v`), nested keys
/// strictly increasing by UTF-16 code units, strings escaped as `JSON.stringify` does and valid UTF-8,
/// integers in shortest decimal within 64 bits, no whitespace, booleans, null or fractions.
struct EntryScanner {
    private let bytes: UnsafeRawBufferPointer
    private var i = 0

    /// Failure with the offset where the bytes stop being canonical.
    struct Failure: Error {
        var message: String
    }

    private static let members: [[UInt8]] = ["actor", "data", "integration", "org", "prev", "seq", "time", "type", "v"].map { Array($0.utf8) }
    private static let maxDepth = 256

    static func scan(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> ScannedEntry {
        guard bytes.count <= LedgerEntry.maxBytes else { throw Failure(message: "a ledger entry may be at most \(LedgerEntry.maxBytes) bytes") }
        var scanner = EntryScanner(bytes: bytes)
        return try scanner.entry()
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func fail(_ what: String) -> Failure {
        Failure(message: "\(what) at byte \(i)")
    }

    @inline(__always) private var current: UInt8? { i < bytes.count ? bytes[i] : nil }

    @inline(__always) private mutating func expect(_ byte: UInt8) throws(Failure) {
        guard i < bytes.count, bytes[i] == byte else { throw fail("expected '\(Character(Unicode.Scalar(byte)))'") }
        i += 1
    }

    private mutating func entry() throws(Failure) -> ScannedEntry {
        try expect(UInt8(ascii: "{"))
        var next = 0
        var seq: Int64?
        var org: Range<Int>?
        var prev: Range<Int>?
        var seen = 0
        var first = true
        while current != UInt8(ascii: "}") {
            if !first { try expect(UInt8(ascii: ",")) }
            first = false
            let key = try string().range
            try expect(UInt8(ascii: ":"))
            // Members must come in canonical order; only `integration` may be left out.
            var index = next
            while index < Self.members.count, !equal(key, Self.members[index]) { index += 1 }
            guard index < Self.members.count else {
                throw Failure(message: Self.members.contains(where: { equal(key, $0) }) ? "members are not in canonical order" : "a ledger entry has unknown members")
            }
            for skipped in next..<index where skipped != 2 {
                throw Failure(message: "not a version 1 ledger entry (\(String(decoding: Self.members[skipped], as: UTF8.self)) is missing)")
            }
            next = index + 1
            seen += 1
            switch index {
            case 1:
                guard current == UInt8(ascii: "{") else { throw Failure(message: "not a version 1 ledger entry (data is not an object)") }
                try value(depth: 1)
            case 5:
                guard let c = current, c == UInt8(ascii: "-") || (c >= 0x30 && c <= 0x39) else {
                    throw Failure(message: "not a version 1 ledger entry (seq is not an integer)")
                }
                seq = try integer()
            case 8:
                guard current == UInt8(ascii: "1") else { throw Failure(message: "not a version 1 ledger entry") }
                i += 1
            default:
                guard current == UInt8(ascii: "\"") else {
                    throw Failure(message: "not a version 1 ledger entry (\(String(decoding: Self.members[index], as: UTF8.self)) is not a string)")
                }
                let range = try string().range
                if index == 3 { org = range }
                if index == 4 { prev = range }
            }
        }
        i += 1
        guard next == Self.members.count, let seq, let org, let prev else {
            throw Failure(message: "not a version 1 ledger entry (members are missing)")
        }
        guard i == bytes.count else { throw fail("bytes follow the entry") }
        return ScannedEntry(seq: seq, org: org, prev: prev)
    }

    private func equal(_ range: Range<Int>, _ literal: [UInt8]) -> Bool {
        guard range.count == literal.count else { return false }
        for k in 0..<literal.count where bytes[range.lowerBound + k] != literal[k] { return false }
        return true
    }

    /// Any value of the subset: object, array, string or integer.
    private mutating func value(depth: Int) throws(Failure) {
        guard depth <= Self.maxDepth else { throw fail("nesting is too deep") }
        switch current {
        case UInt8(ascii: "{"):
            i += 1
            var previous: (range: Range<Int>, plain: Bool)?
            while current != UInt8(ascii: "}") {
                if previous != nil { try expect(UInt8(ascii: ",")) }
                let key = try string()
                if let previous, !precedes(previous, key) { throw fail("object keys are not in canonical order") }
                previous = key
                try expect(UInt8(ascii: ":"))
                try value(depth: depth + 1)
            }
            i += 1
        case UInt8(ascii: "["):
            i += 1
            var first = true
            while current != UInt8(ascii: "]") {
                if !first { try expect(UInt8(ascii: ",")) }
                first = false
                try value(depth: depth + 1)
            }
            i += 1
        case UInt8(ascii: "\""):
            _ = try string().range
        case let c? where c == UInt8(ascii: "-") || (c >= 0x30 && c <= 0x39):
            _ = try integer()
        case nil:
            throw fail("the entry ends early")
        default:
            throw fail("not a value of the ledger's JSON subset (objects, arrays, strings, integers)")
        }
    }

    /// An integer in shortest form: `0`, or an optional minus and digits without a leading zero; no `-0`.
    private mutating func integer() throws(Failure) -> Int64 {
        let negative = current == UInt8(ascii: "-")
        if negative { i += 1 }
        guard let firstDigit = current, firstDigit >= 0x30, firstDigit <= 0x39 else { throw fail("expected a digit") }
        if firstDigit == 0x30 {
            i += 1
            if negative { throw fail("-0 is not canonical") }
            if let c = current, (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                throw fail("not a canonical integer")
            }
            return 0
        }
        // Accumulate negatively so Int64.min fits.
        var value: Int64 = 0
        while let c = current, c >= 0x30, c <= 0x39 {
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times.subtractingReportingOverflow(Int64(c - 0x30))
            guard !o1, !o2 else { throw fail("an integer does not fit in 64 bits") }
            value = next
            i += 1
        }
        if let c = current, c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            throw fail("fractions and exponents are not in the ledger's subset")
        }
        if negative { return value }
        guard value != .min else { throw fail("an integer does not fit in 64 bits") }
        return -value
    }

    /// A string as `JSON.stringify` writes it; returns the range of its encoded content, and whether it is
    /// plain (ASCII without escapes, so its bytes are its UTF-16 code units).
    private mutating func string() throws(Failure) -> (range: Range<Int>, plain: Bool) {
        try expect(UInt8(ascii: "\""))
        let start = i
        let count = bytes.count
        let base = bytes.baseAddress!
        var plain = true
        while true {
            // Eight bytes at a time while none of them needs a closer look.
            while i + 8 <= count, !Self.hasSpecialByte(UInt64(littleEndian: (base + i).loadUnaligned(as: UInt64.self))) {
                i += 8
            }
            guard i < count else { throw fail("the entry ends inside a string") }
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                return (start..<(i - 1), plain)
            }
            if b == UInt8(ascii: "\\") {
                plain = false
                guard i + 1 < count else { throw fail("the entry ends early") }
                switch bytes[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "b"), UInt8(ascii: "t"), UInt8(ascii: "n"), UInt8(ascii: "f"), UInt8(ascii: "r"):
                    i += 2
                case UInt8(ascii: "u"):
                    // Only control characters without a short escape are written as \u00xx, in lowercase hex.
                    guard i + 5 < count, bytes[i + 2] == 0x30, bytes[i + 3] == 0x30,
                          let hi = Self.lowerHex(bytes[i + 4]), let lo = Self.lowerHex(bytes[i + 5])
                    else { throw fail("a \\u escape that is not canonical") }
                    let scalar = hi << 4 | lo
                    guard scalar < 0x20, ![0x08, 0x09, 0x0A, 0x0C, 0x0D].contains(scalar) else { throw fail("a \\u escape that is not canonical") }
                    i += 6
                default:
                    throw fail("an escape that is not canonical")
                }
            } else if b < 0x20 {
                throw fail("an unescaped control character")
            } else if b < 0x80 {
                i += 1
            } else {
                plain = false
                try utf8Sequence(lead: b)
            }
        }
    }

    /// Whether any of the eight bytes is a quote, a backslash, a control character or non-ASCII (exact:
    /// the classic "has byte less than" and "has zero byte" word tricks, valid once no byte is ≥ 0x80).
    @inline(__always)
    private static func hasSpecialByte(_ x: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        if x & highs != 0 { return true }
        let control = (x &- 0x20 &* ones) & ~x & highs
        let q = x ^ (0x22 &* ones)
        let quote = (q &- ones) & ~q & highs
        let b = x ^ (0x5C &* ones)
        let backslash = (b &- ones) & ~b & highs
        return control | quote | backslash != 0
    }

    private static func lowerHex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    /// One well-formed UTF-8 sequence (no overlong forms, surrogates or code points past U+10FFFF).
    private mutating func utf8Sequence(lead: UInt8) throws(Failure) {
        let length: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw fail("invalid UTF-8")
        }
        guard i + length <= bytes.count else { throw fail("invalid UTF-8") }
        let second = bytes[i + 1]
        guard second >= low, second <= high else { throw fail("invalid UTF-8") }
        for k in 2..<max(2, length) where bytes[i + k] & 0xC0 != 0x80 { throw fail("invalid UTF-8") }
        i += length
    }

    /// Whether key `a` sorts strictly before key `b` by UTF-16 code units of their decoded text.
    private func precedes(_ a: (range: Range<Int>, plain: Bool), _ b: (range: Range<Int>, plain: Bool)) -> Bool {
        if a.plain && b.plain {
            // ASCII without escapes: byte order is UTF-16 order.
            let n = min(a.range.count, b.range.count)
            let order = memcmp(bytes.baseAddress! + a.range.lowerBound, bytes.baseAddress! + b.range.lowerBound, n)
            return order != 0 ? order < 0 : a.range.count < b.range.count
        }
        return decode(a.range).utf16.lexicographicallyPrecedes(decode(b.range).utf16)
    }

    /// The text of an encoded string (already checked to be canonical).
    private func decode(_ range: Range<Int>) -> String {
        var out: [UInt8] = []
        var k = range.lowerBound
        while k < range.upperBound {
            let b = bytes[k]
            guard b == UInt8(ascii: "\\") else {
                out.append(b)
                k += 1
                continue
            }
            switch bytes[k + 1] {
            case UInt8(ascii: "b"): out.append(0x08); k += 2
            case UInt8(ascii: "t"): out.append(0x09); k += 2
            case UInt8(ascii: "n"): out.append(0x0A); k += 2
            case UInt8(ascii: "f"): out.append(0x0C); k += 2
            case UInt8(ascii: "r"): out.append(0x0D); k += 2
            case UInt8(ascii: "u"): out.append((Self.lowerHex(bytes[k + 4]) ?? 0) << 4 | (Self.lowerHex(bytes[k + 5]) ?? 0)); k += 6
            default: out.append(bytes[k + 1]); k += 2
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
